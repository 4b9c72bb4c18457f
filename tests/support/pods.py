"""Run a pod spec the hooks emit as podman containers on the host network (a stand-in for the kubelet).

`podman kube play` (4.3) cannot run pods with init containers, so this starts them itself: the init
containers one by one in order, each to completion, then the containers. It honours what decides
whether our pods work: image, command/args, env (values, secretKeyRef), volumeMounts of emptyDir,
configMap and secret volumes (items, defaultMode), the pod's runAsUser/runAsGroup/fsGroup and the
container's readOnlyRootFilesystem, capabilities.drop, allowPrivilegeEscalation and
terminationMessagePolicy. `status()` reports what the kubelet would: a Pod status with init and
container states, exit codes and termination messages.

What it does not do, or does differently, is listed in ADAPTATIONS and printed by `describe()`.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import yaml

from tests.support.images import PODMAN, RUNC, ULIMITS

Obj = dict[str, Any]

#: Everything the runner ignores or changes, in one place (printed in the test output).
ADAPTATIONS = (
    "host network only: every container shares the host's; Service names resolve to 127.0.0.1 via --add-host",
    "ports: an argument HOST:<containerPort> becomes HOST:<hostPort> from the port map (0.0.0.0 becomes 127.0.0.1),"
    " so pods never collide",
    "Serve config (ConfigMap): http_options moved to 127.0.0.1:<hostPort> and proxy_location HeadOnly, since"
    " every node's proxy would bind the same host port; gpus_per_replica 0 (adapt_serve_config)",
    "Ray nodes: KAITO_RAY_START_ARGS gives each node free ports, 1 CPU and a small object store; the head runs"
    " with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (node IP 127.0.0.1) and its two fixed metrics ports moved,"
    " workers with =1 (so `ray start --address` may join) take 127.0.0.1 from the route to the head; every Ray"
    " listener is on 127.0.0.1 but Serve's per-replica gRPC server (ray_node_env); the two-node test shortens"
    " the worker's SIGTERM drain (RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=10, Ray's default 30)",
    "images: references are mapped to the locally built images (no registry to pull our images from)",
    "ignored: resources (GPU requests/limits), probes' timing, affinity, tolerations, scheduling, serviceAccount",
    "restartPolicy Always: a container that exits while a test waits on it is restarted at most"
    " twice, without the kubelet's back-off",
    "stop (pod deletion): SIGTERM, then SIGKILL after terminationGracePeriodSeconds (default 30 s), as the"
    " kubelet does; no preStop hooks",
    "emptyDir (also medium: Memory) is a host directory owned by fsGroup; no sizeLimit",
    "configMap/secret volumes are written as the kubelet's atomic writer does (..data symlink swap);"
    " a changed ConfigMap reaches a running pod only when the test calls update_config_map (the kubelet's"
    " sync period, up to about a minute, is not modelled)",
    "persistentVolumeClaim: the host directory the test binds to the claim name (claims=), kept across pods"
    " as a bound PersistentVolume is; owned by fsGroup",
    "extra env: KAITO_INSECURE_REGISTRIES, so pulls from the test registry use plain HTTP on loopback",
    "termination message: FallbackToLogsOnError reads the last 80 log lines, at most 2048 bytes (kubelet's rule)",
)
#: The symlink the kubelet's atomic writer swaps to a ConfigMap or Secret volume's current payload.
DATA_LINK = "..data"
#: The kubelet's tail for FallbackToLogsOnError.
LOG_LINES, LOG_BYTES = 80, 2048
MAX_RESTARTS = 2
#: The kubelet's default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30


def describe() -> str:
    return "pod runner adaptations:\n" + "\n".join(f"  - {a}" for a in ADAPTATIONS)


class PodFailed(AssertionError):
    """A container that could not start or exited non-zero; the message carries its output."""


@dataclass
class Objects:
    """The ConfigMaps and Secrets a pod's volumes and env refer to (name -> object)."""
    config_maps: dict[str, Obj] = field(default_factory=dict)
    secrets: dict[str, Obj] = field(default_factory=dict)


def _run(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PODMAN, "--runtime", RUNC, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise PodFailed(f"podman {' '.join(args[:3])} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


@dataclass
class PodRunner:
    name: str
    spec: Obj
    objects: Objects = field(default_factory=Objects)
    images: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[int, int] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    workdir: Optional[Path] = None
    #: claimName -> host directory: the PersistentVolumes bound to the pod's claims.
    claims: Mapping[str, Path] = field(default_factory=dict)
    log: Callable[[str], None] = print
    _volumes: dict[str, Path] = field(default_factory=dict, init=False)
    _results: dict[str, Obj] = field(default_factory=dict, init=False)
    _started: list[str] = field(default_factory=list, init=False)
    _restarts: dict[str, int] = field(default_factory=dict, init=False)

    # -- volumes ----------------------------------------------------------------------------
    def _prepare_volumes(self) -> None:
        root = Path(tempfile.mkdtemp(prefix=f"pod-{self.name}-", dir=self.workdir))
        root.chmod(0o755)
        group = int((self.spec.get("securityContext") or {}).get("fsGroup") or 0)
        for vol in self.spec.get("volumes") or []:
            name = vol["name"]
            path = root / name
            path.mkdir()
            if "emptyDir" in vol:  # world-writable, as the kubelet makes it; group-owned with an fsGroup
                if group:
                    shutil.chown(path, group=group)
                path.chmod(0o2777 if group else 0o777)
            elif "configMap" in vol or "secret" in vol:
                src = vol.get("configMap") or vol.get("secret")
                store = self.objects.config_maps if "configMap" in vol else self.objects.secrets
                ref = src.get("name") or src.get("secretName")
                if ref not in store:
                    raise PodFailed(f"pod {self.name}: volume {name} refers to missing "
                                    f"{'ConfigMap' if 'configMap' in vol else 'Secret'} {ref}")
                self._write_projected(path, src, store[ref], group)
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                if claim not in self.claims:
                    raise PodFailed(f"pod {self.name}: volume {name}: claim {claim} is not bound (claims=)")
                path.rmdir()
                path = Path(self.claims[claim])
                if group:
                    shutil.chown(path, group=group)
                path.chmod(0o2777 if group else 0o777)
            else:
                raise PodFailed(f"pod {self.name}: volume {name}: only emptyDir, configMap, secret and"
                                " persistentVolumeClaim are supported")
            self._volumes[name] = path

    def _write_projected(self, path: Path, src: Obj, obj: Obj, group: int) -> None:
        """Write a ConfigMap or Secret volume as the kubelet's atomic writer does: the payload in a fresh
        `..<timestamp>` directory, the `..data` symlink swapped to it with one rename, and each top-level
        name a symlink through `..data`. A reader opening a file by path sees the old or the new
        version whole, never a mix; the watched path's own inode never changes."""
        data = _data(obj)
        items = src.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        mode = int(src.get("defaultMode", 0o644))
        payload = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()), dir=path))
        payload.chmod(0o755)
        for item in items:
            target = payload / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])
            if group:
                shutil.chown(target, group=group)
            target.chmod(int(item.get("mode", mode)))
        old = os.readlink(path / DATA_LINK) if (path / DATA_LINK).is_symlink() else None
        tmp = path / f"{DATA_LINK}_tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(payload.name)
        os.rename(tmp, path / DATA_LINK)  # the atomic swap
        visible = {Path(item["path"]).parts[0] for item in items}
        for entry in path.iterdir():  # names no longer in the payload go; new ones appear
            if not entry.name.startswith("..") and entry.name not in visible:
                entry.unlink()
        for name in visible:
            if not (path / name).is_symlink():
                (path / name).symlink_to(f"{DATA_LINK}/{name}")
        if old:
            shutil.rmtree(path / old)

    def update_config_map(self, obj: Obj) -> list[str]:
        """The kubelet's periodic sync after a ConfigMap changed: every volume of this pod that projects
        it is rewritten in place (atomic `..data` swap), which running containers see through their
        mounts. Returns the volume names updated."""
        name = obj["metadata"]["name"]
        self.objects.config_maps[name] = obj
        group = int((self.spec.get("securityContext") or {}).get("fsGroup") or 0)
        done = []
        for vol in self.spec.get("volumes") or []:
            if (vol.get("configMap") or {}).get("name") == name:
                self._write_projected(self._volumes[vol["name"]], vol["configMap"], obj, group)
                done.append(vol["name"])
        return done

    # -- containers -------------------------------------------------------------------------
    def _env(self, container: Obj) -> list[str]:
        out = []
        for e in container.get("env") or []:
            if "value" in e:
                out.append(f"{e['name']}={e['value']}")
            elif (ref := (e.get("valueFrom") or {}).get("secretKeyRef")) is not None:
                out.append(f"{e['name']}={_data(self.objects.secrets[ref['name']])[ref['key']].decode()}")
        out += [f"{k}={v}" for k, v in self.extra_env.items()]
        return out

    def _argv(self, parts: list[str]) -> list[str]:
        out = []
        for p in parts:
            m = re.fullmatch(r"([A-Za-z0-9.-]+):(\d+)", p)
            if m and int(m.group(2)) in self.ports:
                host = "127.0.0.1" if m.group(1) == "0.0.0.0" else m.group(1)
                p = f"{host}:{self.ports[int(m.group(2))]}"
            out.append(p)
        return out

    def container_name(self, container: Obj) -> str:
        return f"{self.name}-{container['name']}"

    def _podman_args(self, container: Obj, detach: bool) -> list[str]:
        pod_sc = self.spec.get("securityContext") or {}
        sc = container.get("securityContext") or {}
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        args = ["run", "--name", self.container_name(container), "--network", "host", *ULIMITS,
                "--log-driver", "k8s-file"]
        args.append("-d" if detach else "--rm=false")
        if user is not None:
            args += ["--user", f"{user}:{group if group is not None else user}"]
        if pod_sc.get("fsGroup") is not None:
            args += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if "ALL" in ((sc.get("capabilities") or {}).get("drop") or []):
            args += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for host in self.hosts:
            args += ["--add-host", f"{host}:127.0.0.1"]
        for env in self._env(container):
            args += ["-e", env]
        for m in container.get("volumeMounts") or []:
            ro = ":ro" if m.get("readOnly") else ""
            args += ["-v", f"{self._volumes[m['name']]}:{m['mountPath']}{ro}"]
        image = self.images.get(container["image"], container["image"])
        command = self._argv(list(container.get("command") or []))
        rest = self._argv(list(container.get("args") or []))
        if command:
            args += ["--entrypoint", json.dumps(command[:1])]
            rest = command[1:] + rest
        return args + [image, *rest]

    def _termination(self, container: Obj, cname: str, exit_code: int, output: Optional[str] = None) -> Obj:
        term: Obj = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
        if container.get("terminationMessagePolicy") == "FallbackToLogsOnError" and exit_code != 0:
            if output is None:
                logs = _run("logs", cname, check=False)
                output = logs.stdout + logs.stderr
            text = "\n".join(output.splitlines()[-LOG_LINES:])[-LOG_BYTES:]
            if text.strip():
                term["message"] = text
        return term

    def start(self, init_timeout: float = 300) -> None:
        """Init containers to completion in order (the first failure stops the pod), then the containers."""
        self._prepare_volumes()
        for container in self.spec.get("initContainers") or []:
            cname = self.container_name(container)
            _run("rm", "-f", cname, check=False)
            self.log(f"[pod {self.name}] init container {container['name']}: running")
            self._started.append(cname)
            proc = subprocess.run([PODMAN, "--runtime", RUNC, *self._podman_args(container, detach=False)],
                                  capture_output=True, text=True, timeout=init_timeout)
            term = self._termination(container, cname, proc.returncode, proc.stdout + proc.stderr)
            self._results[container["name"]] = {"init": True, "terminated": term}
            if proc.returncode != 0:
                self.log(f"[pod {self.name}] init container {container['name']} exited {proc.returncode}")
                return
        for container in self.spec.get("containers") or []:
            self.start_container(container["name"])

    def start_container(self, name: str) -> None:
        container = next(c for c in self.spec["containers"] if c["name"] == name)
        cname = self.container_name(container)
        _run("rm", "-f", cname, check=False)
        self.log(f"[pod {self.name}] container {name}: starting")
        if cname not in self._started:
            self._started.append(cname)
        _run(*self._podman_args(container, detach=True))

    def logs(self, name: str, tail: int = 60) -> str:
        container = next(c for c in [*(self.spec.get("initContainers") or []), *self.spec["containers"]]
                         if c["name"] == name)
        proc = _run("logs", "--tail", str(tail), self.container_name(container), check=False)
        return proc.stdout + proc.stderr

    def _state(self, container: Obj) -> Obj:
        raw = _run("inspect", "--format", "{{json .State}}", self.container_name(container), check=False)
        if raw.returncode != 0:
            return {"waiting": {"reason": "ContainerCreating"}}
        st = json.loads(raw.stdout)
        if st.get("Running"):
            return {"running": {"startedAt": st.get("StartedAt")}}
        return {"terminated": self._termination(container, self.container_name(container), int(st.get("ExitCode", 0)))}

    def status(self) -> Obj:
        """A Pod status shaped as the kubelet reports it."""
        inits = self.spec.get("initContainers") or []
        init_statuses, blocked = [], False
        for c in inits:
            res = self._results.get(c["name"])
            if res is None or blocked:
                init_statuses.append({"name": c["name"], "image": c["image"], "ready": False, "restartCount": 0,
                                      "state": {"waiting": {"reason": "PodInitializing"}}})
                continue
            term = res["terminated"]
            init_statuses.append({"name": c["name"], "image": c["image"], "ready": term["exitCode"] == 0,
                                  "restartCount": 0, "state": {"terminated": term}})
            blocked = term["exitCode"] != 0
        statuses = []
        for c in self.spec.get("containers") or []:
            state = {"waiting": {"reason": "PodInitializing"}} if blocked else self._state(c)
            statuses.append({"name": c["name"], "image": c["image"], "ready": "running" in state,
                             "restartCount": self._restarts.get(c["name"], 0), "state": state})
        phase = "Pending" if blocked or any("waiting" in s["state"] for s in statuses) else (
            "Running" if any("running" in s["state"] for s in statuses) else
            "Succeeded" if all(s["state"]["terminated"]["exitCode"] == 0 for s in statuses) else "Failed")
        out: Obj = {"phase": phase, "containerStatuses": statuses,
                    "conditions": [{"type": "PodScheduled", "status": "True"}]}
        if inits:
            out["initContainerStatuses"] = init_statuses
        return out

    def pod_object(self, namespace: str, labels: Mapping[str, str]) -> Obj:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.name, "namespace": namespace, "labels": dict(labels)},
                "spec": self.spec, "status": self.status()}

    def wait_running(self, name: str, check: Callable[[], bool], what: str, timeout: float) -> float:
        """Wait until `check()` holds while container `name` runs; fail with its output otherwise."""
        self.log(f"[pod {self.name}] waiting up to {timeout:.0f}s for {what}")
        start = time.monotonic()
        while True:
            if check():
                return time.monotonic() - start
            self.keep_running(name, what)
            if time.monotonic() - start > timeout:
                raise PodFailed(f"pod {self.name} container {name}: {what}: not there after {timeout:.0f}s"
                                f"\n--- output ---\n{self.logs(name)}")
            time.sleep(0.1)

    def keep_running(self, name: str, what: str = "it to keep running") -> None:
        """What the kubelet does for a container that exited: restart it (restartPolicy Always, at most
        MAX_RESTARTS times here); fail with its output once restarts are spent or not allowed."""
        container = next(c for c in self.spec["containers"] if c["name"] == name)
        state = self._state(container)
        if "terminated" not in state:
            return
        restarts = self._restarts.get(name, 0)
        if self.spec.get("restartPolicy", "Always") == "Always" and restarts < MAX_RESTARTS:
            self.log(f"[pod {self.name}] container {name} exited {state['terminated']['exitCode']}: restarting"
                     f" (restartPolicy Always), last lines:\n{self.logs(name, 5)}")
            self._restarts[name] = restarts + 1
            self.start_container(name)
            return
        raise PodFailed(f"pod {self.name} container {name}: {what}: exited\n--- output ---\n{self.logs(name)}")

    def stop(self, name: str) -> float:
        """Stop container `name` as the kubelet deletes a pod: SIGTERM, SIGKILL after the grace period.
        Returns the seconds it took to exit."""
        container = next(c for c in self.spec["containers"] if c["name"] == name)
        grace = int(self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        self.log(f"[pod {self.name}] container {name}: stopping (SIGTERM, SIGKILL after {grace}s)")
        start = time.monotonic()
        _run("stop", "-t", str(grace), self.container_name(container), timeout=grace + 60)
        return time.monotonic() - start

    def kill(self, name: str) -> None:
        """SIGKILL container `name`: what a node failure or an eviction past its grace period does."""
        container = next(c for c in self.spec["containers"] if c["name"] == name)
        self.log(f"[pod {self.name}] container {name}: SIGKILL")
        _run("kill", "-s", "KILL", self.container_name(container))

    def wait_exit(self, name: str, timeout: float, what: str = "") -> Obj:
        """The terminated state of container `name` once it exits; fail with its output on the deadline."""
        container = next(c for c in self.spec["containers"] if c["name"] == name)
        what = what or f"container {name} to finish"
        self.log(f"[pod {self.name}] waiting up to {timeout:.0f}s for {what}")
        start = time.monotonic()
        while True:
            state = self._state(container)
            if "terminated" in state:
                return state["terminated"]
            if time.monotonic() - start > timeout:
                raise PodFailed(f"pod {self.name} container {name}: {what}: still running after {timeout:.0f}s"
                                f"\n--- output ---\n{self.logs(name)}")
            time.sleep(0.5)

    def exec(self, name: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a command inside running container `name` (as its user, with its env)."""
        container = next(c for c in self.spec["containers"] if c["name"] == name)
        return _run("exec", self.container_name(container), *argv, timeout=timeout, check=False)

    def host_pids(self) -> set[int]:
        """Host PIDs of every process in this pod's running containers (`podman top ... hpid`)."""
        pids: set[int] = set()
        for container in self.spec.get("containers") or []:
            proc = _run("top", self.container_name(container), "hpid", check=False)
            pids.update(int(x) for x in proc.stdout.split()[1:] if x.isdigit())
        return pids

    def remove(self) -> None:
        for cname in reversed(self._started):
            _run("rm", "-f", "-t", "5", cname, check=False, timeout=60)
        self._started.clear()


def adapt_serve_config(config_map: Obj, key: str, port: int) -> Obj:
    """The Serve ConfigMap for host-network pods: one proxy, on loopback, on a free port."""
    cfg = yaml.safe_load(config_map["data"][key])
    cfg["http_options"] = {**(cfg.get("http_options") or {}), "host": "127.0.0.1", "port": port}
    cfg["proxy_location"] = "HeadOnly"
    for app in cfg.get("applications") or []:  # GPU resources are dropped: replicas run on the CPU
        if (app.get("args") or {}).get("gpus_per_replica"):
            app["args"]["gpus_per_replica"] = 0
    return {**config_map, "data": {**config_map["data"], key: yaml.safe_dump(cfg, sort_keys=False)}}


def ray_node_env(free_port: Callable[[], int], ray_port: Optional[int] = None) -> dict[str, str]:
    """Environment for a Ray node container sharing the host network with other Ray instances:
    the head when `ray_port` (its GCS port) is given, else a worker.

    Ray 2.60 takes a node's IP from `--node-ip-address`, but rewrites a loopback value there to the
    machine's address when multi-node is enabled (services.resolve_ip_for_localhost), and its gRPC
    servers listen on every interface unless the node IP is 127.0.0.1. So: the head runs with
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which makes its node IP 127.0.0.1; a worker needs =1 (else
    `ray start --address` refuses to join) and no --node-ip-address: it takes the source address of
    its route to the head, 127.0.0.1, because the Service name resolves there (--add-host). The
    head's autoscaler and dashboard metrics servers have fixed ports (44217, 44227) that only these
    environment variables move."""
    named = {"dashboard-agent-listen-port": free_port(), "dashboard-agent-grpc-port": free_port(),
             "metrics-export-port": free_port(), "runtime-env-agent-port": free_port(),
             "node-manager-port": free_port(), "object-manager-port": free_port()}
    env = {}
    if ray_port is not None:
        named.update({"port": ray_port, "ray-client-server-port": free_port()})
        env = {"AUTOSCALER_METRIC_PORT": str(free_port()), "DASHBOARD_METRIC_PORT": str(free_port())}
    taken = {*named.values(), *map(int, env.values())}
    # Ray refuses a worker port range that holds one of the node's other ports.
    base = next(b for b in (free_port() // 100 * 100 for _ in range(100)) if not taken & set(range(b, b + 100)))
    flags = ["--num-cpus=1", "--object-store-memory=100000000", *(f"--{k}={v}" for k, v in named.items()),
             f"--min-worker-port={base}", f"--max-worker-port={base + 99}"]
    cluster = "1" if ray_port is None else "0"
    return {"KAITO_RAY_START_ARGS": " ".join(flags), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": cluster, **env}


def _data(obj: Obj) -> dict[str, bytes]:
    out = {k: v.encode() for k, v in (obj.get("data") or {}).items()} if obj.get("kind") == "ConfigMap" else \
        {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    return out
