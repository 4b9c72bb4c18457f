"""Cold-load fairness (serving/adapters.py): with every resident adapter always busy, a request for a
non-resident adapter still gets served after about adapter_cold_wait_s, because the least recently used
resident adapter drains for it; and a drain ends when the waiting request goes away.

The real Service and engine (tiny Llama, no Ray), two resident slots, three adapters. "Busy" is held
with the lease every running request takes (`AdapterRegistry.acquire`, as Service.generate does): a
few overlapping holders per adapter, so there is never a moment without a running request on it.
"""
import asyncio
import time

import pytest

from serving.service import Service
from tests.unit.serving.test_live_adapters import complete, spec

NAME = "base"
COLD_WAIT_S = 0.3
#: A request's lease in the busy load, and how many overlap per busy adapter.
HOLD_S, HOLDERS = 0.06, 3
#: Generous: the bound is cold_wait_s + the drained adapter's longest request (HOLD_S) + a tiny load;
#: the machine is shared.
SERVED_WITHIN_S = 5.0
#: The control without a bound: still waiting after this long (ten times cold_wait_s).
STARVED_FOR_S = 3.0


@pytest.fixture(scope="module")
def svc(tiny_models, llama_adapters):
    s = Service({"model": str(tiny_models["llama"]), "served_model_name": NAME, "max_batch_size": 8, "max_resident_adapters": 2,
                 "adapter_cold_wait_s": COLD_WAIT_S, "num_threads": 1}, background=False)
    assert s.adapters.cold_wait_s == COLD_WAIT_S  # the Serve argument reaches the registry
    s.adapters.submit(s.adapters.apply, [spec("hot0", llama_adapters["alpha"]), spec("hot1", llama_adapters["beta"]),
                                         spec("cold", llama_adapters["beta"])]).result()
    yield s
    s.shutdown()


class Busy:
    """HOLDERS staggered request leases per adapter, back to back, until stopped; counts leases taken."""

    def __init__(self, svc, names):
        self.svc, self.names = svc, names
        self.taken = {n: [] for n in names}
        self._stop = asyncio.Event()
        self._tasks = []

    async def _holder(self, name, offset):
        await asyncio.sleep(offset)
        while not self._stop.is_set():
            release = await self.svc.adapters.acquire(name)
            self.taken[name].append(time.monotonic())
            try:
                await asyncio.sleep(HOLD_S)
            finally:
                release()

    async def __aenter__(self):
        for name in self.names:
            self._tasks += [asyncio.create_task(self._holder(name, i * HOLD_S / HOLDERS)) for i in range(HOLDERS)]
        await asyncio.sleep(HOLD_S * 2)  # every holder running
        assert sorted(self.svc.adapters.resident()) == sorted(self.names)
        return self

    async def __aexit__(self, *exc):
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 10)


def make_resident(svc, *names):
    async def run():
        for n in names:
            (await svc.adapters.acquire(n))()
    asyncio.run(run())


def test_a_cold_load_behind_always_busy_adapters_is_served_after_a_drain(svc):
    alone = asyncio.run(complete(svc, "cold"))[0]  # what the cold adapter answers with nothing else running
    make_resident(svc, "hot0", "hot1")

    async def scenario(wait_s, deadline_s):
        svc.adapters.cold_wait_s = wait_s
        async with Busy(svc, ["hot0", "hot1"]) as busy:
            start = time.monotonic()
            try:
                answer = await asyncio.wait_for(complete(svc, "cold"), deadline_s)
            except asyncio.TimeoutError:
                return None, busy, None
            served = time.monotonic()
            await asyncio.sleep(1.0)  # the drained adapter's own requests wait, then are served again
            resident = svc.adapters.resident()
        return (answer[0], served - start, served), busy, resident

    try:
        # the control: with no bound, the cold request is still waiting when the deadline passes
        starved, _, _ = asyncio.run(scenario(float("inf"), STARVED_FOR_S))
        assert starved is None, "the busy load left a slot idle: this scenario tests nothing"
        make_resident(svc, "hot0", "hot1")
        (answer, took, served), busy, resident = asyncio.run(scenario(COLD_WAIT_S, SERVED_WITHIN_S))
    finally:
        svc.adapters.cold_wait_s = COLD_WAIT_S
    print(f"\ncold request behind 2 always-busy resident adapters: served in {took:.2f}s "
          f"(cold_wait_s {COLD_WAIT_S}); leases taken per busy adapter: { {n: len(t) for n, t in busy.taken.items()} }")
    assert answer == alone  # served by its own weights, through the engine
    assert COLD_WAIT_S <= took < SERVED_WITHIN_S
    # the drained adapter was served again too: both busy adapters took leases after the cold load
    assert all(any(t > served for t in ts) for ts in busy.taken.values()), busy.taken
    assert len(resident) == 2


def test_a_drain_ends_when_the_waiting_request_leaves(svc):
    make_resident(svc, "hot0", "hot1")

    async def scenario():
        held = [await svc.adapters.acquire("hot0"), await svc.adapters.acquire("hot1")]  # long requests
        cold = asyncio.create_task(complete(svc, "cold"))
        await asyncio.sleep(COLD_WAIT_S * 3)  # overdue: the least recently used (hot0) drains for it
        blocked = asyncio.create_task(svc.adapters.acquire("hot0"))
        await asyncio.sleep(0.2)
        drained = not blocked.done()
        cold.cancel()  # the client left
        release = await asyncio.wait_for(blocked, 5)  # hot0 takes new requests again, still resident
        for r in [*held, release]:
            r()
        with pytest.raises(asyncio.CancelledError):
            await cold
        return drained

    assert asyncio.run(scenario()), "hot0 kept taking new requests while the cold load was overdue"
    assert sorted(svc.adapters.resident()) == ["hot0", "hot1"]
