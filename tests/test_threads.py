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
    idle = {1: {"mlp": 5.0, "conv": 10.0}, 2: {"mlp": 5.0, "conv": 5.4}, 4: {"mlp": 5.2, "conv": 5.0}}
    monkeypatch.setattr(threads, "_step_seconds", lambda c: idle)
    assert threads.choose_threads().threads == 2  # within 15% of the best on every step, with fewer threads
    busy = {1: {"mlp": 3.0, "conv": 12.0}, 2: {"mlp": 6.0, "conv": 10.0}, 4: {"mlp": 30.0, "conv": 9.0}}
    monkeypatch.setattr(threads, "_step_seconds", lambda c: busy)
    # worst slowdowns: 1 thread 12/9 = 1.33 (conv), 2 threads 6/3 = 2 (mlp), 4 threads 10 (mlp):
    # the total step time (15, 16, 39) would not be fooled here, but the small model decides.
    assert threads._worst_slowdown(busy) == pytest.approx({1: 12 / 9, 2: 2.0, 4: 10.0})
    assert threads.choose_threads().threads == 1
    # The total would pick 2 threads here and cost the 2D MLP 2x; the worst step does not.
    mixed = {1: {"mlp": 3.0, "conv": 20.0}, 2: {"mlp": 6.0, "conv": 12.0}}
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "_step_seconds", lambda c: mixed)
    assert threads.choose_threads().threads == 1
