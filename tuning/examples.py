"""Turn dataset records into token ids and labels, with the loss on completion tokens only.

Shapes, tried in this order (TRL's native shapes plus KAITO's DatasetConfig columns):
  conversational: a `messages` column (or DatasetConfig.messages_column) of {role, content} lists;
  context/response: DatasetConfig.context_column + response_column (a user turn and its answer);
  instruction: `prompt` + `completion` columns (strings, or message lists);
  plain text: DatasetConfig.response_column (default `text`): a language-modelling example.
Conversations go through the tokenizer's chat template; labels are -100 on every token that is not
part of an assistant reply, so the model is not trained to write the prompts.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable

from .config import DatasetConfig
from .errors import DatasetError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100

# Used only when neither the tokenizer nor ModelConfig.chat_template provides one.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


class Shape(str, Enum):
    MESSAGES = "messages"
    CONTEXT_RESPONSE = "context/response"
    PROMPT_COMPLETION = "prompt/completion"
    TEXT = "text"


@dataclass(frozen=True)
class Layout:
    shape: Shape
    columns: tuple[str, ...]


def columns_of(records: Iterable[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    return list(seen)


def detect_layout(columns: Iterable[str], cfg: DatasetConfig) -> Layout:
    cols = list(columns)
    present = set(cols)

    def need(*names: str, setting: str) -> tuple[str, ...]:
        missing = [n for n in names if n not in present]
        if missing:
            raise DatasetError(f"{setting} names column {missing[0]!r}, but the dataset has columns: "
                               f"{', '.join(cols) or 'none'}")
        return names

    if cfg.messages_column:
        return Layout(Shape.MESSAGES, need(cfg.messages_column, setting="DatasetConfig.messages_column"))
    if cfg.context_column:
        need(cfg.context_column, setting="DatasetConfig.context_column")
        return Layout(Shape.CONTEXT_RESPONSE,
                      need(cfg.context_column, cfg.response_column, setting="DatasetConfig.response_column"))
    if "messages" in present:
        return Layout(Shape.MESSAGES, ("messages",))
    if {"prompt", "completion"} <= present:
        return Layout(Shape.PROMPT_COMPLETION, ("prompt", "completion"))
    if cfg.response_column in present:
        return Layout(Shape.TEXT, (cfg.response_column,))
    raise DatasetError(
        f"the dataset has no usable columns; found: {', '.join(cols) or 'none'}; expected 'messages', "
        f"'prompt' + 'completion', {cfg.response_column!r}, or DatasetConfig.context_column/response_column")


def _as_messages(value: Any, role: str, column: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise DatasetError(f"column {column!r} holds {type(value).__name__}; expected a string or a list of "
                       "{role, content} messages")


def record_to_messages(record: dict, layout: Layout) -> list[dict] | None:
    """The conversation for a record, or None for plain-text records."""
    if layout.shape is Shape.TEXT:
        return None
    if layout.shape is Shape.MESSAGES:
        return _as_messages(record.get(layout.columns[0]) or [], "user", layout.columns[0])
    prompt_col, answer_col = layout.columns
    return (_as_messages(record.get(prompt_col) or "", "user", prompt_col)
            + _as_messages(record.get(answer_col) or "", "assistant", answer_col))


def _render(tokenizer, messages: list[dict], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids for the rendered conversation and labels that keep only the assistant replies."""
    full = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:index], generation_prompt=True)) if index else 0
        end = len(_render(tokenizer, messages[: index + 1], generation_prompt=False))
        spans.append((start, end))
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for position, (char_start, char_end) in enumerate(encoded["offset_mapping"]):
        if any(start <= char_start < end for start, end in spans):
            labels[position] = ids[position]
    return ids, labels


def encode_text(tokenizer, text: str) -> tuple[list[int], list[int]]:
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids.append(tokenizer.eos_token_id)
    return ids, list(ids)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


def encode_records(records: list[dict], layout: Layout, tokenizer, max_seq_length: int) -> list[Example]:
    """Encode and truncate; drop examples left with no trainable token (and say how many)."""
    examples, dropped = [], 0
    for record in records:
        messages = record_to_messages(record, layout)
        if messages is None:
            text = record.get(layout.columns[0])
            if not isinstance(text, str) or not text:
                dropped += 1
                continue
            ids, labels = encode_text(tokenizer, text)
        else:
            if not any(m["role"] == "assistant" and m["content"] for m in messages):
                dropped += 1
                continue
            ids, labels = encode_conversation(tokenizer, messages)
        ids, labels = ids[:max_seq_length], labels[:max_seq_length]
        if all(label == IGNORE_INDEX for label in labels) or len(ids) < 2:
            dropped += 1
            continue
        examples.append(Example(ids, labels))
    if dropped:
        log.warning("skipped %d of %d records with nothing to learn (empty, or the answer was truncated away "
                    "at max_seq_length=%d)", dropped, len(records), max_seq_length)
    if not examples:
        raise DatasetError(f"none of the {len(records)} records has a trainable answer "
                           f"(shape {layout.shape.value}, columns {', '.join(layout.columns)})")
    return examples


def split_records(records: list, cfg: DatasetConfig) -> tuple[list, list]:
    """Shuffle (seeded) and split into train/eval as DatasetConfig says; eval may be empty."""
    rows = list(records)
    if cfg.shuffle_dataset:
        random.Random(cfg.shuffle_seed).shuffle(rows)
    if cfg.train_test_split >= 1 or len(rows) < 2:
        return rows, []
    n_train = min(len(rows) - 1, max(1, round(len(rows) * cfg.train_test_split)))
    return rows[:n_train], rows[n_train:]
