"""The training dataset and dynamic padding: batches are padded to their own longest example.

Together with a length-grouped sampler (similar lengths share a batch) this removes most of the
padding a random batch carries, so compute goes to real tokens (bench/tuning measures it).
"""
from __future__ import annotations

from typing import Sequence

from .examples import IGNORE_INDEX, Example


class TokenizedDataset:
    """A list of encoded examples with their lengths (what the length-grouped sampler sorts by)."""

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)
        self.lengths = [len(e.input_ids) for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


class PadToLongest:
    """Collate by padding to the batch's longest example (rounded up to pad_to_multiple_of)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of or 1

    def __call__(self, features: list[dict]) -> dict:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        width = -(-longest // self.multiple) * self.multiple
        batch = len(features)
        input_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch, width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(feature["labels"], dtype=torch.long)
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


class LengthBucketSampler:
    """Batches of similar length, in random order: the padding-free-ish sampler `group_by_length` uses.

    Each epoch: shuffle (seeded by seed and epoch), cut into buckets of `bucket_batches` batches,
    sort each bucket by length, slice it into batches, shuffle the batches (the short one stays last). Neighbours in a sorted
    bucket differ by a few tokens, so padding almost vanishes, while the shuffles keep batches
    from different parts of the data. transformers' LengthGroupedSampler sorts groups of at most
    len(data) // (4 * batch) batches, which leaves much more padding on small and medium data sets.
    The order depends only on (seed, epoch), so a resumed run skips exactly the batches it had done.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, bucket_batches: int = 32):
        self.lengths = list(lengths)
        self.batch_size = max(1, batch_size)
        self.seed = seed
        self.bucket = self.batch_size * max(1, bucket_batches)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import random

        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.bucket):
            bucket = sorted(order[start:start + self.bucket], key=self.lengths.__getitem__, reverse=True)
            batches += [bucket[i:i + self.batch_size] for i in range(0, len(bucket), self.batch_size)]
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        rng.shuffle(batches)
        batches += tail  # the one short batch goes last, or every later batch would straddle two buckets
        return iter([index for batch in batches for index in batch])
