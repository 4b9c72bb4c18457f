"""A replica's adapter set follows its user_config, and tags follow their newest digest (no Ray, no torch).

The registry is a dict of tag -> digest (what a registry answers for a manifest request); `apply` records
what the engine was asked to serve.
"""
import asyncio

import pytest

from serving.adaptersync import AdapterSync, pinned, tag_of
from serving.config import ConfigError

TAG = "oci://127.0.0.1:5000/adapters/capitals:latest"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
STATIC = {"preset": "tiny", "adapter_resolve_interval_s": 30}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Registry:
    def __init__(self, tags):
        self.tags = dict(tags)
        self.down = False
        self.asked: list[str] = []

    def __call__(self, tag):
        self.asked.append(tag)
        if self.down:
            raise ConnectionError("cannot reach registry 127.0.0.1:5000\nmore")
        return self.tags[tag]


def make(registry, clock=None, static=STATIC, ready=True, marks=None):
    applied, failures = [], []

    async def apply(specs):
        applied.append([(s.name, s.source, s.strength) for s in specs])

    sync = AdapterSync(static, apply, ready=lambda: ready, resolve=registry,
                       on_resolve_failure=lambda n, r: failures.append((n, r)),
                       on_problem=None if marks is None else lambda *a: marks.append(a), clock=clock or Clock())
    return sync, applied, failures


def adapters(*items):
    return {"adapters": [{"name": n, "source": s, "strength": w} for n, s, w in items]}


def test_only_oci_tags_are_re_resolved():
    assert tag_of(TAG) == TAG
    assert tag_of(pinned(TAG, D1)) is None
    assert tag_of("/models/adapter") is None and tag_of("hf://org/repo@main") is None
    assert tag_of("oci://UPPER/bad") is None  # not a reference: its fetch reports it, by name


def test_the_first_config_is_pinned_before_the_model_loads():
    reg = Registry({TAG: D1})
    sync, applied, _ = make(reg)
    specs = asyncio.run(sync.initial(adapters(("cap", TAG, 1.0), ("local", "/ad/local", 0.5))))
    assert [(s.name, s.source) for s in specs] == [("cap", f"{TAG}@{D1}"), ("local", "/ad/local")]
    assert applied == []  # the model load takes these; nothing is applied twice
    assert not asyncio.run(sync.round())


def test_a_new_digest_under_the_tag_is_swapped_when_the_interval_is_due():
    reg, clock = Registry({TAG: D1}), Clock()
    sync, applied, _ = make(reg, clock)

    async def scenario():
        await sync.initial(adapters(("cap", TAG, 1.0)))
        reg.tags[TAG] = D2  # a second tuning run pushed under the same tag
        clock.now += 10
        assert not await sync.round()  # not due yet: nothing asked, nothing changed
        assert reg.asked == [TAG]
        clock.now += 25
        assert await sync.round()

    asyncio.run(scenario())
    assert applied == [[("cap", f"{TAG}@{D2}", 1.0)]]


def test_a_refresh_bump_resolves_at_once_and_an_unchanged_digest_applies_nothing():
    reg = Registry({TAG: D1})
    sync, applied, _ = make(reg)

    async def scenario():
        await sync.initial(adapters(("cap", TAG, 1.0)))
        assert sync.submit({**adapters(("cap", TAG, 1.0)), "adapter_refresh": "1"})
        assert not await sync.round()  # asked again, same digest: no swap
        reg.tags[TAG] = D2
        assert sync.submit({**adapters(("cap", TAG, 1.0)), "adapter_refresh": "2"})
        assert await sync.round()

    asyncio.run(scenario())
    assert reg.asked == [TAG, TAG, TAG]
    assert applied == [[("cap", f"{TAG}@{D2}", 1.0)]]


def test_a_new_interval_alone_changes_the_period_from_the_last_resolution_without_resolving_now():
    reg, clock = Registry({TAG: D1}), Clock()
    sync, applied, _ = make(reg, clock)
    cap = adapters(("cap", TAG, 1.0))

    async def scenario():
        await sync.initial(cap)  # resolved at t=100; the static period is 30 s
        reg.tags[TAG] = D2
        clock.now += 4
        assert sync.submit({**cap, "adapter_resolve_interval_s": 5})
        assert not await sync.round() and reg.asked == [TAG]  # a new period is not a refresh
        clock.now += 2  # t=106: past the new period (100 + 5), long before the old one (130)
        assert await sync.round() and reg.asked == [TAG, TAG]
        clock.now += 4
        assert not await sync.round() and len(reg.asked) == 2
        clock.now += 1  # t=111: 5 s after the last resolution
        assert not await sync.round() and len(reg.asked) == 3
        assert sync.submit({**cap, "adapter_resolve_interval_s": 0})  # 0: never again
        clock.now += 10_000
        assert not await sync.round() and len(reg.asked) == 3

    asyncio.run(scenario())
    assert applied == [[("cap", f"{TAG}@{D2}", 1.0)]]


def test_the_running_loop_takes_a_new_interval_without_a_restart():
    """Through the loop a replica runs (real clock): the default 60 s period, shortened live to 0.6 s,
    resolves nothing at once and then picks up the new digest 0.6 s after the first resolution."""
    reg = Registry({TAG: D1})
    seen = []

    async def apply(specs):
        seen.append(specs[0].source)

    async def scenario():
        sync = AdapterSync({"preset": "tiny"}, apply, ready=lambda: True, resolve=reg)
        cap = adapters(("cap", TAG, 1.0))
        await sync.initial(cap)
        sync.start()
        reg.tags[TAG] = D2
        assert sync.submit({**cap, "adapter_resolve_interval_s": 0.6})
        await asyncio.sleep(0.2)
        early = list(reg.asked)
        for _ in range(60):
            if seen:
                break
            await asyncio.sleep(0.05)
        await sync.close()
        return early

    assert asyncio.run(scenario()) == [TAG]  # the new period is not a refresh
    assert seen == [f"{TAG}@{D2}"] and len(reg.asked) == 2


def test_a_failed_resolution_keeps_the_served_digest_and_is_reported():
    reg, clock, marks = Registry({TAG: D1}), Clock(), []
    sync, applied, failures = make(reg, clock, marks=marks)
    problem = f"cannot re-resolve {TAG}: cannot reach registry 127.0.0.1:5000; serving {D1}"

    async def scenario():
        await sync.initial(adapters(("cap", TAG, 1.0)))
        reg.down, reg.tags[TAG] = True, D2
        assert sync.submit({**adapters(("cap", TAG, 0.5)), "adapter_refresh": "x"})
        assert await sync.round()  # the strength change applies, on the digest already served
        assert sync.problems == {"cap": problem} and marks == [("cap", problem, None)]
        clock.now += 31
        assert not await sync.round()  # still down: counted again, reported once
        reg.down = False
        clock.now += 31
        assert await sync.round()
        assert sync.problems == {}

    asyncio.run(scenario())
    assert failures == [("cap", "cannot reach registry 127.0.0.1:5000")] * 2
    assert marks == [("cap", problem, None), ("cap", None, problem)]
    assert applied == [[("cap", f"{TAG}@{D1}", 0.5)], [("cap", f"{TAG}@{D2}", 0.5)]]


def test_a_tag_never_resolved_is_passed_unpinned_so_its_fetch_reports_it():
    reg = Registry({})
    reg.down = True
    sync, _, failures = make(reg)
    specs = asyncio.run(sync.initial(adapters(("cap", TAG, 1.0))))
    assert [s.source for s in specs] == [TAG] and [n for n, _ in failures] == ["cap"]


def test_removed_and_added_adapters_and_an_invalid_config():
    reg = Registry({TAG: D1})
    sync, applied, _ = make(reg)

    async def scenario():
        await sync.initial(adapters(("cap", TAG, 1.0), ("b", "/ad/b", 1.0)))
        assert sync.submit(adapters(("c", "/ad/c", 1.0)))
        assert await sync.round()
        assert not sync.submit({"adapters": [{"name": "bad name", "source": "/x"}]})
        assert not sync.submit({"adapters": [{"name": "d", "source": "/x"}], "num_replicas": 2, "bogus": 1})
        assert not await sync.round()  # the last valid config is still the one served

    asyncio.run(scenario())
    assert applied == [[("c", "/ad/c", 1.0)]]
    with pytest.raises(ConfigError):
        asyncio.run(make(reg)[0].initial({"adapters": [{"name": "x"}]}))


def test_the_loop_waits_for_the_model_then_applies_the_latest_config_only():
    reg = Registry({TAG: D1})
    state = {"ready": False}
    applied = []

    async def apply(specs):
        applied.append([s.name for s in specs])

    async def scenario():
        sync = AdapterSync({"preset": "tiny"}, apply, ready=lambda: state["ready"], resolve=reg)
        await sync.initial(adapters(("a", "/ad/a", 1.0)))
        sync.start()
        sync.submit(adapters(("b", "/ad/b", 1.0)))
        sync.submit(adapters(("c", "/ad/c", 1.0)))
        await asyncio.sleep(0.3)
        assert applied == []  # still loading
        state["ready"] = True
        for _ in range(50):
            if applied:
                break
            await asyncio.sleep(0.05)
        await sync.close()

    asyncio.run(scenario())
    assert applied == [["c"]]
