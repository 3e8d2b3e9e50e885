"""Digits data, the cached digit classifier, Frechet distance and the DigitJudge."""
import pytest
import torch

from cs231n_gen import digit_judge
from cs231n_gen.data.images import digits
from cs231n_gen.digit_judge import DigitJudge, digit_classifier
from cs231n_gen.image_metrics import frechet_distance


def test_digits_splits_and_range():
    x_tr, y_tr = digits(16, "train")
    x_te, y_te = digits(16, "test")
    x_all, _ = digits(8, "all")
    assert x_tr.shape == (1438, 1, 16, 16) and x_te.shape == (359, 1, 16, 16) and x_all.shape == (1797, 1, 8, 8)
    assert x_tr.min() >= -1 and x_tr.max() <= 1 and float(x_tr.mean()) < -0.3  # mostly background
    assert torch.bincount(y_te, minlength=10).min() >= 34  # stratified: every class in the test split
    with pytest.raises(ValueError, match="split"):
        digits(16, "validation")
    with pytest.raises(ValueError, match="size"):
        digits(4)


def test_frechet_distance_known_values():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean shifted by (1, 2, 0): d^2 = 5.
    assert frechet_distance(a, a + torch.tensor([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-4)
    # N(0, I) vs N(0, 4 I) in 3-d: tr(I + 4I - 2 * 2I) = 3.
    b = 2 * torch.randn(20000, 3, generator=g)
    assert frechet_distance(a, b) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="features_b"):
        frechet_distance(a, b[:, :2])
    with pytest.raises(ValueError, match="features_a"):
        frechet_distance(a[:1], b)


@pytest.fixture(scope="module")
def judge(digit_cache):
    return DigitJudge(16, device="cpu", progress=False)


def test_classifier_is_accurate_and_cached(judge, monkeypatch):
    assert judge.test_accuracy >= 0.97
    cached = list(digit_judge.cache_dir().glob("digit_classifier_*.pt"))
    assert len(cached) == 1
    again = digit_classifier(16, device="cpu", progress=False)  # from the cache: same weights, no training
    for a, b in zip(again.state_dict().values(), judge.classifier.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    cached[0].write_bytes(b"not a checkpoint")  # a corrupt cache is retrained over, not fatal
    monkeypatch.setattr(digit_judge, "train_digit_classifier", lambda *a, **k: judge.classifier)
    assert digit_classifier(16, device="cpu", progress=False).test_accuracy >= 0.97


def test_judge_scores_real_collapsed_and_noise(judge):
    x, y = digits(16, "test")
    real = judge.evaluate(x, labels=y)
    assert real["accuracy"] >= 0.97 and real["classes_covered"] == 10
    assert real["frechet"] == pytest.approx(real["frechet_real"])
    x_tr, y_tr = digits(16, "train")
    perm = torch.randperm(x_tr.shape[0], generator=torch.Generator().manual_seed(0))[:1000]
    fresh = judge.evaluate(x_tr[perm])
    assert fresh["classes_covered"] == 10 and fresh["frechet"] < 3 * fresh["frechet_real"] + 5
    collapsed = judge.evaluate(x_tr[y_tr == 3][:50].repeat(20, 1, 1, 1))
    assert collapsed["classes_covered"] <= 3 and collapsed["frechet"] > 20 * fresh["frechet"]
    # More images than the test split: a subset is scored, and the images' order must not matter.
    by_class = x_tr[perm][torch.argsort(y_tr[perm], stable=True)]
    assert judge.evaluate(by_class)["frechet"] == pytest.approx(fresh["frechet"], rel=0.5, abs=2.0)
    noise = judge.evaluate(torch.rand(500, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert noise["frechet"] > 20 * fresh["frechet"]  # confident nonsense is caught by the distance


def test_judge_bad_inputs(judge):
    with pytest.raises(ValueError, match="images"):
        judge.evaluate(torch.zeros(10, 1, 8, 8))
    with pytest.raises(ValueError, match="images"):
        judge.evaluate(torch.full((4, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="labels"):
        judge.evaluate(torch.zeros(4, 1, 16, 16), labels=torch.tensor([0, 1, 2, 11]))
    with pytest.raises(ValueError, match="labels"):
        judge.evaluate(torch.zeros(4, 1, 16, 16), labels=torch.tensor([0, 1]))
