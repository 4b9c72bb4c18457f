"""`kaito presets [--markdown] [--skus]`: the catalog as a table (the README's table comes from here)."""
from __future__ import annotations

import argparse

import presets

_COLUMNS = ("preset", "source", "params", "weights", "context", "GPUs", "GPU mem", "disk", "tunable", "gated")


def _row(p: presets.Preset) -> tuple[str, ...]:
    if p.access_mode == "private":
        source = "presetOptions.image"
    elif p.hf_repo:
        source = f"{p.hf_repo}@{p.revision[:7]}" if p.revision else p.hf_repo
    else:
        source = "built locally"
    params = f"{p.parameters / 1e9:.1f}B" if p.parameters else "~0.2M"
    weights = f"{p.weight_gib:.1f}Gi" if p.weight_bytes else "<1Mi"
    return (p.name + (" (deprecated)" if p.deprecated else ""), source, params, weights, str(p.context_length),
            str(p.gpu_count), f"{p.total_gpu_memory_gib:g}Gi", f"{p.disk_gib:g}Gi",
            "yes" if p.tunable else "no", "yes" if p.gated else "no")


def preset_table(markdown: bool) -> str:
    rows = [_COLUMNS] + [_row(p) for p in presets.list_presets()]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(_COLUMNS))
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def sku_table() -> str:
    rows = [("instance type", "cloud", "GPUs", "GPU memory", "GPU")]
    rows += [(s.name, s.cloud, str(s.gpus), f"{s.memory_gib:g}Gi", s.model) for s in presets.list_skus()]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaito presets", description="List the preset catalog.")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--skus", action="store_true", help="list the GPU instance types instead")
    args = parser.parse_args(argv)
    print(sku_table() if args.skus else preset_table(args.markdown))
    return 0
