"""`kaito up`: serve a model on this machine through the same Ray Serve app a cluster runs.

    kaito up                                  # the tiny preset, built locally on first use
    kaito up -f workspace.yaml                # that Workspace's preset and adapters; edits to its
                                              # adapters apply live, without a restart
    kaito up --model-path DIR --adapter a=DIR:0.5
    kaito up --demo-adapters                  # the tiny preset with two local LoRA adapters
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from contract.paths import OCI_SCHEME
from contract.ports import SERVE_PORT
from contract.serveconfig import APP_IMPORT_PATH

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
    return {"name": name, "source": path, "strength": strength}


def workspace_args(path: str) -> dict[str, Any]:
    """Serving args from a Workspace YAML: its preset, adapters and adapter-refresh annotation, read as the
    hooks read them (`contract.workspace.Workspace`, then `presets.facts`). Nothing is fetched here: this
    also runs on every edit of the file (prefetch_adapters checks the images once at start-up)."""
    import pydantic

    from contract.workspace import Workspace, one_workspace
    from presets import PresetNotFound
    from presets.facts import workspace_facts

    try:
        raw = one_workspace(Path(path).read_text())
    except OSError as e:
        raise UpError(f"cannot read workspace file {path}: {e.strerror or e}; pass a readable Workspace YAML "
                      "with -f") from e
    except ValueError as e:
        raise UpError(f"workspace file {path}: {e}") from e
    # kaito up places nothing on nodes: a file without resource.labelSelector (which the cluster
    # refuses) still serves here.
    resource = raw.get("resource") if isinstance(raw.get("resource"), dict) else {}
    raw = {**raw, "resource": {"labelSelector": {}, **resource}}
    try:
        facts = workspace_facts(Workspace.model_validate(raw))
    except pydantic.ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UpError(f"{path}: {where}: {err['msg']}") from e
    except PresetNotFound as e:
        raise UpError(f"{path}: inference.preset.name: {e}") from e
    if facts.workspace.inference is None or facts.preset is None:
        raise UpError(f"{path}: inference.preset.name is required for kaito up")
    adapters = []
    for i, a in enumerate(facts.adapters):
        if not a.image:
            raise UpError(f"{path}: inference.adapters[{i}].source needs name and image")
        # the replica fetches it and re-resolves its tag; kaito up only checks that it parses
        source = f"{OCI_SCHEME}{a.image}"
        try:
            import artifacts

            artifacts.parse_oci(source)
        except Exception as e:  # noqa: BLE001
            raise UpError(f"{path}: inference.adapters[{i}].source.image {a.image!r}: {_first_line(e)}") from e
        adapters.append({"name": a.name, "source": source, "strength": a.strength})
    args: dict[str, Any] = {"preset": facts.preset.name, "adapters": adapters}
    if facts.adapter_refresh is not None:
        args["adapter_refresh"] = facts.adapter_refresh
    return args


def prefetch_adapters(args: dict[str, Any]) -> None:
    """Pull the adapters given by image before Ray starts, so a bad one is one plain line at start-up
    (later edits are the replica's: a failed fetch keeps the old set serving and shows in /v1/models).
    The pull lands in the node cache, where the replica finds it."""
    import artifacts

    for a in args.get("adapters", []):
        if a["source"].startswith(OCI_SCHEME):
            try:
                artifacts.resolve(a["source"])
            except Exception as e:  # noqa: BLE001
                raise UpError(f"cannot fetch adapter {a['name']} from {a['source']}: {_first_line(e)}") from e


def server_args(ns: argparse.Namespace) -> dict[str, Any]:
    args: dict[str, Any] = workspace_args(ns.file) if ns.file else {"preset": "tiny"}
    if ns.model_path:
        args["model"] = _model_dir(ns.model_path)
        if not ns.file:
            args.pop("preset", None)
            args["served_model_name"] = ns.served_model_name or Path(ns.model_path).resolve().name
    if ns.served_model_name:
        args["served_model_name"] = ns.served_model_name
    for a in ns.adapter:
        if not (Path(a["source"]) / "adapter_config.json").is_file():
            raise UpError(f"--adapter {a['name']}: {a['source']} holds no adapter_config.json; pass a peft "
                          "LoRA adapter directory")
    if ns.adapter:
        args["adapters"] = list(args.get("adapters", [])) + ns.adapter
    args["max_batch_size"] = ns.max_batch_size
    interval = getattr(ns, "adapter_resolve_interval", None)
    if interval is not None:
        args["adapter_resolve_interval_s"] = interval
    return args


def _model_dir(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UpError(f"--model-path {path}: no such directory; pass a Hugging Face-format model directory "
                      "(config.json, tokenizer and weights)")
    if not (p / "config.json").is_file():
        raise UpError(f"--model-path {path}: holds no config.json; pass a Hugging Face-format model directory "
                      "(config.json, tokenizer and weights)")
    return str(p)


def check_port(host: str, port: int) -> None:
    """Refuse a busy port before Ray starts (Serve would otherwise retry binding it in the background)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is not busy
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UpError(f"port {port} on {host} is already in use; stop what listens there or pick "
                              "another with --port") from e
            raise UpError(f"cannot listen on {host}:{port}: {e.strerror or e}; check --host and --port") from e


def preflight(args: dict[str, Any], *, demo_adapters: bool = False) -> dict[str, Any]:
    """Fetch or build weights before Ray starts, so a missing model is one plain line, not a replica crash loop."""
    from .config import ConfigError, parse_args, resolve

    try:
        resolved = resolve(parse_args(args))
    except ConfigError as e:
        raise UpError(e.message) from e
    if resolved.source is None:
        import tinymodel as tiny

        model = tiny.tiny_model_dir()
        if not tiny.is_built(model):
            say("building the tiny model (first run only)...")
            with _quiet_build():
                tiny.ensure_tiny_model()
        args = {**args, "model": str(model), "served_model_name": resolved.served_model_name}
        if demo_adapters:
            if not all(tiny.is_built(d, "adapter_config.json") for d in tiny.demo_adapter_dirs(model).values()):
                say(f"building the demo adapters {', '.join(tiny.DEMO_ADAPTERS)} (first run only)...")
            with _quiet_build():
                args["adapters"] = [*args.get("adapters", []), *tiny.ensure_demo_adapters(model)]
        return args
    if demo_adapters:
        raise UpError("--demo-adapters needs the tiny preset (no -f and no --model-path)")
    from .loading import resolve_source

    try:
        local = resolve_source(resolved.source)  # its error names the source in one line
    except Exception as e:  # noqa: BLE001
        raise UpError(_first_line(e)) from e
    return {**args, "model": str(local), "served_model_name": resolved.served_model_name}


@contextlib.contextmanager
def _quiet_build():
    """No progress bars or library deprecation notices while building the tiny model and its
    adapters: they are noise among `kaito up`'s few lines."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def say(line: str) -> None:
    print(f"kaito up: {line}", flush=True)


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


# What "ready" means: KAITO's own endpoint answers a real generation with 200.
_PROBE = json.dumps({"prompt": "ready?", "generate_kwargs": {"max_new_tokens": 1}}).encode()


def wait_ready(base: str, timeout: float, stop: threading.Event) -> bool:
    """Poll /healthz (503 while loading), then confirm with one POST /chat that must answer 200."""
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with opener.open(base + "/healthz", timeout=5) as r:
                healthy = r.status == 200
            if healthy:
                req = urllib.request.Request(base + "/chat", data=_PROBE, headers={"Content-Type": "application/json"})
                with opener.open(req, timeout=60) as r:
                    if r.status == 200:
                        return True
        except urllib.error.HTTPError as e:  # 503 while loading; a load failure is reported at once
            message = _error_message(e)
            if "failed to load" in message:
                raise UpError(message) from e
            if 400 <= e.code < 500:  # not "still loading": waiting longer would not help
                raise UpError(f"{e.url} answered the readiness probe with {e.code}: {message}") from e
        except Exception:  # noqa: BLE001 - not up yet
            pass
        stop.wait(0.2)
    return False


def _error_message(e) -> str:
    try:
        return json.loads(e.read())["error"]["message"]
    except Exception:  # noqa: BLE001
        return ""


def serve_config(args: dict[str, Any]) -> dict[str, Any]:
    """The Serve config `kaito up` deploys: the one application a Workspace's ConfigMap also holds."""
    return {"applications": [{"name": "default", "route_prefix": "/", "import_path": APP_IMPORT_PATH, "args": args}]}


def watch_workspace(ns: argparse.Namespace, config: dict[str, Any], stop: threading.Event) -> None:
    """Apply edits of the -f file while serving: adapters (and the other live keys) through Serve's
    reconfigure, without new replicas; any other edit is named and needs a restart of kaito up."""
    import logging

    from .deploy import deploy
    from .reload import ConfigReloader, FileWatch

    def load(_content: bytes) -> dict[str, Any]:
        return serve_config(preflight(server_args(ns), demo_adapters=ns.demo_adapters))

    def report(level: int, line: str) -> None:
        if level >= logging.WARNING and "not applied live" in line:
            line += "; restart kaito up to apply it"
        print(f"kaito up: {line}", file=sys.stderr if level >= logging.WARNING else sys.stdout, flush=True)

    reloader = ConfigReloader(config, load=load, deploy=lambda new: deploy(new, wait_s=60), what=ns.file,
                              report=report)
    FileWatch(ns.file, reloader).start(stop)


def build_parser() -> argparse.ArgumentParser:
    from contract.serveargs import ServeArgs

    defaults = ServeArgs.model_fields
    p = argparse.ArgumentParser(
        prog="kaito up", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a model on this machine through the Ray Serve application a cluster runs,\n"
                    "on an embedded, loopback-only Ray instance.",
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("-f", "--file", metavar="WORKSPACE.yaml",
                   help="serve this Workspace's inference preset and adapters (default: the tiny preset)")
    p.add_argument("--model-path", metavar="DIR",
                   help="serve this local Hugging Face-format model directory instead of a preset (default: none)")
    p.add_argument("--served-model-name", metavar="NAME",
                   help="model name clients send (default: the preset's name, or the --model-path directory's)")
    p.add_argument("--adapter", action="append", type=parse_adapter, default=[], metavar="NAME=DIR[:STRENGTH]",
                   help="also serve this LoRA adapter directory, STRENGTH in [0, 1] (default strength 1.0); "
                        "repeatable")
    p.add_argument("--demo-adapters", action="store_true",
                   help="build two small random LoRA adapters beside the tiny model and serve them too "
                        "(default: off)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=SERVE_PORT, help="HTTP port (default: %(default)s)")
    p.add_argument("--max-batch-size", type=int, default=defaults["max_batch_size"].default,
                   metavar="N", help="sequences generated together (default: %(default)s)")
    p.add_argument("--adapter-resolve-interval", type=float, metavar="SECONDS",
                   default=defaults["adapter_resolve_interval_s"].default,
                   help="look up adapter image tags again this often and serve a newly pushed digest live; "
                        "0 = only when the adapters or the kaito.sh/adapter-refresh annotation change (default: %(default)s)")
    p.add_argument("--ready-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="give up when the model is not ready after this long (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    t0 = time.monotonic()
    try:
        args = server_args(ns)
        check_port(ns.host, ns.port)
        args = preflight(args, demo_adapters=ns.demo_adapters)
        prefetch_adapters(args)
    except UpError as e:  # one plain line, non-zero exit
        print(f"kaito up: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while building the tiny model: nothing is half-built (see tiny.py)
        return 130
    except Exception as e:  # noqa: BLE001 - anything unforeseen: still one line, no traceback
        print(f"kaito up: {_first_line(e)}", file=sys.stderr)
        return 1

    from . import ray_local

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    say(f"starting Ray and the Serve application on {ns.host}:{ns.port}...")
    phases: dict[str, float] = {}
    try:
        mark = time.monotonic()
        try:
            ray_local.start(host=ns.host, port=ns.port, quiet=True)
        except Exception as e:  # noqa: BLE001 - e.g. the raylet missing Ray's 30 s start-up window
            print(f"kaito up: Ray did not start: {_first_line(e)}", file=sys.stderr)
            return 1
        phases["Ray"] = time.monotonic() - mark
        # installed again after ray.init, which sets its own SIGTERM handler
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        from .deploy import deploy

        mark = time.monotonic()
        config = serve_config(args)
        try:
            deploy(config)
        except Exception as e:  # noqa: BLE001 - a replica that cannot start: its reason, in one line
            print(f"kaito up: the Serve application did not start: {_first_line(e)}", file=sys.stderr)
            return 1
        phases["replica start"] = time.monotonic() - mark
        mark = time.monotonic()
        try:
            ready = wait_ready(f"http://{ns.host}:{ns.port}", ns.ready_timeout, stop)
        except UpError as e:
            print(f"kaito up: {e}", file=sys.stderr)
            return 1
        phases["model import and load"] = time.monotonic() - mark
        if not ready:
            if stop.is_set():
                return 0
            print(f"kaito up: the model was not ready after {ns.ready_timeout:g} s; raise --ready-timeout or "
                  "check the model directory", file=sys.stderr)
            return 1
        say(f"ready in {time.monotonic() - t0:.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()) + ")")
        print(examples(ns.host, ns.port, args["served_model_name"], [a["name"] for a in args.get("adapters", [])]),
              flush=True)
        if ns.file:
            watch_workspace(ns, config, stop)
        stop.wait()
        say("stopping...")
        return 0
    finally:
        ray_local.stop()
