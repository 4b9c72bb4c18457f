"""`kaito up` before Ray starts: its flags explain themselves, and bad input is one line and exit 1."""
import re
import socket
import subprocess
import sys
from pathlib import Path

from serving import cli
from contract.serveargs import ServeArgs

ROOT = Path(__file__).resolve().parents[3]


def up(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "KAITO_CACHE_DIR": str(tmp_path / "cache"),
           "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "kaito_cli", "up", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def one_line_exit_1(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kaito up: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "starting Ray" not in r.stdout, "Ray must not start for input it can refuse first"
    return lines[0]


def test_every_flag_has_help_text_and_shows_its_default():
    parser = cli.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, action.option_strings
        assert "default" in action.help, f"{action.option_strings} does not show its default"
    # the numbers shown are the real defaults, from where they are defined
    assert f"(default: {ServeArgs.model_fields['max_batch_size'].default})" in text
    assert "(default: 8000)" in text and "(default: 127.0.0.1)" in text


def test_a_busy_port_is_one_line_before_ray_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_exit_1(up("--port", str(port), tmp_path=tmp_path))
    assert f"port {port}" in line and "in use" in line and "--port" in line


def test_a_missing_model_directory_is_one_line(tmp_path):
    line = one_line_exit_1(up("--model-path", str(tmp_path / "nope"), tmp_path=tmp_path))
    assert str(tmp_path / "nope") in line and "no such directory" in line
    (tmp_path / "empty").mkdir()
    line = one_line_exit_1(up("--model-path", str(tmp_path / "empty"), tmp_path=tmp_path))
    assert "config.json" in line


def test_a_missing_adapter_directory_is_one_line(tmp_path):
    line = one_line_exit_1(up("--adapter", f"a={tmp_path}/none:0.5", tmp_path=tmp_path))
    assert "--adapter a" in line and "adapter_config.json" in line


def test_an_unreadable_workspace_file_is_one_line(tmp_path):
    line = one_line_exit_1(up("-f", str(tmp_path / "missing.yaml"), tmp_path=tmp_path))
    assert "missing.yaml" in line and "No such file" in line
    line = one_line_exit_1(up("-f", str(tmp_path), tmp_path=tmp_path))  # a directory
    assert "cannot read workspace file" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Workspace\ninference:\n  preset: {name: tiny\n")
    line = one_line_exit_1(up("-f", str(bad), tmp_path=tmp_path))
    assert re.search(r"YAML syntax error at line \d+, column \d+", line), line
    nows = tmp_path / "cm.yaml"
    nows.write_text("kind: ConfigMap\n")
    assert "must hold exactly one Workspace" in one_line_exit_1(up("-f", str(nows), tmp_path=tmp_path))


def test_an_unknown_preset_is_one_line(tmp_path):
    ws = tmp_path / "ws.yaml"
    ws.write_text("apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nmetadata: {name: w}\ninference: {preset: {name: no-such-model}}\n")
    assert "no-such-model" in one_line_exit_1(up("-f", str(ws), tmp_path=tmp_path))


def test_demo_adapters_need_the_tiny_preset(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    line = one_line_exit_1(up("--model-path", str(model), "--demo-adapters", tmp_path=tmp_path))
    assert "--demo-adapters" in line and "tiny" in line


class FakeServe:
    """A loopback HTTP server standing in for a replica: /healthz and /chat answer what the test says."""

    def __init__(self, healthz, chat):
        import http.server
        import threading

        self.seen: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, codes):
                outer.seen.append(self.path)
                code = codes.pop(0) if len(codes) > 1 else codes[0]
                body = b'{"error": {"message": "the model is still loading; retry shortly"}}' if code != 200 else b"{}"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer(healthz)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer(chat)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_ready_means_chat_answered_200_not_only_healthz():
    import threading

    fake = FakeServe(healthz=[503, 200], chat=[503, 503, 200])  # healthy before /chat can answer
    try:
        assert cli.wait_ready(fake.base, 30, threading.Event())
        assert fake.seen.count("/chat") == 3 and fake.seen[-1] == "/chat"
    finally:
        fake.close()


def test_a_client_error_from_the_probe_stops_the_wait_at_once():
    import threading

    import pytest

    fake = FakeServe(healthz=[200], chat=[400])
    try:
        with pytest.raises(cli.UpError, match="400"):
            cli.wait_ready(fake.base, 30, threading.Event())
        assert fake.seen.count("/chat") == 1
    finally:
        fake.close()
