"""Each pod command the hooks write (contract.argv, contract.tuningjob) is one its entrypoint's parser takes."""
from __future__ import annotations

from contract import argv
from contract.serveconfig import SERVE_CONFIG_PATH
from contract.tuningjob import CONFIG_PATH, DATA_DIR, RESULTS_DIR, TuningJobArgs


def test_head_command_is_what_the_cluster_entrypoint_parses():
    command = argv.head_command(SERVE_CONFIG_PATH)
    assert command[:3] == ["python", "-m", "serving.cluster"]
    parsed = argv.cluster_parser().parse_args(command[3:])
    assert (parsed.role, parsed.config) == ("head", SERVE_CONFIG_PATH)


def test_worker_command_is_what_the_cluster_entrypoint_parses():
    parsed = argv.cluster_parser().parse_args(argv.worker_command("ws:6379")[3:])
    assert (parsed.role, parsed.address) == ("worker", "ws:6379")


def test_prefetch_and_pull_commands_are_what_kaito_pull_parses():
    from artifacts.cli_pull import build_parser

    prefetch = argv.prefetch_command(SERVE_CONFIG_PATH)
    assert prefetch[:2] == ["kaito", "pull"]
    parsed = build_parser().parse_args(prefetch[2:])
    assert (parsed.serve_config, parsed.source, parsed.dir) == (SERVE_CONFIG_PATH, None, None)
    parsed = build_parser().parse_args(argv.pull_command("myacr.azurecr.io/data:1", DATA_DIR)[2:])
    assert (parsed.source, parsed.dir, parsed.serve_config) == ("myacr.azurecr.io/data:1", DATA_DIR, None)


def test_tuning_job_args_are_what_the_tuning_entrypoint_parses():
    from tuning.cli import build_parser

    job = TuningJobArgs(method="qlora", preset="phi-3-mini-4k-instruct", base_model="hf://org/m@abc",
                        input_urls=("https://example.com/a.parquet", "https://example.com/b.parquet"),
                        push="myacr.azurecr.io/adapters/out:1")
    command = job.argv()
    assert command[:3] == ["python", "-m", "tuning"]
    parsed = build_parser("python -m tuning").parse_args(command[3:])
    assert (parsed.method, parsed.preset, parsed.base_model, parsed.push) == (
        "qlora", "phi-3-mini-4k-instruct", "hf://org/m@abc", "myacr.azurecr.io/adapters/out:1")
    assert parsed.input_url == list(job.input_urls)
    assert (parsed.config, parsed.output, parsed.data) == (CONFIG_PATH, RESULTS_DIR, DATA_DIR)
    image = build_parser("python -m tuning").parse_args(TuningJobArgs(input_image="r.io/d:1", data=None).argv()[3:])
    assert (image.input_image, image.input_url, image.push) == ("r.io/d:1", [], None)
