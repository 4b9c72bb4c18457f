"""The `kaito` command: a thin dispatcher over each package's own subcommand module.

Only the chosen subcommand's module is imported, so `kaito validate` never pays for torch or Ray.
Each module named here exposes `main(argv: list[str]) -> int` with its own argparse parser.
"""
from __future__ import annotations

import importlib
import sys

DISTRIBUTION = "kaito-ray"

# name -> (module, one-line help). Kept as data so packages stay decoupled from each other.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("hooks.tools.validate", "check a Workspace YAML against the CRD rules and the preset catalog"),
    "render": ("hooks.tools.render", "print the children and node claims the hooks produce for a Workspace"),
    "gen-crds": ("hooks.tools.crdgen", "regenerate deploy/crds from the API models"),
    "presets": ("presets.cli", "list the preset catalog and the SKU table"),
    "up": ("serving.cli", "serve a model locally on an embedded Ray instance (default: the tiny preset)"),
    "pull": ("artifacts.cli_pull", "fetch oci://, hf:// or a local path into a directory"),
    "push": ("artifacts.cli_push", "push a directory as an OCI artifact"),
    "mirror": ("artifacts.cli_mirror", "copy a Hugging Face repo into an OCI registry"),
    "tune": ("tuning.cli", "run LoRA/QLoRA fine-tuning against local directories"),
}


def version() -> str:
    """The installed distribution's version (setup.cfg is its one source)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: kaito [-V | --version] COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'kaito COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"kaito {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"kaito: unknown command {name!r}; accepted: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
