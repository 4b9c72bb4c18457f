"""`kaito render -f FILE`: print, as YAML, the node claims and children the hooks produce.

Runs a short emulated lifecycle in-process (the pure hook core, Metacontroller's emulator,
Karpenter/Deployment/Job stand-ins) in which the claims become Ready, then prints every object
exactly as the hooks returned it, followed by the Workspace's final status.
"""
from __future__ import annotations

import argparse
import sys

import yaml

from contract.workspace import one_workspace
from hooks.core.errors import INVALID_SPEC
from hooks.core.settings import CLAIM_APIS, DEFAULT_CLAIM_API, DEFAULT_RUNTIME_IMAGE, Settings
from metacontroller.api import Obj
from metacontroller.apply import as_last_applied
KINDS = (("karpenter.sh/v1alpha5", "Machine"), ("karpenter.sh/v1", "NodeClaim"), ("v1", "ConfigMap"),
         ("v1", "Service"), ("apps/v1", "Deployment"), ("batch/v1", "Job"), ("v1", "ServiceAccount"),
         ("rbac.authorization.k8s.io/v1", "RoleBinding"))


def _as_applied(obj: Obj) -> Obj:
    """The object as the hook returned it (Metacontroller's last-applied copy), minus MC's selector label."""
    out = as_last_applied(obj)
    (out.get("metadata") or {}).get("labels", {}).pop("controller-uid", None)
    return out


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the embedded serve_config.yaml) as readable literal blocks."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def render(workspace: Obj, *, claim_api: str = DEFAULT_CLAIM_API, namespace: str = "default",
           runtime_image: str | None = None, max_rounds: int = 12) -> tuple[list[Obj], Obj]:
    """(claims and children as the hooks emitted them, the Workspace's final status)."""
    from hooks.tools.emulated import inprocess_transport, make_world

    settings = Settings(claim_api=CLAIM_APIS[claim_api], runtime_image=runtime_image or DEFAULT_RUNTIME_IMAGE)
    clock = lambda: "2026-01-01T00:00:00Z"  # noqa: E731 - a fixed clock keeps the output reproducible
    world = make_world(settings, transport=inprocess_transport(settings, clock), clock=clock)
    ws = dict(workspace)
    ws["metadata"] = {**(ws.get("metadata") or {})}
    ws["metadata"].setdefault("namespace", namespace)
    ws.pop("status", None)
    world.cluster.create(ws)
    ns, name = ws["metadata"]["namespace"], ws["metadata"]["name"]
    done = ("WorkspaceReady", "WorkspaceSucceeded")
    for _ in range(max_rounds):
        world.step()
        current = world.get("kaito.sh/v1alpha1", "Workspace", name, ns) or {}
        conds = {c["type"]: c for c in (current.get("status") or {}).get("conditions") or []}
        if any(conds.get(t, {}).get("status") == "True" for t in done) or \
                any(c.get("reason") == INVALID_SPEC for c in conds.values()):
            break
    objects = [_as_applied(o) for av, kind in KINDS for o in world.cluster.list(av, kind)]
    status = (world.get("kaito.sh/v1alpha1", "Workspace", name, ns) or {}).get("status") or {}
    return objects, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaito render", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--filename", required=True, help="Workspace YAML file ('-' for stdin)")
    parser.add_argument("--claim-api", choices=tuple(CLAIM_APIS), default=DEFAULT_CLAIM_API,
                        help=f"node-claim API the NodeProvisioner emits, as a deploy overlay sets it "
                             f"(default: {DEFAULT_CLAIM_API})")
    parser.add_argument("-n", "--namespace", default="default", help="namespace when the file names none")
    parser.add_argument("--runtime-image", default=None, help="image for serving/tuning pods")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.filename == "-" else open(args.filename, encoding="utf-8").read()
    except OSError as exc:
        print(f"kaito render: cannot read {args.filename}: {exc}", file=sys.stderr)
        return 2
    try:
        workspace = _one_workspace(text)
    except ValueError as exc:
        print(f"kaito render: {args.filename}: {exc}", file=sys.stderr)
        return 1
    try:
        objects, status = render(workspace, claim_api=args.claim_api, namespace=args.namespace,
                                 runtime_image=args.runtime_image)
    except Exception as exc:  # noqa: BLE001 - a CLI answers in one line, never with a traceback
        print(f"kaito render: {args.filename}: cannot render: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False))
    sys.stdout.write("---\n# Workspace status after the emulated lifecycle\n")
    sys.stdout.write(yaml.dump({"status": status}, Dumper=_Dumper, sort_keys=False))
    invalid = [c for c in status.get("conditions") or [] if c.get("reason") == INVALID_SPEC]
    if invalid:
        print(f"kaito render: invalid workspace: {invalid[0]['message']}", file=sys.stderr)
        return 1
    return 0


def _one_workspace(text: str) -> Obj:
    ws = one_workspace(text)
    if not isinstance(ws.get("resource"), dict):
        raise ValueError("resource must be a mapping (resource.labelSelector, resource.instanceType, ...)")
    return ws
