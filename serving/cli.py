"""`kaito up`: serve a model on this machine through the same Ray Serve app a cluster runs.

    kaito up                                  # the tiny preset, built locally on first use
    kaito up -f workspace.yaml                # that Workspace's preset and adapters
    kaito up --model-path DIR --adapter a=DIR:0.5
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class UpError(Exception):
    """A plain, one-line reason `kaito up` cannot serve."""


def parse_adapter(value: str) -> dict[str, Any]:
    """NAME=DIR[:STRENGTH]"""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"--adapter {value!r}: expected NAME=DIR[:STRENGTH]")
    path, strength = rest, 1.0
    head, colon, tail = rest.rpartition(":")
    if colon and head:
        try:
            strength = float(tail)
            path = head
        except ValueError:
            pass
    if not 0.0 <= strength <= 1.0:
        raise argparse.ArgumentTypeError(f"--adapter {value!r}: strength {strength} is not in [0, 1]")
    return {"name": name, "path": path, "strength": strength}


def workspace_args(path: str) -> dict[str, Any]:
    """Serving args from a Workspace YAML: inference.preset.name and inference.adapters."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    except (OSError, yaml.YAMLError) as e:
        raise UpError(f"cannot read workspace file {path}: {e}") from e
    ws = next((d for d in docs if isinstance(d, dict) and d.get("kind") == "Workspace"), None)
    if ws is None:
        raise UpError(f"{path} holds no Workspace (kind: Workspace)")
    inference = ws.get("inference") or {}
    preset = ((inference.get("preset") or {}).get("name"))
    if not preset:
        raise UpError(f"{path}: inference.preset.name is required for kaito up")
    adapters = []
    for i, a in enumerate(inference.get("adapters") or []):
        src = (a.get("source") or {})
        name = src.get("name")
        image = src.get("image")
        if not name or not image:
            raise UpError(f"{path}: inference.adapters[{i}].source needs name and image")
        try:
            import artifacts

            local = artifacts.resolve(image)
        except Exception as e:  # noqa: BLE001
            raise UpError(f"cannot fetch adapter {name} from {image}: {e}") from e
        adapters.append({"name": name, "path": str(local), "strength": float(a.get("strength", 1.0))})
    return {"preset": preset, "adapters": adapters}


def server_args(ns: argparse.Namespace) -> dict[str, Any]:
    args: dict[str, Any] = workspace_args(ns.file) if ns.file else {"preset": "tiny"}
    if ns.model_path:
        args["model"] = ns.model_path
        if not ns.file:
            args.pop("preset", None)
            args["served_model_name"] = ns.served_model_name or Path(ns.model_path).resolve().name
    if ns.served_model_name:
        args["served_model_name"] = ns.served_model_name
    if ns.adapter:
        args["adapters"] = list(args.get("adapters", [])) + ns.adapter
    args["max_batch_size"] = ns.max_batch_size
    return args


def preflight(args: dict[str, Any]) -> dict[str, Any]:
    """Fetch weights before Ray starts, so a missing model is one plain line, not a replica crash loop."""
    from .config import ServeArgs, resolve

    resolved = resolve(ServeArgs.from_dict(args))
    if resolved.source is None:
        from .tiny import ensure_tiny_model

        print("building the tiny model (first run only)...", flush=True)
        return {**args, "model": str(ensure_tiny_model()), "served_model_name": resolved.served_model_name}
    from .loading import resolve_source

    try:
        local = resolve_source(resolved.source)  # its error names the source in one line
    except Exception as e:  # noqa: BLE001
        raise UpError(_first_line(e)) from e
    return {**args, "model": str(local), "served_model_name": resolved.served_model_name}


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def examples(host: str, port: int, model: str, adapters: list[str]) -> str:
    base = f"http://{host}:{port}"
    lines = [
        f"serving {model} at {base}  (models: {', '.join([model, *adapters])})",
        "",
        "  curl -s -X POST " + base + "/chat -H 'Content-Type: application/json' \\",
        "       -d '{\"prompt\": \"Tell me about Kubernetes\", \"generate_kwargs\": {\"max_length\": 64}}'",
        "",
        "  python - <<'EOF'",
        "  from openai import OpenAI",
        f"  client = OpenAI(base_url='{base}/v1', api_key='unused')",
        f"  r = client.chat.completions.create(model='{model}', messages=[{{'role': 'user', 'content': 'Hi'}}])",
        "  print(r.choices[0].message.content)",
        "  EOF",
        "",
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def wait_ready(url: str, timeout: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except urllib.error.HTTPError as e:  # 503 while loading; a load failure is reported at once
            message = _error_message(e)
            if "failed to load" in message:
                raise UpError(message) from e
        except Exception:  # noqa: BLE001 - not up yet
            pass
        stop.wait(0.5)
    return False


def _error_message(e) -> str:
    import json

    try:
        return json.loads(e.read())["error"]["message"]
    except Exception:  # noqa: BLE001
        return 


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kaito up", description="Serve a model locally on an embedded Ray instance.")
    p.add_argument("-f", "--file", help="Workspace YAML: serve its inference preset and adapters")
    p.add_argument("--model-path", help="local Hugging Face-format model directory")
    p.add_argument("--served-model-name", help="model name clients send (default: preset or directory name)")
    p.add_argument("--adapter", action="append", type=parse_adapter, default=[], metavar="NAME=DIR[:STRENGTH]",
                   help="LoRA adapter directory; repeatable")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--ready-timeout", type=float, default=600.0)
    ns = p.parse_args(argv)

    try:
        args = preflight(server_args(ns))
    except (UpError, Exception) as e:  # noqa: BLE001 - one plain line, non-zero exit
        print(f"kaito up: {_first_line(e)}", file=sys.stderr)
        return 1

    from . import ray_local

    stop = threading.Event()
    print("starting Ray and the Serve application...", flush=True)
    ray_local.start(host=ns.host, port=ns.port)
    # installed after ray.init, which sets its own SIGTERM handler
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        from ray import serve

        from .app import build

        serve.run(build(args), name="default", route_prefix="/", blocking=False)
        try:
            ready = wait_ready(f"http://{ns.host}:{ns.port}/healthz", ns.ready_timeout, stop)
        except UpError as e:
            print(f"kaito up: {_first_line(e)}", file=sys.stderr)
            return 1
        if not ready:
            if stop.is_set():
                return 0
            print("kaito up: the model did not become ready in time", file=sys.stderr)
            return 1
        print(examples(ns.host, ns.port, args["served_model_name"], [a["name"] for a in args.get("adapters", [])]),
              flush=True)
        stop.wait()
        print("stopping...", flush=True)
        return 0
    finally:
        ray_local.stop()
