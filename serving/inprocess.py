"""Serve the API without Ray: uvicorn in this process around one Service (benchmarks, debugging)."""
from __future__ import annotations

import argparse
import logging
import sys

from .api import create_app
from .service import Service, current, install


def build_app(args: dict):
    install(Service(args, background=False))
    return create_app(current)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m serving.inprocess", description=__doc__)
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-queue", type=int, default=128)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--stream-interval-ms", type=float, default=None, help="default: the Serve argument's")
    p.add_argument("--prefill-chunk", type=int, default=None, help="0 = prefill whole prompts")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args = {"model": a.model, "served_model_name": a.served_model_name, "max_batch_size": a.max_batch_size,
            "max_queue": a.max_queue, "num_threads": a.num_threads,
            "stream_interval_ms": a.stream_interval_ms, "prefill_chunk": a.prefill_chunk}
    app = build_app({k: v for k, v in args.items() if v is not None})  # unset: ServeArgs' defaults
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
