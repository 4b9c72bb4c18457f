"""The kaito pull/push/mirror subcommands: exit codes and one-line errors (no network)."""
import pytest

from artifacts import cli_mirror, cli_pull, cli_push


def run(main, argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err
    return lines[0]


def test_pull_rejects_unknown_scheme(tmp_path, capsys):
    code, _, err = run(cli_pull.main, ["s3://bucket/model", str(tmp_path / "out")], capsys)
    assert code == 1
    assert "unsupported scheme 's3'" in one_line_error(err, "kaito pull")


def test_pull_missing_local_path(tmp_path, capsys):
    code, _, err = run(cli_pull.main, [str(tmp_path / "nope"), str(tmp_path / "out")], capsys)
    assert code == 1 and "not found: local path" in one_line_error(err, "kaito pull")


def test_pull_local_directory_is_placed_with_marker(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    code, out, _ = run(cli_pull.main, [str(src), str(tmp_path / "out"), "-q"], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "out")
    assert (tmp_path / "out" / "config.json").read_text() == "{}" and (tmp_path / "out" / ".kaito-complete").is_file()


def test_pull_into_a_foreign_non_empty_directory_fails_clearly(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("1")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine").write_text("keep")
    code, _, err = run(cli_pull.main, [str(src), str(dest), "-q"], capsys)
    assert code == 1 and "is not empty" in one_line_error(err, "kaito pull")


def test_push_errors(tmp_path, capsys):
    code, _, err = run(cli_push.main, [str(tmp_path / "missing"), "oci://r.example.io/a:1"], capsys)
    assert code == 1 and "not found: directory" in one_line_error(err, "kaito push")
    (tmp_path / "d").mkdir()
    code, _, err = run(cli_push.main, [str(tmp_path / "d"), "oci://r.example.io/a:1"], capsys)
    assert code == 1 and "holds no files" in one_line_error(err, "kaito push")
    (tmp_path / "d" / "f").write_text("x")
    code, _, err = run(cli_push.main, [str(tmp_path / "d"), "oci://r.example.io/a:1", "--artifact-type", "bogus"], capsys)
    assert code == 1 and "accepted: adapter, model" in one_line_error(err, "kaito push")
    code, _, err = run(cli_push.main, [str(tmp_path / "d"), "oci://R.example.io/A:1"], capsys)
    assert code == 1 and "invalid repository" in one_line_error(err, "kaito push")


def test_push_to_unreachable_registry_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAITO_INSECURE_REGISTRIES", "127.0.0.1:9")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    code, _, err = run(cli_push.main, [str(tmp_path / "d"), "127.0.0.1:9/a:1", "-q"], capsys)
    assert code == 1 and "cannot reach registry 127.0.0.1:9 (http)" in one_line_error(err, "kaito push")


def test_mirror_needs_an_hf_source(capsys):
    code, _, err = run(cli_mirror.main, ["oci://r.example.io/a:1", "oci://r.example.io/b:1"], capsys)
    assert code == 1 and "hf://ORG/REPO" in one_line_error(err, "kaito mirror")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_pull.main([])
    assert exc.value.code == 2
