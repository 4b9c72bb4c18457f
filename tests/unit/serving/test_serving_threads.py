"""The default torch threads of a replica: its share of the cores, less one for HTTP and the proxy."""
import os

import pytest

from serving.service import default_threads


@pytest.mark.parametrize("cores, replicas, threads", [(2, 1, 1), (1, 1, 1), (16, 1, 15), (16, 4, 3), (4, 8, 1)])
def test_default_threads_leave_a_core_for_the_event_loop(monkeypatch, cores, replicas, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert default_threads(replicas) == threads
