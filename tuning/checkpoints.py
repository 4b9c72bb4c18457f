"""Find the checkpoint to resume from: the newest one that was written completely.

The Trainer writes trainer_state.json last, so a pod killed mid-save leaves a checkpoint folder
without a readable state; resuming from it would fail, so such folders are skipped.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


def complete_state(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def latest_checkpoint(output_dir: Path) -> tuple[Path, dict] | None:
    """(folder, trainer state) of the newest complete checkpoint, or None."""
    if not output_dir.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in output_dir.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    for _, folder in found:
        state = complete_state(folder)
        if state is not None and any(folder.glob("adapter_model.*")):
            return folder, state
        log.warning("ignoring incomplete checkpoint %s (interrupted while saving)", folder.name)
    return None
