"""Cached training runs: a rerun loads what the same inputs trained, anything else trains."""
import io

import pytest
import torch

from cs231n_gen import cache, fingerprint, gan, runtime
from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn import MLPDiscriminator, MLPGenerator, TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.runtime import seed_everything
from cs231n_gen.train import fit

DATA = eight_gaussians()
SCALE = 1.0  # a global the loss below reads: changing it must retrain


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    return tmp_path


def scaled_loss(net, x, g):
    return SCALE * rectified_flow_loss(net, x, g)


def train(loss_fn=scaled_loss, data=DATA, seed=0, lr=1e-3, steps=60, cache=True):
    """Seed, build, fit; returns (model, history, the next global random number, loss calls)."""
    calls = []

    def counted(net, batch, g):
        calls.append(1)
        return loss_fn(net, batch, g)

    counted.__qualname__ = "counted"
    seed_everything(seed)
    model = TimeMLP(hidden=32, depth=2)
    history = fit(model, counted, data, steps=steps, batch_size=64, lr=lr, cache=cache, progress=False)
    return model, history, torch.rand(1), len(calls)


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_rerun_loads_exactly_what_the_first_run_trained(cache_folder):
    m1, h1, r1, n1 = train()
    m2, h2, r2, n2 = train()
    assert (n1, n2) == (60, 0) and (h1.cached, h2.cached) == (False, True)
    assert same_weights(m1, m2) and h1.loss == h2.loss and h1.lr == h2.lr
    assert torch.equal(r1, r2)  # the global random state is where training left it
    assert h2.steps_run == 60 and h2.seconds == pytest.approx(h1.seconds)  # the cached run's timing
    m3, _, _, n3 = train(cache=False)
    assert n3 == 60 and same_weights(m1, m3)  # and it is what training gives


@pytest.mark.parametrize("change", ["lr", "seed", "data", "loss default", "global read by the loss", "closure",
                                    "code"])
def test_any_change_of_the_inputs_trains_again(cache_folder, monkeypatch, change):
    train()
    kwargs = {}
    if change == "lr":
        kwargs["lr"] = 2e-3
    elif change == "seed":
        kwargs["seed"] = 1  # other initial weights
    elif change == "data":
        kwargs["data"] = eight_gaussians(radius=2.1)  # same kind and shapes, other numbers
    elif change == "loss default":
        kwargs["loss_fn"] = lambda net, x, g, w=2.0: w * rectified_flow_loss(net, x, g)
        train(**kwargs)
        kwargs["loss_fn"] = lambda net, x, g, w=3.0: w * rectified_flow_loss(net, x, g)
    elif change == "global read by the loss":
        monkeypatch.setitem(globals(), "SCALE", 2.0)
    elif change == "closure":
        factor = 1.0
        kwargs["loss_fn"] = lambda net, x, g: factor * rectified_flow_loss(net, x, g)
        train(**kwargs)
        factor = 0.5  # noqa: F841 (read through the closure)
    elif change == "code":
        monkeypatch.setattr("cs231n_gen.engine.code_version", lambda: "another library")
    assert train(**kwargs)[3] > 0, change


def test_damaged_or_lying_cache_files_are_trained_over(cache_folder, capsys):
    m1, *_ = train()
    (path,) = cache_folder.glob("run_fit_*.pt")
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    assert train()[3] == 60
    assert "retraining run_fit" in capsys.readouterr().out
    # An intact file (checksum recomputed) that holds NaN weights is refused too.
    from cs231n_gen import _io

    saved = _io.load(path)
    first = next(iter(saved["modules"]["model"]))
    saved["modules"]["model"][first] = torch.full_like(saved["modules"]["model"][first], float("nan"))
    _io.save(saved, path)
    model, _, _, calls = train()
    assert calls == 60 and same_weights(model, m1)
    assert "NaN" in capsys.readouterr().out


def test_an_input_without_readable_content_trains_without_the_cache(cache_folder, capsys):
    handle = io.StringIO()
    loss = lambda net, x, g, h=handle: rectified_flow_loss(net, x, g)  # noqa: E731
    assert train(loss_fn=loss)[3] == 60 and train(loss_fn=loss)[3] == 60
    assert "not cached" in capsys.readouterr().out
    assert not list(cache_folder.glob("run_fit_*.pt"))


def test_gan_runs_are_cached_with_their_snapshots(cache_folder):
    def run_gan():
        seed_everything(0)
        G, D = MLPGenerator(8, 2, 32, 2), MLPDiscriminator(2, 32, 2)
        h = gan.train_gan(G, D, DATA, steps=40, batch_size=64, snapshot_every=20, cache=True, progress=False)
        return G, h

    (g1, h1), (g2, h2) = run_gan(), run_gan()
    assert (h1.cached, h2.cached) == (False, True) and same_weights(g1, g2)
    assert [s.step for s in h2.snapshots] == [0, 20, 40] and h1.value == h2.value
    assert torch.equal(h1.snapshots[-1].samples, h2.snapshots[-1].samples)


def test_lectures_cache_by_default_and_the_environment_turns_it_off(cache_folder, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "_lecture_caches_runs", False)
    monkeypatch.delenv(runtime.CACHE_RUNS_ENV, raising=False)
    assert not runtime.caching_runs()  # a plain script: off
    runtime.start_lecture(seed=0, device="cpu")
    assert runtime.caching_runs() and "cache of trained models: on" in capsys.readouterr().out
    assert train(cache=None)[3] == 60 and train(cache=None)[3] == 0
    monkeypatch.setenv(runtime.CACHE_RUNS_ENV, "0")
    assert not runtime.caching_runs() and train(cache=None)[3] == 60
    runtime.start_lecture(seed=0, device="cpu", cache=False)
    monkeypatch.delenv(runtime.CACHE_RUNS_ENV)
    assert not runtime.caching_runs()
    with pytest.raises(ValueError, match="cache"):
        runtime.start_lecture(cache="yes")


def test_fingerprints_follow_content_not_identity():
    fp = fingerprint.fingerprint
    assert fp(torch.arange(4.0)) == fp(torch.arange(4.0)) != fp(torch.arange(4.0) + 1)
    assert fp(torch.zeros(2, dtype=torch.float32)) != fp(torch.zeros(2, dtype=torch.float64))
    assert fp(torch.tensor(0.5).expand(1)) == fp(torch.tensor([0.5]))  # stride 0 on a size-1 dim
    assert fp(torch.ones(3, dtype=torch.bfloat16)) != fp(torch.zeros(3, dtype=torch.bfloat16))
    assert fp(lambda x, k=1: x * k) != fp(lambda x, k=2: x * k)
    assert fp(lambda x: x + 1) != fp(lambda x: x + 2)
    a, b = TimeMLP(hidden=8, depth=1), TimeMLP(hidden=8, depth=1)
    assert fp(a) != fp(b)  # other random weights
    b.load_state_dict(a.state_dict())
    assert fp(a) == fp(b)
    cyclic = []
    cyclic.append(cyclic)
    assert fp(cyclic) == fp(cyclic)

    class Local(torch.nn.Module):
        def forward(self, x):
            return x

    class Other(torch.nn.Module):
        def forward(self, x):
            return -x

    assert fp(Local()) != fp(Other())  # a notebook's own model: its code counts
    with pytest.raises(fingerprint.NotFingerprintable, match="StringIO"):
        fp({"log": io.StringIO()})
    assert len(fingerprint.code_version()) == 16
