"""Build the project's images with podman, each cached by a hash of its inputs.

    python -m tests.support.images [base|hooks|runtime|all]

The base is a debootstrap of Debian bookworm imported as an image (no registry to pull a base from
here; ENVIRONMENT.md, "Containers"). The hooks and runtime images are built from deploy/*.Dockerfile
with `BASE_IMAGE` set to that base and the runtime's torch from this machine's pip find-links (the
CPU wheel). Each tag ends in a hash of everything that goes into the image, so a second build in the
same run (or on the same machine) with unchanged inputs is a lookup, not a build.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

ROOT = Path(__file__).resolve().parents[2]
PODMAN = "podman"
RUNC = "/usr/sbin/runc"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
BASE_REPO = "localhost/kaito-base"


def packages() -> tuple[str, ...]:
    """The top-level packages setup.cfg ships: what both Dockerfiles COPY (a test checks they do)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names = cfg["options.packages.find"]["include"].split()
    return tuple(n for n in names if "." not in n)


#: What the Dockerfiles COPY, and so what an image's tag hashes (.dockerignore trims the rest).
CONTEXT = ("setup.cfg", "setup.py", "pyproject.toml", "constraints.txt", "README.md", *packages())
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
#: Raising rlimits is refused here (setrlimit EPERM), so containers get lower ones.
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
WORK = Path(os.environ.get("KAITO_E2E_WORK", "/var/tmp/kaito-e2e"))


class ImageBuildError(RuntimeError):
    pass


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`podman --runtime runc ARGS` (crun cannot run on this host's hybrid cgroups)."""
    if shutil.which(PODMAN) is None:
        raise ImageBuildError("podman is not installed: run ./dev.sh test as root, or apt-get install -y podman runc")
    cmd = [PODMAN, "--runtime", RUNC, *args]
    proc = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        out = (proc.stdout or "")[-4000:] + (proc.stderr or "")[-4000:]
        raise ImageBuildError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n{out}")
    return proc


def exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def _hash(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:12]


def _context_files() -> list[Path]:
    files = []
    for entry in CONTEXT:
        p = ROOT / entry
        if p.is_file():
            files.append(p)
            continue
        for f in sorted(p.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo"):
                files.append(f)
    return files


def _pip_sources() -> tuple[list[str], list[str]]:
    """(find-links dirs, file:// index dirs) of the host's pip config, which a build may read."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    links: list[str] = []
    indexes: list[str] = []
    for line in out.splitlines():
        key, _, val = line.partition("=")
        target = links if key.endswith("find-links") else indexes if key.endswith("extra-index-url") else None
        for item in val.strip("'\"").split() if target is not None else ():
            path = item[len("file://"):] if item.startswith("file://") else item
            if path.startswith("/") and os.path.isdir(path) and path not in target:
                target.append(path)
    return links, indexes


def _pip_conf(links: list[str], indexes: list[str]) -> Path:
    """The pip config a build sees at /etc/pip.conf: the host's proxy CA and local wheel sources."""
    lines = ["[global]", "cert = /etc/pki/host-ca.crt"]
    if links:
        lines.append("find-links = " + " ".join(links))
    if indexes:
        lines.append("extra-index-url = " + " ".join("file://" + d for d in indexes))
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "pip.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _mounts(links: list[str], indexes: list[str]) -> list[str]:
    """Read-only mounts at the same paths; a local simple index links to files beside it."""
    roots = links + [str(Path(d).parent) if d.rstrip("/").endswith("/simple") else d for d in indexes]
    return sorted(set(roots))


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float      # 0.0 when the cache answered
    cached: bool

    def info(self) -> dict:
        raw = json.loads(podman("image", "inspect", self.tag).stdout)[0]
        return {"tag": self.tag, "build_seconds": round(self.seconds, 1), "cached": self.cached,
                "size_mb": round(raw["Size"] / 1e6, 1), "layers": len(raw["RootFS"]["Layers"])}


def base_image() -> Built:
    """Debian bookworm (minbase) from debootstrap, imported as `localhost/kaito-base:bookworm-<hash>`."""
    tag = f"{BASE_REPO}:{SUITE}-{_hash([SUITE.encode(), MIRROR.encode(), b'minbase', b'v1'])}"
    if exists(tag):
        return Built(tag, 0.0, True)
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed: apt-get install -y debootstrap")
    start = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), MIRROR],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise ImageBuildError(f"debootstrap failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run([PODMAN, "--runtime", RUNC, "import", "--change",
                              "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "-", tag], stdin=tar.stdout, capture_output=True, text=True, timeout=600)
        tar.stdout.close()
        tar.wait()
        if imp.returncode != 0:
            raise ImageBuildError(f"podman import failed: {imp.stderr[-3000:]}")
    return Built(tag, time.monotonic() - start, False)


def build(name: str, dockerfile: str, build_args: Optional[dict[str, str]] = None) -> Built:
    """Build deploy/<dockerfile> as `localhost/kaito-<name>:<hash of Dockerfile, args and context>`."""
    args = dict(build_args or {})
    df = ROOT / dockerfile
    parts = [df.read_bytes(), json.dumps(args, sort_keys=True).encode(), (ROOT / ".dockerignore").read_bytes()]
    for f in _context_files():
        parts += [str(f.relative_to(ROOT)).encode(), f.read_bytes()]
    tag = f"localhost/kaito-{name}:{_hash(parts)}"
    if exists(tag):
        return Built(tag, 0.0, True)
    links, indexes = _pip_sources()
    conf = _pip_conf(links, indexes)
    cmd = ["build", "-f", str(df), "-t", tag, "--layers",
           "-v", f"{HOST_CA}:/etc/pki/host-ca.crt:ro", "-v", f"{conf}:/etc/pip.conf:ro"]
    for d in _mounts(links, indexes):
        cmd += ["-v", f"{d}:{d}:ro"]
    for k, v in sorted(args.items()):
        cmd += ["--build-arg", f"{k}={v}"]
    start = time.monotonic()
    podman(*cmd, str(ROOT), timeout=3000)
    built = Built(tag, time.monotonic() - start, False)
    _untag_older(tag)
    return built


def _untag_older(tag: str) -> None:
    """Drop this image's older tags (their layers are mostly shared), so repeated runs do not pile up."""
    repo = tag.rsplit(":", 1)[0]
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repo, check=False).stdout.split()
    old = [t for t in listed if t != tag and t.startswith(repo + ":")]
    if old:
        podman("rmi", *old, check=False)


def hooks_image() -> Built:
    return build("hooks", "deploy/hooks.Dockerfile", {"BASE_IMAGE": base_image().tag})


def runtime_image() -> Built:
    # An empty TORCH_INDEX leaves pip on its configured sources: this machine's CPU wheel.
    return build("runtime", "deploy/runtime.Dockerfile", {"BASE_IMAGE": base_image().tag, "TORCH_INDEX": ""})


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "all"
    makers = {"base": [base_image], "hooks": [hooks_image], "runtime": [runtime_image],
              "all": [base_image, hooks_image, runtime_image]}[which]
    for make in makers:
        print(json.dumps(make().info()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
