"""Shared parts for tuning's integration tests: a tiny base model, a dataset, a loopback HTTP server."""
from __future__ import annotations

import http.server
import json
import random
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"),
            ("Brazil", "Brasilia"), ("Australia", "Canberra"), ("Canada", "Ottawa"), ("Egypt", "Cairo")]


def chat_rows(n: int = 64, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        country, city = rng.choice(CAPITALS)
        rows.append({"messages": [{"role": "user", "content": f"What is the capital of {country}?"},
                                  {"role": "assistant", "content": f"The capital of {country} is {city}."}]})
    return rows


def write_config(path: Path, method: str, **training) -> Path:
    """KAITO's default template for the method, with a float32 tiny-model-friendly tweak set."""
    import presets
    doc = presets.default_training_config(method)
    body = doc["training_config"]
    if method == "lora":
        body["ModelConfig"]["torch_dtype"] = "float32"
    body["LoraConfig"].update(lora_alpha=16)
    body["TrainingArguments"].update({"per_device_train_batch_size": 4, "learning_rate": 5e-3, "logging_steps": 1,
                                      "save_strategy": "steps", "save_steps": 4, **training})
    body["DatasetConfig"].update(train_test_split=0.8)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="session")
def tuning_config():
    """write_config as a fixture."""
    return write_config


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tinymodel import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base"))


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    hits: dict
    failures: dict  # path -> how many 503s to answer before serving

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        path = self.path.split("?", 1)[0]
        if path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", path[len("/redirect"):].replace("/to-ftp", "ftp://example.com"))
            self.end_headers()
            return
        if self.failures.get(path, 0) > 0:
            self.failures[path] -= 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = self.root / path.lstrip("/")
        if not file.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class DataServer:
    def __init__(self, root: Path):
        self.root = root
        handler = type("Handler", (_Handler,), {"root": root, "hits": {}, "failures": {}})
        self.handler = handler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path.lstrip('/')}"

    @property
    def hits(self) -> dict:
        return self.handler.hits

    def fail_next(self, path: str, times: int) -> None:
        self.handler.failures["/" + path.lstrip("/")] = times


@pytest.fixture(scope="module")
def data_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    pq.write_table(pa.Table.from_pylist(chat_rows()), root / "train-00000-of-00001.parquet")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(8, seed=1)))
    (root / "empty.csv").write_bytes(b"")
    server = DataServer(root)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
