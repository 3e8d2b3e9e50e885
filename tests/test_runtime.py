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
