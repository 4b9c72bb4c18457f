"""KAITO-style baseline: one transformers generate() at a time behind a lock (as KAITO's
transformers runtime and KServe's HF backend do), exposing the same OpenAI streaming route so the
same load generator drives it. Benchmark use only.

    python bench/serving/baseline_server.py --model DIR --port 8002
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer


def create(model_dir: str) -> FastAPI:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/healthz")
    async def healthz():
        return {"status": "Healthy"}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        ids = tok(body["prompt"], return_tensors="pt")
        max_new = int(body.get("max_tokens", 16))
        greedy = float(body.get("temperature", 1.0)) == 0.0
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        kw = dict(**ids, max_new_tokens=max_new, do_sample=not greedy, streamer=streamer,
                  pad_token_id=tok.pad_token_id)
        if body.get("ignore_eos"):
            kw["min_new_tokens"] = max_new
        counted = {}

        def work():
            with lock, torch.inference_mode():  # one request at a time
                out = model.generate(**kw)
            counted["n"] = out.shape[1] - ids["input_ids"].shape[1]

        threading.Thread(target=work, daemon=True).start()

        async def sse():
            import asyncio
            loop = asyncio.get_running_loop()
            it = iter(streamer)
            while True:
                piece = await loop.run_in_executor(None, next, it, None)
                if piece is None:
                    break
                if piece:
                    chunk = {"object": "text_completion", "choices": [{"index": 0, "text": piece,
                                                                        "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
            while "n" not in counted:
                await asyncio.sleep(0.001)
            usage = {"prompt_tokens": ids["input_ids"].shape[1], "completion_tokens": counted["n"]}
            yield f"data: {json.dumps({'object': 'text_completion', 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, default=8002)
    p.add_argument("--num-threads", type=int, default=None)
    a = p.parse_args()
    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    uvicorn.run(create(a.model), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
