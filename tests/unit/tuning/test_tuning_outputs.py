"""Collation, checkpoint discovery and the adapter's neutral base reference."""
import json

from tuning.batching import PadToLongest
from tuning.checkpoints import latest_checkpoint
from tuning.examples import IGNORE_INDEX
from tuning.outputs import is_completed, mark_completed, neutral_base_reference, rewrite_base_reference


def test_pad_to_longest_in_batch_rounded_to_multiple():
    batch = PadToLongest(pad_token_id=1, pad_to_multiple_of=8)([
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
        {"input_ids": list(range(10, 19)), "labels": list(range(10, 19))}])
    assert tuple(batch["input_ids"].shape) == (2, 16)
    assert batch["input_ids"][0].tolist()[:4] == [5, 6, 7, 1]
    assert batch["labels"][0].tolist()[2:4] == [7, IGNORE_INDEX]
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 9]
    assert tuple(PadToLongest(1)([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}])["input_ids"].shape) == (1, 3)


def _checkpoint(root, step, complete=True):
    folder = root / f"checkpoint-{step}"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_newest_complete_checkpoint_wins_and_partial_ones_are_skipped(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 5)
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 100, complete=False)  # killed while saving
    (tmp_path / "checkpoint-20").mkdir()  # killed right after mkdir
    folder, state = latest_checkpoint(tmp_path)
    assert folder.name == "checkpoint-10" and state["global_step"] == 10


def test_neutral_base_reference():
    assert neutral_base_reference("/workspace/tfs/weights", "phi-3-mini-4k-instruct",
                                  "microsoft/Phi-3-mini-4k-instruct") == "microsoft/Phi-3-mini-4k-instruct"
    assert neutral_base_reference("/tmp/models/tiny-abc/", "tiny", None) == "tiny"
    assert neutral_base_reference("hf://org/model@0123abc", None, None) == "org/model"
    assert neutral_base_reference("/tmp/models/tiny-abc", None, None) == "tiny-abc"


def test_rewrite_and_completion_marker(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/tmp/x", "r": 8}))
    rewrite_base_reference(tmp_path, "org/model")
    assert json.loads((tmp_path / "adapter_config.json").read_text()) == {"base_model_name_or_path": "org/model", "r": 8}
    assert not is_completed(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"w")
    mark_completed(tmp_path)
    assert is_completed(tmp_path)
    assert (tmp_path / "fine_tuning_completed.txt").read_text().startswith("Fine-Tuning completed at ")


def _padding_efficiency(order, lengths, batch):
    useful = computed = 0
    for start in range(0, len(order), batch):
        chunk = [lengths[i] for i in order[start:start + batch]]
        useful += sum(chunk)
        computed += max(chunk) * len(chunk)
    return useful / computed


def test_length_bucket_sampler_is_a_seeded_permutation_with_little_padding():
    import random

    from tuning.batching import LengthBucketSampler

    rng = random.Random(0)
    lengths = [rng.randint(16, 512) for _ in range(500)]
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(500))  # every example exactly once per epoch
    assert list(sampler) == first  # same (seed, epoch): same order, so a resumed run skips the right batches
    sampler.set_epoch(1)
    assert list(sampler) != first  # a new epoch reshuffles
    shuffled = list(range(500))
    rng.shuffle(shuffled)
    assert _padding_efficiency(first, lengths, 8) > 0.9 > _padding_efficiency(shuffled, lengths, 8)
