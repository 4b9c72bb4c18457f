"""The IO-free scheduler core, driven with a fake step function (no torch, no threads)."""
import pytest

from serving.errors import Overloaded
from serving.scheduler import SamplingParams, Scheduler, Sequence

EOS = 0


def decode(ids):  # token t -> the character chr(96 + t): 1 -> 'a', 2 -> 'b', ...
    return "".join(chr(96 + t) for t in ids)


def make(max_running=2, max_queue=2, context=50):
    return Scheduler(max_running=max_running, max_queue=max_queue, context_length=context,
                     eos_token_ids=[EOS], decode=decode)


def seq(prompt_len=3, **params):
    params.setdefault("max_tokens", 5)
    return Sequence(prompt_ids=[1] * prompt_len, params=SamplingParams(**params), request_id=str(id(params)))


def test_waiting_sequences_join_at_the_next_step_and_finished_ones_leave_at_once():
    s = make(max_running=2, max_queue=4)
    a, b, c = seq(max_tokens=1), seq(max_tokens=3), seq()
    s.add([a]); s.add([b]); s.add([c])
    step = s.schedule()
    assert step.joining == [a, b] and step.running == [] and list(s.waiting) == [c]
    done = s.on_tokens({a.id: 1, b.id: 1})
    assert done == [a] and a.finish_reason == "length" and s.running == [b]
    step = s.schedule()  # c takes a's slot on the very next step
    assert step.joining == [c] and step.running == [b]


def test_queue_bound_refuses_whole_request_with_retry_after():
    s = make(max_running=1, max_queue=1)
    s.add([seq()])
    s.schedule()
    s.add([seq()])
    with pytest.raises(Overloaded) as e:
        s.add([seq()])
    assert e.value.status == 429 and e.value.headers()["Retry-After"] == "1"
    with pytest.raises(Overloaded):  # n=2 while one slot is left: refused atomically
        make(max_running=1, max_queue=0).add([seq(), seq()])


def test_eos_stops_without_emitting_the_token_unless_ignored():
    s = make()
    a, b = seq(), seq(ignore_eos=True)
    s.add([a, b]); s.schedule()
    s.on_tokens({a.id: EOS, b.id: EOS})
    assert a.finish_reason == "stop" and a.output_ids == []
    assert b.finish_reason is None and b.output_ids == [EOS]


def test_stop_string_cuts_text_and_is_never_streamed():
    s = make()
    a = seq(max_tokens=20, stop=("cd",))
    s.add([a]); s.schedule()
    seen = ""
    for t in (1, 2, 3, 4, 5):  # a b c d e
        s.on_tokens({a.id: t})
        seen += a.take_new_text()
        if a.finished:
            break
    assert a.finish_reason == "stop" and a.text == "ab" and seen == "ab"


def test_context_length_bounds_generation():
    s = make(context=6)
    a = seq(prompt_len=4, max_tokens=100)
    s.add([a]); s.schedule()
    s.on_tokens({a.id: 1})
    assert not a.finished
    s.on_tokens({a.id: 1})
    assert a.finish_reason == "length" and len(a.output_ids) == 2


def test_cancel_removes_waiting_and_running_sequences():
    s = make(max_running=1, max_queue=2)
    a, b = seq(), seq()
    a.request_id, b.request_id = "ra", "rb"
    s.add([a, b]); s.schedule()
    s.cancel("ra"); s.cancel("rb")
    gone = s.drop_cancelled()
    assert set(gone) == {a, b} and s.idle and a.finish_reason == "cancelled"


def test_invalid_bounds_are_refused():
    with pytest.raises(ValueError, match="max_running"):
        make(max_running=0)


def test_a_long_prompt_is_prefilled_by_chunks_while_short_ones_join_whole():
    s = Scheduler(max_running=4, max_queue=4, context_length=50, eos_token_ids=[EOS], decode=decode,
                  prefill_chunk=4)
    running, long, short = seq(prompt_len=2, max_tokens=9), seq(prompt_len=10), seq(prompt_len=2)
    s.add([running]); s.schedule(); s.on_tokens({running.id: 1})
    s.add([long, short])
    step = s.schedule()
    assert step.running == [running] and step.partial is long and step.partial_tokens == 4
    assert step.joining == []  # the chunk budget is spent; short waits one step
    long.num_computed = 4  # what the runner does
    step = s.schedule()
    assert step.partial is long and step.partial_tokens == 4 and step.joining == [] and list(s.waiting) == [short]
    long.num_computed = 8
    step = s.schedule()  # 2 tokens left for long, 2 of budget for short
    assert step.partial_tokens == 2 and step.joining == [short]
    long.num_computed = 10
    s.on_tokens({running.id: 1, short.id: 1, long.id: 1})
    assert s.partial is None and s.running == [running, short, long] and long.output_ids == [1]


def test_kv_budget_holds_sequences_in_the_queue_and_refuses_past_it():
    # each sequence reserves prompt 3 + max_tokens 5 = 8 positions; the budget covers two of them
    s = Scheduler(max_running=8, max_queue=1, context_length=50, eos_token_ids=[EOS], decode=decode, kv_tokens=16)
    a, b, c = seq(), seq(), seq()
    s.add([a, b, c])  # two fit now, one queues
    with pytest.raises(Overloaded):
        s.add([seq()])
    step = s.schedule()
    assert step.joining == [a, b] and list(s.waiting) == [c] and s.kv_reserved() == 16
    for _ in range(5):
        s.on_tokens({a.id: 1, b.id: 1})
    assert a.finished and b.finished
    assert s.schedule().joining == [c]


def test_with_nobody_decoding_a_burst_joins_at_once_whatever_the_chunk():
    s = Scheduler(max_running=8, max_queue=8, context_length=50, eos_token_ids=[EOS], decode=decode,
                  prefill_chunk=4)
    burst = [seq(prompt_len=3) for _ in range(5)]
    s.add(burst)
    assert s.schedule().joining == burst  # 15 prompt tokens in one step: nobody waits for them
    s.add([seq(prompt_len=3), seq(prompt_len=3)])
    assert len(s.schedule().joining) == 1  # now 5 streams decode: 4 prompt tokens per step


def test_a_long_prompts_chunk_is_paced_by_the_rows_decoding_while_short_ones_still_join_whole():
    from serving.scheduler import PARTIAL_MIN

    s = Scheduler(max_running=64, max_queue=64, context_length=5000, eos_token_ids=[EOS], decode=decode,
                  prefill_chunk=256, partial_per_row=2)
    decoding = [seq(prompt_len=3, max_tokens=50) for _ in range(15)]
    s.add(decoding)
    s.schedule()
    s.on_tokens({d.id: 1 for d in decoding})
    long, short = seq(prompt_len=1500), seq(prompt_len=40)
    s.add([long, short])
    step = s.schedule()
    assert step.partial is long and step.partial_tokens == 30  # 2 per decoding row, not the 256 budget
    assert step.joining == [short]  # short prompts still join whole within the step's chunk budget
    long.num_computed = 30
    s.on_tokens({d.id: 1 for d in decoding + [short]})
    for d in decoding[:14]:
        d.cancelled = True
    s.drop_cancelled()
    step = s.schedule()  # 2 rows decode now: the floor keeps the long prompt moving
    assert step.partial_tokens == PARTIAL_MIN
