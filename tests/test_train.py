import pytest
import torch

from cs231n_gen import _io, threads
from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn import TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.train import TrainingDivergedError, fit

KW = dict(batch_size=64, lr=1e-3, progress=False, device="cpu", log_every=10)


def _model():
    torch.manual_seed(0)
    return TimeMLP(hidden=32, depth=2)


def test_fit_reduces_the_loss_and_records_history():
    model = _model()
    h = fit(model, rectified_flow_loss, eight_gaussians(), steps=300, **KW)
    assert h.steps == 300 and len(h.lr) == 300 and h.steps_run == 300
    assert sum(h.loss[-50:]) / 50 < 0.9 * sum(h.loss[:20]) / 20
    assert h.lr[0] == pytest.approx(1e-3) and h.lr[-1] < 1e-5  # cosine decay
    assert h.steps_per_second > 0 and not model.training


def test_resume_gives_exactly_the_uninterrupted_parameters(tmp_path):
    data = eight_gaussians()
    full = _model()
    fit(full, rectified_flow_loss, data, steps=120, **KW)

    ckpt = tmp_path / "run.pt"
    calls = {"n": 0}

    def interrupted(n, generator):  # the student presses stop while step 75's batch is drawn
        calls["n"] += 1
        if calls["n"] == 75:
            raise KeyboardInterrupt
        return data.sample(n, generator=generator)

    part = _model()
    with pytest.raises(KeyboardInterrupt):
        fit(part, rectified_flow_loss, interrupted, steps=120, checkpoint=ckpt, checkpoint_every=30, **KW)
    assert _io.load(ckpt)["step"] == 60
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind

    resumed = _model()
    h = fit(resumed, rectified_flow_loss, lambda n, g: data.sample(n, generator=g), steps=120, checkpoint=ckpt,
            checkpoint_every=30, **KW)
    assert h.steps == 120 and h.steps_run == 60
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)

    with pytest.raises(ValueError, match="settings"):
        fit(_model(), rectified_flow_loss, data, steps=200, checkpoint=ckpt, **KW)


def test_nan_guard_names_the_step():
    def exploding(model, batch, generator):
        loss = rectified_flow_loss(model, batch, generator)
        return loss * float("nan") if exploding.step >= 17 else loss + 0 * exploding.tick()

    exploding.step = 0

    def tick():
        exploding.step += 1
        return 0.0

    exploding.tick = tick
    # (held: no load follower, whose trial step on a busy machine would be one more call of the loss)
    with pytest.raises(TrainingDivergedError, match=r"step 17.*smaller lr"), threads.held():
        fit(_model(), exploding, eight_gaussians(), steps=50, **KW)


def test_fit_accepts_tensor_data_and_callables():
    pts = eight_gaussians().sample(500)
    fit(_model(), rectified_flow_loss, pts, steps=5, **KW)
    fit(_model(), rectified_flow_loss, lambda n, g: pts[:n], steps=5, **KW)


def test_fit_draws_matching_rows_from_a_tuple():
    x = torch.arange(40.0).reshape(20, 2)
    y = torch.arange(20)
    seen = []

    def loss_fn(model, batch, generator):
        bx, by = batch
        seen.append((bx.clone(), by.clone()))
        return model(bx, torch.zeros(len(bx))).square().mean()

    fit(_model(), loss_fn, (x, y), steps=3, **KW)
    for bx, by in seen:
        assert torch.equal(bx, x[by])  # each label travels with its own row
    with pytest.raises(ValueError, match="same number of rows"):
        fit(_model(), loss_fn, (x, y[:5]), steps=1, **KW)
    with pytest.raises(ValueError, match="NaN"):
        fit(_model(), loss_fn, (torch.full((20, 2), float("nan")), y), steps=1, **KW)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=0), "steps"),
        (dict(steps=5, lr=-1.0), "lr"),
        (dict(steps=5, lr=float("nan")), "lr"),
        (dict(steps=5, batch_size=0), "batch_size"),
        (dict(steps=5, lr_schedule="linear"), "lr_schedule"),
        (dict(steps=5, checkpoint_every=2), "checkpoint"),
        (dict(steps=5, grad_clip=0.0), "grad_clip"),
    ],
)
def test_fit_rejects_bad_settings(kwargs, name):
    base = dict(KW)
    base.update(kwargs)
    with pytest.raises(ValueError, match=name):
        fit(_model(), rectified_flow_loss, eight_gaussians(), **base)


def test_fit_rejects_bad_data_and_model():
    with pytest.raises(ValueError, match="data"):
        fit(_model(), rectified_flow_loss, torch.tensor([[float("nan"), 0.0]]), steps=2, **KW)
    with pytest.raises(ValueError, match="data"):
        fit(_model(), rectified_flow_loss, "moons", steps=2, **KW)
    with pytest.raises(ValueError, match="model"):
        fit(lambda x: x, rectified_flow_loss, eight_gaussians(), steps=2, **KW)


def test_a_new_trainer_is_its_step_function():
    """engine.prepare and engine.train_steps carry the plumbing: a trainer of a few lines gets the
    loop's history, training mode during the run and evaluation mode after it."""
    from dataclasses import dataclass, field

    from cs231n_gen import engine

    @dataclass
    class MeanHistory(engine.RunRecord):
        loss: list = field(default_factory=list)
        COLUMNS = ("loss",)

    def fit_mean(data, steps, **loop_options):
        loop = engine.Loop(steps=steps, progress=False, log_every=2, **loop_options)
        device, generator = engine.prepare("cpu", seed=0)
        model = torch.nn.Linear(1, 1, bias=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        modes = []

        def step(i):
            modes.append(model.training)
            batch = data[torch.randint(0, len(data), (8,), generator=generator)]
            loss = (model(torch.ones(8, 1)) - batch).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.detach().reshape(1)

        history = engine.train_steps(step, loop=loop, kind="mean", settings={"steps": steps}, history=MeanHistory(),
                                     modules={"model": model}, optimizers={"optimizer": optimizer},
                                     generators={"generator": generator}, device=device,
                                     describe=lambda s, row: f"loss {row[0]} at step {s}", fingerprinted={})
        return model, history, modes

    data = torch.full((64, 1), 3.0)
    model, history, modes = fit_mean(data, 40)
    assert len(history.loss) == 40 and history.steps_run == 40 and history.loss[-1] < 1e-3 * history.loss[0]
    assert all(modes) and not model.training
    assert abs(model.weight.item() - 3.0) < 1e-2
    with pytest.raises(ValueError, match="seed"):
        engine.prepare("cpu", seed=-1)


def test_loop_cache_none_follows_the_lecture_setting(monkeypatch):
    from cs231n_gen import engine

    monkeypatch.setattr(engine, "caching_runs", lambda: True)
    assert engine.Loop(steps=1, cache=None).cache is True
    monkeypatch.setattr(engine, "caching_runs", lambda: False)
    assert engine.Loop(steps=1, cache=None).cache is False
