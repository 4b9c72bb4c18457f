"""Read dataset files into plain records: parquet (pyarrow), json, jsonl and csv (stdlib).

Which files: DatasetConfig.dataset_path (a file or folder under the data directory) or every file
with a supported format in the data directory, in name order. The format comes from
dataset_extension, else the file name, else the content (parquet magic, JSON's first character),
because downloaded names can end in anything.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from .config import DATA_EXTENSIONS
from .errors import DatasetError

log = logging.getLogger(__name__)


def sniff_format(path: Path, declared: str | None = None) -> str | None:
    if declared:
        return declared.lstrip(".")
    name = path.name.lower()
    for ext in ("parquet", "jsonl", "json", "csv"):
        if name.endswith("." + ext) or f".{ext}_" in name or f".{ext}?" in name:
            return ext
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[:4] == b"PAR1":
        return "parquet"
    stripped = head.lstrip()
    if stripped[:1] == b"[":
        return "json"
    if stripped[:1] == b"{":
        first_line = stripped.split(b"\n", 1)[0].strip()
        return "jsonl" if first_line.endswith(b"}") and b"\n" in stripped.strip() else "json"
    return None


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq
    return pq.read_table(path).to_pylist()


def _read_json(path: Path) -> list[dict]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict):  # {"data": [...]} / {"train": [...]}: one list-valued key holding the rows
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(lists) == 1:
            doc = lists[0]
        else:
            doc = [doc]
    return doc


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DatasetError(f"{path.name} line {number} is not valid JSON: {err.msg}") from err
    return rows


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


_READERS = {"parquet": _read_parquet, "json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv}


def read_file(path: Path, declared: str | None = None) -> list[dict]:
    fmt = sniff_format(path, declared)
    if fmt not in _READERS:
        raise DatasetError(f"cannot tell the format of {path.name}; accepted: {', '.join(DATA_EXTENSIONS)} "
                           "(set DatasetConfig.dataset_extension)")
    try:
        rows = _READERS[fmt](path)
    except DatasetError:
        raise
    except Exception as err:  # pyarrow/json/csv/unicode errors all mean the same to the user
        raise DatasetError(f"cannot read {path.name} as {fmt}: {err}") from err
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DatasetError(f"{path.name} does not hold a list of records (objects with columns)")
    log.info("read %d records from %s (%s)", len(rows), path.name, fmt)
    return rows


def data_files(data_dir: Path, dataset_path: str | None = None, declared: str | None = None) -> list[Path]:
    """The files to read, in a stable order."""
    root = Path(data_dir)
    target = root
    if dataset_path:
        target = (root / dataset_path) if not Path(dataset_path).is_absolute() else Path(dataset_path)
        if not target.exists():
            raise DatasetError(f"DatasetConfig.dataset_path {dataset_path!r} does not exist under {root}")
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise DatasetError(f"data directory {str(target)!r} does not exist")
    candidates = sorted(p for p in target.rglob("*") if p.is_file() and not p.name.startswith(".")
                        and not p.name.endswith(".part"))
    files = [p for p in candidates if sniff_format(p, declared) in _READERS]
    if not files:
        found = ", ".join(p.name for p in candidates[:10]) or "no files"
        raise DatasetError(f"no dataset file ({', '.join(DATA_EXTENSIONS)}) in {target}; found: {found}")
    return files


def read_records(data_dir: Path, dataset_path: str | None = None, declared: str | None = None) -> list[dict]:
    rows: list[dict] = []
    for path in data_files(data_dir, dataset_path, declared):
        rows.extend(read_file(path, declared))
    if not rows:
        raise DatasetError(f"the dataset in {data_dir} has no records")
    return rows
