"""Dataset shapes, chat-template encoding with prompt tokens masked, and the seeded split."""
import pytest

from tuning.config import DatasetConfig
from tuning.errors import DatasetError
from tuning.examples import (IGNORE_INDEX, Shape, detect_layout, encode_conversation, encode_records,
                             split_records)


@pytest.mark.parametrize("columns,cfg,shape,used", [
    (["messages", "id"], DatasetConfig(), Shape.MESSAGES, ("messages",)),
    (["conv"], DatasetConfig(messages_column="conv"), Shape.MESSAGES, ("conv",)),
    (["prompt", "completion"], DatasetConfig(), Shape.PROMPT_COMPLETION, ("prompt", "completion")),
    (["q", "a"], DatasetConfig(context_column="q", response_column="a"), Shape.CONTEXT_RESPONSE, ("q", "a")),
    (["text"], DatasetConfig(), Shape.TEXT, ("text",)),
    (["body"], DatasetConfig(response_column="body"), Shape.TEXT, ("body",)),
])
def test_layout_detection(columns, cfg, shape, used):
    layout = detect_layout(columns, cfg)
    assert (layout.shape, layout.columns) == (shape, used)


def test_no_usable_columns_names_the_columns_found():
    with pytest.raises(DatasetError, match="no usable columns; found: instruction, output"):
        detect_layout(["instruction", "output"], DatasetConfig())


def test_configured_column_that_is_missing():
    with pytest.raises(DatasetError, match="context_column names column 'question'.*columns: q, a"):
        detect_layout(["q", "a"], DatasetConfig(context_column="question", response_column="a"))
    with pytest.raises(DatasetError, match="response_column names column 'text'"):
        detect_layout(["q", "a"], DatasetConfig(context_column="q"))


def _trained_text(tokenizer, ids, labels):
    return tokenizer.decode([i for i, label in zip(ids, labels) if label != IGNORE_INDEX])


def test_loss_covers_only_assistant_replies(tiny_tokenizer):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And Japan?"}, {"role": "assistant", "content": "Tokyo."}]
    ids, labels = encode_conversation(tiny_tokenizer, messages)
    full = tiny_tokenizer.decode(ids)
    assert "Capital of France?" in full and "Be brief." in full  # the chat template was applied
    trained = _trained_text(tiny_tokenizer, ids, labels)
    assert "Paris." in trained and "Tokyo." in trained
    assert "France" not in trained and "Japan" not in trained and "brief" not in trained
    assert labels[0] == IGNORE_INDEX


def test_prompt_completion_and_context_response_mask_the_prompt(tiny_tokenizer):
    for cfg, record in [(DatasetConfig(), {"prompt": "Name a color.", "completion": "Blue."}),
                        (DatasetConfig(context_column="q", response_column="a"), {"q": "Name a color.", "a": "Blue."})]:
        layout = detect_layout(list(record), cfg)
        [example] = encode_records([record], layout, tiny_tokenizer, max_seq_length=256)
        trained = _trained_text(tiny_tokenizer, example.input_ids, example.labels)
        assert "Blue." in trained and "color" not in trained


def test_text_rows_train_on_every_token(tiny_tokenizer):
    [example] = encode_records([{"text": "hello world"}], detect_layout(["text"], DatasetConfig()), tiny_tokenizer, 64)
    assert example.labels == example.input_ids and example.input_ids[-1] == tiny_tokenizer.eos_token_id


def test_truncation_and_dropping(tiny_tokenizer):
    layout = detect_layout(["prompt", "completion"], DatasetConfig())
    long_prompt = {"prompt": "word " * 200, "completion": "Answer."}
    ok = {"prompt": "Hi", "completion": "Hello there."}
    examples = encode_records([long_prompt, ok], layout, tiny_tokenizer, max_seq_length=32)
    assert len(examples) == 1 and len(examples[0].input_ids) <= 32  # the answer of the long one was cut away
    with pytest.raises(DatasetError, match="none of the 1 records has a trainable answer"):
        encode_records([long_prompt], layout, tiny_tokenizer, max_seq_length=32)


def test_split_is_seeded_and_follows_the_fraction():
    rows = list(range(100))
    train, evaluation = split_records(rows, DatasetConfig(train_test_split=0.8, shuffle_seed=7))
    assert (len(train), len(evaluation)) == (80, 20) and sorted(train + evaluation) == rows
    assert (train, evaluation) == split_records(rows, DatasetConfig(train_test_split=0.8, shuffle_seed=7))
    assert train != split_records(rows, DatasetConfig(train_test_split=0.8, shuffle_seed=8))[0]
    assert split_records(rows, DatasetConfig(train_test_split=1, shuffle_dataset=False)) == (rows, [])
