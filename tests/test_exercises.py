import pytest
import torch

from cs231n_gen.exercises import check_euler_sampler, check_rf_loss


def make_loss(sign=1, swap_time=False, reduce="mean", model_time=lambda t: t):
    def rf_loss(model, x, z, t):
        tt = t[:, None]
        xt = tt * x + (1 - tt) * z if swap_time else (1 - tt) * x + tt * z
        err = (sign * (z - x) - model(xt, model_time(t))).square()
        return {"mean": err.sum(1).mean(), "sum": err.sum(), "all": err.mean()}[reduce]

    return rf_loss


def test_correct_loss_passes(capsys):
    check_rf_loss(make_loss())
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (make_loss(sign=-1), "wrong sign"),
        (make_loss(swap_time=True), "time runs the wrong way"),
        (make_loss(reduce="sum"), "summed over the batch"),
        (make_loss(reduce="all"), "averaged over coordinates"),
        (make_loss(model_time=lambda t: 1 - t), "1 - t"),
        (lambda model, x, z, t: 3.0, "scalar tensor"),
    ],
)
def test_loss_mistakes_are_named(fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check_rf_loss(fn)


def make_sampler(grid="right", sign=-1):
    def sample(model, z, n):
        x = z
        if grid == "slide":
            ts = torch.linspace(1, 0, n).tolist()
        elif grid == "forward":
            ts = [i / n for i in range(n)]
        elif grid == "end":
            ts = [1 - (i + 1) / n for i in range(n)]
        else:
            ts = [1 - i / n for i in range(n)]
        for t in ts:
            x = x + sign * model(x, torch.full((x.shape[0],), t)) / n
        return x

    return sample


def test_correct_sampler_passes(capsys):
    check_euler_sampler(make_sampler())
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (make_sampler(grid="slide"), "linspace"),
        (make_sampler(grid="forward"), "walks time forwards"),
        (make_sampler(grid="end"), "end of each step"),
        (make_sampler(sign=+1), "steps the wrong way"),
        (lambda model, z, n: z, "called the model 0 times"),
    ],
)
def test_sampler_mistakes_are_named(fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check_euler_sampler(fn)


def test_gan_exercises_pass_and_name_mistakes(capsys):
    import torch.nn.functional as F

    from cs231n_gen.exercises import check_nonsaturating_loss, check_optimal_discriminator

    check_nonsaturating_loss(lambda l: F.softplus(-l).mean())
    check_optimal_discriminator(lambda p, q: p / (p + q))
    assert "correct" in capsys.readouterr().out
    mistakes = [
        (lambda l: -F.softplus(l).mean(), "minimax"),
        (lambda l: -torch.log(torch.sigmoid(l)).mean(), "underflows"),
        (lambda l: F.softplus(-l).sum(), "mean"),
        (lambda l: F.softplus(l).mean(), "D\\(G\\(z\\)\\) -> 1"),
        (lambda l: F.softplus(-l).mean().detach(), "gradient"),
    ]
    for fn, hint in mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_nonsaturating_loss(fn)
    for fn, hint in [(lambda p, q: q / (p + q), "REAL"), (lambda p, q: p / q.clamp(min=1e-12), "ratio"),
                     (lambda p, q: p / (p + q) / 2, "1/2")]:
        with pytest.raises(AssertionError, match=hint):
            check_optimal_discriminator(fn)
