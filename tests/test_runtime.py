import pytest
import torch

from cs231n_gen import budget, get_device, is_quick, seed_everything


def test_budget_follows_the_environment(monkeypatch):
    monkeypatch.setenv("CS231N_GEN_QUICK", "1")
    assert is_quick() and budget(full=100, quick=10) == 10
    monkeypatch.setenv("CS231N_GEN_QUICK", "0")
    assert not is_quick() and budget(full=100, quick=10) == 100
    monkeypatch.delenv("CS231N_GEN_QUICK")
    assert budget(full=1.5, quick=2.5) == 1.5


@pytest.mark.parametrize("full, quick, name", [(0, 1, "full"), (5, 0, "quick"), (1, 2.0, "full and quick")])
def test_budget_rejects_bad_values(full, quick, name):
    with pytest.raises(ValueError, match=name):
        budget(full=full, quick=quick)


def test_seed_everything_repeats_numbers():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_get_device():
    assert get_device().type in ("cpu", "cuda", "mps")
    assert get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="prefer"):
        get_device("tpu")


def test_start_lecture_seeds_picks_the_device_and_reads_quick_mode(monkeypatch, capsys):
    from cs231n_gen import start_lecture

    monkeypatch.setenv("CS231N_GEN_QUICK", "1")
    device, quick = start_lecture(seed=5, device="cpu")
    a = torch.randn(4)
    assert device == torch.device("cpu") and quick is True
    line = capsys.readouterr().out
    assert "device: cpu" in line and "mode: quick" in line and "seed: 5" in line
    monkeypatch.setenv("CS231N_GEN_QUICK", "0")
    _, quick = start_lecture(seed=5, device="cpu")
    assert quick is False and torch.equal(torch.randn(4), a)  # the same seed, the same numbers
    assert start_lecture()[0] == get_device()
    for bad, name in (("tpu", "device"), (-1, "seed"), (1.5, "seed")):
        with pytest.raises(ValueError, match=name):
            start_lecture(**{name: bad})


def test_median_seconds_is_the_median_of_the_timed_runs(monkeypatch):
    import time

    monkeypatch.setenv("CS231N_GEN_THREADS", "1")  # one count: no comparison of counts before the runs

    from cs231n_gen.runtime import median_seconds

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.02 if len(calls) != 3 else 0.2)  # one slow outlier

    t = median_seconds(fn, repeats=5, warmup=1, device="cpu")
    assert len(calls) == 6 and 0.015 < t < 0.1
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(fn, repeats=0)


def test_median_seconds_in_bundles_is_not_fooled_by_a_hiccup(monkeypatch):
    """Two 80 ms pauses in three timed runs of a 10 ms call: alone they are the median, in
    bundles of >= 0.2 s they add a few ms per call."""
    import time

    monkeypatch.setenv("CS231N_GEN_THREADS", "1")

    from cs231n_gen.runtime import median_seconds

    def with_hiccups(at_calls):
        calls = []

        def fn():
            calls.append(1)
            time.sleep(0.01 + (0.08 if len(calls) in at_calls else 0.0))
        return fn, calls

    fn, calls = with_hiccups({2, 3})  # the first two timed runs
    assert median_seconds(fn, repeats=3, warmup=1, device="cpu") > 0.08
    fn, calls = with_hiccups({2, 30})  # one in each of the first two bundles
    t = median_seconds(fn, repeats=3, warmup=1, device="cpu", at_least_s=0.2)
    assert 0.009 < t < 0.02, t
    assert 1 + 3 * 15 <= len(calls) <= 1 + 3 * 20  # bundles of ceil(0.2 / ~0.0101) calls
    with pytest.raises(ValueError, match="warmup"):
        median_seconds(fn, warmup=0, at_least_s=0.1)
    with pytest.raises(ValueError, match="at_least_s"):
        median_seconds(fn, at_least_s=-1.0)


def _per_count(seconds_by_count):
    """A call that sleeps by the thread count it runs at: ``{count: [seconds of each run]}``
    (the last entry repeats), with the counts it ran at."""
    import time

    ran = []

    def fn():
        n = torch.get_num_threads()
        ran.append(n)
        plan = seconds_by_count[n]
        time.sleep(plan[min(ran.count(n) - 1, len(plan) - 1)])
    return fn, ran


@pytest.mark.parametrize("plan, want_count, counts_run", [
    ({1: [0.03], 2: [0.012]}, 2, [1, 2, 2, 2]),  # idle: two threads faster, twice; one more repeat
    ({1: [0.012], 2: [0.03]}, 1, [1, 2, 1, 1]),  # a load: one thread faster; two more repeats
    # a load: two threads once faster (after the warmup), then far slower: the fewest count times
    ({1: [0.012], 2: [0.012, 0.003, 0.09]}, 1, [1, 2, 2, 1, 1]),
])
def test_median_seconds_times_at_the_count_that_is_fastest_now(monkeypatch, plan, want_count, counts_run):
    from cs231n_gen import threads
    from cs231n_gen.runtime import median_seconds

    monkeypatch.delenv("CS231N_GEN_THREADS", raising=False)
    monkeypatch.setattr(threads, "_limits", lambda max_threads=None: (2, None))
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the lecture's count, the warmup's
    fn, ran = _per_count(plan)
    try:
        t = median_seconds(fn, repeats=3, warmup=1, device="cpu")
        assert torch.get_num_threads() == 2  # put back
    finally:
        torch.set_num_threads(before)
    want = plan[want_count][-1]
    assert want * 0.9 < t < want * 1.5, (t, ran)
    assert ran[0] == 2 and ran[1:] == counts_run  # the warmup at the lecture's count, then the comparison



def test_timing_counts_are_one_where_the_count_is_forced_or_there_is_one_cpu(monkeypatch):
    from cs231n_gen import threads

    monkeypatch.setenv("CS231N_GEN_THREADS", "1")
    assert threads.timing_counts("cpu") == [torch.get_num_threads()]
    monkeypatch.delenv("CS231N_GEN_THREADS")
    monkeypatch.setattr(threads, "usable_cpus", lambda: 1)
    assert threads.timing_counts() == [torch.get_num_threads()]
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert threads.timing_counts("cpu") == [1, 2, 4]
        torch.set_num_threads(1)  # a loop left one thread (a load): never more than that
        assert threads.timing_counts("cpu") == [1]
        torch.set_num_threads(3)
        assert threads.timing_counts("cpu") == [1, 2, 3]
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="device"):
        threads.timing_counts(3)
