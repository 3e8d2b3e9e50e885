"""The CPU thread policy: what the process may use, the overrides, and the measurement."""
import os

import pytest
import torch

from cs231n_gen import threads


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_usable_cpus_is_bounded_by_affinity_and_cores():
    n = threads.usable_cpus()
    assert 1 <= n <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert n <= len(os.sched_getaffinity(0))


def test_cgroup_quota_caps_the_count(monkeypatch):
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1.5)
    assert threads.usable_cpus() == 1
    assert threads.choose_threads() == threads.ThreadChoice(1, 1, "one usable CPU")


def test_overrides(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.apply_thread_policy().threads == 3 and torch.get_num_threads() == 3
    for bad in ("zero", "0"):
        monkeypatch.setenv(threads.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=threads.THREADS_ENV):
            threads.choose_threads()
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads().threads == 1
    with pytest.raises(ValueError, match="max_threads"):
        threads.choose_threads(max_threads=0)


def test_measured_choice_keeps_the_random_state_and_picks_the_fewest_near_fastest(monkeypatch):
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    choice = threads.choose_threads()
    assert torch.equal(torch.rand(3), want)  # measuring draws no numbers from the lecture's stream
    assert 1 <= choice.threads <= choice.usable and choice.reason.startswith(("measured", "one usable"))
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    monkeypatch.setattr(threads, "_step_seconds", lambda c: {1: 10.0, 2: 5.4, 4: 5.0})
    assert threads.choose_threads().threads == 2  # within 15% of the fastest, with fewer threads
    monkeypatch.setattr(threads, "_step_seconds", lambda c: {1: 3.0, 2: 9.0, 4: 30.0})  # busy machine
    assert threads.choose_threads().threads == 1
