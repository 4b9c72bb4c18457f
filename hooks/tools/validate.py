"""`kaito validate -f FILE [--old OLDFILE]`: the admission verdict, on a laptop.

Prints every error (one per line, field path first) or `valid`; exits 0 when valid, 1 when not,
2 when the file cannot be read. A file may hold several YAML documents; each is checked.
Warnings (an instance type outside the SKU table that KAITO accepts unchecked, a defaulted
instanceType) are printed as `warning:` lines and do not change the exit code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from contract.workspace import yaml_documents
from hooks.core.validation import FieldError, validate_workspace, workspace_warnings


def _load(path: Path) -> list:
    try:
        return yaml_documents(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaito validate", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--filename", required=True, type=Path, help="Workspace YAML to check")
    parser.add_argument("--old", type=Path, help="the Workspace as it is now, to check the update rules")
    args = parser.parse_args(argv)
    try:
        docs = _load(args.filename)
        old_docs = _load(args.old) if args.old else []
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not docs:
        print(f"{args.filename}: no YAML document found", file=sys.stderr)
        return 1
    old_by_name = {(d.get("metadata") or {}).get("name"): d for d in old_docs if isinstance(d, dict)}
    invalid = False
    for doc in docs:
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None
        old = old_by_name.get(name) if args.old else None
        if args.old and old is None:
            errors = [FieldError("metadata.name", f"no Workspace named {name!r} in {args.old}")]
        else:
            errors = validate_workspace(doc, old).errors
        label = f"{args.filename}" + (f" ({name})" if len(docs) > 1 else "")
        for warning in workspace_warnings(doc):
            print(f"{label}: warning: {warning}")
        if errors:
            invalid = True
            for error in errors:
                print(f"{label}: {error}")
        else:
            print(f"{label}: valid")
    return 1 if invalid else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
