"""Reading parquet/json/jsonl/csv, sniffing downloaded names, and the errors for unusable input."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuning.datafiles import data_files, read_records
from tuning.errors import DatasetError

ROWS = [{"prompt": "Say hi", "completion": "Hi!"}, {"prompt": "Say bye", "completion": "Bye!"}]


def write_all_formats(folder):
    pq.write_table(pa.Table.from_pylist(ROWS), folder / "a.parquet")
    (folder / "b.json").write_text(json.dumps({"data": ROWS}))
    (folder / "c.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    (folder / "d.csv").write_text("prompt,completion\nSay hi,Hi!\nSay bye,Bye!\n")


def test_every_format_reads_to_the_same_records(tmp_path):
    write_all_formats(tmp_path)
    assert read_records(tmp_path) == ROWS * 4


def test_download_names_without_extension_are_sniffed(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "000-train-00000-of-00001")
    (tmp_path / "001-download").write_text("\n".join(json.dumps(r) for r in ROWS))
    assert read_records(tmp_path) == ROWS * 2


def test_dataset_path_selects_one_file(tmp_path):
    write_all_formats(tmp_path)
    assert [p.name for p in data_files(tmp_path, "d.csv")] == ["d.csv"]
    with pytest.raises(DatasetError, match="dataset_path 'missing.csv' does not exist"):
        data_files(tmp_path, "missing.csv")


def test_folder_without_data_names_what_it_found(tmp_path):
    (tmp_path / "notes.txt").write_text("just text, no dataset")
    with pytest.raises(DatasetError, match="no dataset file .* found: notes.txt"):
        read_records(tmp_path)


def test_corrupt_files_are_reported_by_name(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(DatasetError, match="x.jsonl line 2 is not valid JSON"):
        read_records(tmp_path)
    (tmp_path / "x.jsonl").unlink()
    (tmp_path / "y.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DatasetError, match="cannot read y.parquet as parquet"):
        read_records(tmp_path)


def test_json_that_is_not_records(tmp_path):
    (tmp_path / "z.json").write_text("[1, 2, 3]")
    with pytest.raises(DatasetError, match="does not hold a list of records"):
        read_records(tmp_path)
