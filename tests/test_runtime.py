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


def test_median_seconds_is_the_median_of_the_timed_runs():
    import time

    from cs231n_gen.runtime import median_seconds

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.02 if len(calls) != 3 else 0.2)  # one slow outlier

    t = median_seconds(fn, repeats=5, warmup=1, device="cpu")
    assert len(calls) == 6 and 0.015 < t < 0.1
    with pytest.raises(ValueError, match="repeats"):
        median_seconds(fn, repeats=0)


def test_median_seconds_in_bundles_is_not_fooled_by_a_hiccup():
    """Two 80 ms pauses in three timed runs of a 10 ms call: alone they are the median, in
    bundles of >= 0.2 s they add a few ms per call."""
    import time

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
