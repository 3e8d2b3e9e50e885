"""The course's shipped trained models: build, load, refuse a stale or damaged one."""
import contextlib
import json
import math
import re
from pathlib import Path

import pytest
import torch

from cs231n_gen import _io, engine, pretrained
from cs231n_gen.data import eight_gaussians
from cs231n_gen.gan import train_gan
from cs231n_gen.nn import MLPDiscriminator, MLPGenerator, TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.runtime import seed_everything
from cs231n_gen.train import fit

DATA = eight_gaussians()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))
    monkeypatch.delenv(pretrained.MODE_ENV, raising=False)
    monkeypatch.setenv(pretrained.BUILD_ID_ENV, "test-build")
    monkeypatch.setenv(pretrained.LECTURE_ENV, "02_rectified_flow")
    monkeypatch.setattr(pretrained, "_choice", None)
    monkeypatch.setenv("CS231N_GEN_THREADS", str(torch.get_num_threads()))  # no load follower: no trial steps
    return tmp_path


def train(mode, monkeypatch, lr=1e-3, hidden=32, seed=0, steps=80):
    """Seed, build, fit under ``mode``; returns (model, history, next global random number, loss calls)."""
    monkeypatch.setenv(pretrained.MODE_ENV, {"build": "build", "load": "1", "train": "0"}[mode])
    calls = []

    def loss(net, batch, g):
        calls.append(1)
        return rectified_flow_loss(net, batch, g)

    seed_everything(seed)
    model = TimeMLP(hidden=hidden, depth=2)
    history = fit(model, loss, DATA, steps=steps, batch_size=64, lr=lr, cache=False, progress=True,
                  shipped="toy_flow")
    return model, history, torch.rand(1), len(calls)


def test_quick_mode_exercises_the_loop_then_holds_exactly_what_the_build_trained(shipped_dir, monkeypatch, capsys):
    built, h_built, r_built, n_built = train("build", monkeypatch)
    assert n_built == 80 and (shipped_dir / "toy_flow.pt").exists()
    meta = json.loads((shipped_dir / "toy_flow.json").read_text())
    assert meta["lectures"] == ["02_rectified_flow"] and meta["built"]["steps"] == 80
    loaded, h_loaded, r_loaded, n_loaded = train("load", monkeypatch)
    assert n_loaded == pretrained.EXERCISE_STEPS  # the loop and the loss ran, briefly
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), loaded.state_dict().values()))
    assert h_loaded.loss == h_built.loss and h_loaded.shipped and h_loaded.steps_run == 80
    assert torch.equal(r_built, r_loaded)  # later cells draw the same random numbers as after the full run
    out = capsys.readouterr().out
    assert "loaded the course's trained model 'toy_flow'" in out and "30 steps here" in out
    trained, _, _, n_trained = train("train", monkeypatch)
    assert n_trained == 80 and "training from scratch, 80 steps" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), trained.state_dict().values()))


@pytest.mark.parametrize("change, words", [("lr", "setting lr"), ("steps", "setting steps"),
                                           ("seed", "the initial weights"), ("hidden", "setting model")])
def test_a_changed_recipe_is_refused_with_the_rebuild_command(shipped_dir, monkeypatch, change, words):
    train("build", monkeypatch)
    kwargs = {"lr": {"lr": 2e-3}, "steps": {"steps": 90}, "seed": {"seed": 1}, "hidden": {"hidden": 16}}[change]
    with pytest.raises(pretrained.ShippedModelError, match="another recipe") as err:
        train("load", monkeypatch, **kwargs)
    assert words in str(err.value) and "python -m cs231n_gen.pretrained build --lecture 02" in str(err.value)


def test_a_missing_damaged_or_mismatched_model_is_refused(shipped_dir, monkeypatch):
    with pytest.raises(pretrained.ShippedModelError, match="no shipped model named 'toy_flow'"):
        train("load", monkeypatch)
    train("build", monkeypatch)
    weights = shipped_dir / "toy_flow.pt"
    good = weights.read_bytes()
    weights.write_bytes(good[:-200])
    with pytest.raises(pretrained.ShippedModelError, match="not a readable|checksum"):
        train("load", monkeypatch)
    weights.write_bytes(good)
    payload = _io.load(weights)  # same recipe, weights of another shape: the class changed under the file
    payload["modules"]["model"] = {k: torch.zeros(3) for k in payload["modules"]["model"]}
    _io.save(payload, weights)
    with pytest.raises(pretrained.ShippedModelError, match="no longer loads into TimeMLP"):
        train("load", monkeypatch)
    meta = json.loads((shipped_dir / "toy_flow.json").read_text())
    meta["recipe"]["settings"]["lr"] = 5.0
    (shipped_dir / "toy_flow.json").write_text(json.dumps(meta))
    with pytest.raises(pretrained.ShippedModelError, match="another recipe"):
        train("load", monkeypatch)


def test_a_gan_is_shipped_with_its_snapshots(shipped_dir, monkeypatch):
    def run(mode):
        monkeypatch.setenv(pretrained.MODE_ENV, mode)
        seed_everything(3)
        G, D = MLPGenerator(z_dim=2, hidden=16, depth=2), MLPDiscriminator(hidden=16, depth=2)
        history = train_gan(G, D, DATA, steps=40, batch_size=64, snapshot_every=20, snapshot_n=50,
                            progress=False, cache=False, shipped="toy_gan")
        return G, history

    G1, h1 = run("build")
    G2, h2 = run("1")
    assert all(torch.equal(a, b) for a, b in zip(G1.state_dict().values(), G2.state_dict().values()))
    assert [s.step for s in h2.snapshots] == [0, 20, 40] and h2.d_loss == h1.d_loss


def test_two_lectures_of_one_build_share_a_model_only_when_their_recipes_agree(shipped_dir, monkeypatch):
    train("build", monkeypatch)
    monkeypatch.setenv(pretrained.LECTURE_ENV, "08_distillation")
    _, _, _, calls = train("build", monkeypatch)
    assert calls == 0  # the second lecture takes the first one's model
    assert json.loads((shipped_dir / "toy_flow.json").read_text())["lectures"] == ["02_rectified_flow",
                                                                                   "08_distillation"]
    with pytest.raises(pretrained.ShippedModelError, match="two lectures ship different models"):
        train("build", monkeypatch, lr=3e-3)


def test_modes_numbers_and_names(shipped_dir, monkeypatch):
    monkeypatch.setenv("CS231N_GEN_QUICK", "1")
    assert pretrained.mode() == "load"
    monkeypatch.setenv("CS231N_GEN_QUICK", "0")
    assert pretrained.mode() == "train"
    pretrained._choose(True)
    assert pretrained.mode() == "load"
    pretrained._choose(None)
    monkeypatch.setenv(pretrained.MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match="CS231N_GEN_PRETRAINED must be 1"):
        pretrained.mode()
    with pytest.raises(ValueError, match="pretrained must be True, False or None"):
        pretrained._choose("yes")
    with pytest.raises(ValueError, match="shipped must be None or a model name"):
        fit(TimeMLP(hidden=8, depth=1), rectified_flow_loss, DATA, steps=2, shipped="../x")
    train("build", monkeypatch)
    pretrained.record("toy_flow", w2=torch.tensor(0.25), steps=3)
    assert pretrained.manifest("toy_flow")["numbers"] == {"w2": 0.25, "steps": 3.0}
    for bad in ("low", float("nan")):
        with pytest.raises(ValueError, match="w2 must be a finite number"):
            pretrained.record("toy_flow", w2=bad)
    monkeypatch.setenv(pretrained.MODE_ENV, "1")
    pretrained.record("toy_flow", w2=9.0)  # outside a build: checked, not written
    assert pretrained.manifest("toy_flow")["numbers"]["w2"] == 0.25


# ------------------------------------------------------------------- what the package ships
SHIPPED_CALL = re.compile(r"shipped=\"([A-Za-z0-9_]+)\"")


def test_every_model_a_lecture_names_ships_and_every_shipped_model_has_its_lecture(monkeypatch):
    monkeypatch.delenv(pretrained.DIR_ENV, raising=False)
    shipped = pretrained.available()
    sources = {p.stem: p.read_text() for p in sorted((ROOT / "lectures").glob("[0-9][0-9]_*.py"))}
    shipping = {stem for stem, text in sources.items() if "shipped=" in text}
    for stem in shipping:  # names written out (names built in a loop are checked by the lecture's quick run)
        for name in SHIPPED_CALL.findall(sources[stem]):
            assert name in shipped and stem in shipped[name]["lectures"], (stem, name)
    listed = set()
    for name, meta in shipped.items():
        assert meta["lectures"] and set(meta["lectures"]) <= shipping, (name, meta["lectures"])
        listed |= set(meta["lectures"])
    assert listed == shipping, sorted(shipping - listed)


SIGNATURE_OF = {"model": "model", "G": "generator_net", "D": "discriminator_net", "vae": "vae", "critic": "critic"}


def test_every_shipped_model_is_intact_and_fits_its_recipe(monkeypatch):
    monkeypatch.delenv(pretrained.DIR_ENV, raising=False)
    total = 0
    for name, meta in pretrained.available().items():
        assert meta["recipe_fingerprint"] == pretrained._recipe_fingerprint(meta["recipe"]), name
        payload = _io.load(pretrained._paths(name)[0])
        assert payload["recipe_fingerprint"] == meta["recipe_fingerprint"], name
        settings = meta["recipe"]["settings"]
        for module, state in payload["modules"].items():  # each module fits the class the recipe names
            signature = settings[SIGNATURE_OF[module]]
            assert {k: list(v.shape) for k, v in state.items()} == signature["shapes"], (name, module)
        assert all(isinstance(v, float) and math.isfinite(v) for v in meta["numbers"].values()), name
        total += pretrained._paths(name)[0].stat().st_size
    assert total < 60e6, f"the shipped models take {total / 1e6:.1f} MB"


def test_engine_reports_a_run_whose_inputs_cannot_be_fingerprinted(shipped_dir, monkeypatch):
    monkeypatch.setenv(pretrained.MODE_ENV, "1")
    with pytest.raises(ValueError, match="cannot be fingerprinted"):
        engine.run(lambda i: None, engine.Trainable({}, {}, {}), engine.Loop(steps=2, shipped="x"), kind="t",
                   settings={}, record=lambda s, r: None, describe=lambda s, r: "", inputs=None)


def test_data_that_differ_only_in_their_last_bits_are_accepted(shipped_dir, monkeypatch, capsys):
    """A model trained on another model's outputs: on another machine those differ in the last bits."""
    def run(mode, data, lr=1e-3):
        monkeypatch.setenv(pretrained.MODE_ENV, mode)
        seed_everything(0)
        model = TimeMLP(hidden=16, depth=1)
        fit(model, rectified_flow_loss, data, steps=40, batch_size=32, lr=lr, progress=False, cache=False,
            shipped="toy_chain")
        return model

    points = DATA.sample(256, generator=torch.Generator().manual_seed(0))
    run("build", points)
    run("1", points * (1 + 1e-7))  # what other kernels make of the same upstream model
    assert "differ from the build's in their last bits" in capsys.readouterr().out
    for other in (DATA.sample(256, generator=torch.Generator().manual_seed(1)),  # other data
                  points.flip(0),  # the same points in another order
                  points * 1.01):  # a changed upstream model
        with pytest.raises(pretrained.ShippedModelError, match="the data"):
            run("1", other)
    with pytest.raises(pretrained.ShippedModelError, match="setting lr"):  # anything else still counts
        run("1", points * (1 + 1e-7), lr=0.5)
    assert pretrained._data_summary(DATA) is None  # a mixture is sampled, not stored: its bytes must match


def test_on_another_device_the_random_state_and_computed_data_may_differ(shipped_dir, monkeypatch, capsys):
    """Built on the CPU, loaded on a GPU: the cells before drew from the GPU's generator and
    earlier models computed the data with its kernels; the rest of the recipe must still hold."""
    monkeypatch.setenv(pretrained.MODE_ENV, "build")
    seed_everything(0)
    points = DATA.sample(256, generator=torch.Generator().manual_seed(0))
    fit(TimeMLP(hidden=16, depth=1), rectified_flow_loss, points, steps=20, batch_size=32, progress=False,
        cache=False, shipped="toy_device")
    built = pretrained.manifest("toy_device")
    rec = json.loads(json.dumps(built["recipe"]))
    rec["inputs"]["global_rng"] = "another random state"
    rec["inputs"]["modules"] = "initial weights drawn from it"
    rec["inputs"]["data"] = "other bits"
    summaries = {"data": pretrained._data_summary(points * (1 + 1e-3))}  # a GPU's rounding, compounded
    pretrained._fetch("toy_device", rec, summaries, device="cuda")
    assert "was built on the cpu; here on cuda" in capsys.readouterr().out
    with pytest.raises(pretrained.ShippedModelError, match="the random state at the start"):
        pretrained._fetch("toy_device", rec, summaries, device="cpu")  # on the build's device: refused
    far = {"data": pretrained._data_summary(points * 1.05)}
    with pytest.raises(pretrained.ShippedModelError, match="the data"):
        pretrained._fetch("toy_device", rec, far, device="cuda")  # other data, not other rounding
    changed = json.loads(json.dumps(rec))
    changed["settings"]["lr"] = 0.5
    with pytest.raises(pretrained.ShippedModelError, match="setting lr"):
        pretrained._fetch("toy_device", changed, summaries, device="cuda")


class CountedMLP(TimeMLP):
    """A TimeMLP that counts its forward passes (not part of its state)."""

    def forward(self, *args, **kwargs):
        self.forwards = getattr(self, "forwards", 0) + 1
        return super().forward(*args, **kwargs)


def test_a_model_an_earlier_lecture_trains_is_reused_in_full_mode(shipped_dir, monkeypatch, capsys, tmp_path):
    def run(cache=False, reusing=True):
        seed_everything(0)
        model = CountedMLP(hidden=32, depth=2)
        with pretrained.reusing("lecture 02") if reusing else contextlib.nullcontext():
            history = fit(model, rectified_flow_loss, DATA, steps=80, batch_size=64, lr=1e-3, cache=cache,
                          shipped="toy_flow")
        return model, history, torch.rand(1)

    monkeypatch.setenv(pretrained.MODE_ENV, "build")
    built, h_built, r_built = run(reusing=False)
    monkeypatch.delenv(pretrained.MODE_ENV)
    monkeypatch.setenv("CS231N_GEN_QUICK", "0")  # full mode: pretrained.mode() is "train"
    monkeypatch.setenv("CS231N_GEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CS231N_GEN_CACHE_RUNS", "1")
    capsys.readouterr()
    # no run of lecture 02 in the cache: the shipped copy, without a training step
    model, history, r = run()
    assert getattr(model, "forwards", 0) == 0 and history.shipped and history.loss == h_built.loss
    assert torch.equal(r, r_built)
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), model.state_dict().values()))
    assert "lecture 02 trains this model; loaded the course's trained copy 'toy_flow'" in capsys.readouterr().out
    # the student's own run of lecture 02 in the cache comes first
    monkeypatch.setattr(pretrained, "_choice", False)
    own, _, _ = run(cache=True, reusing=False)
    monkeypatch.setattr(pretrained, "_choice", None)
    model, history, _ = run(cache=True)
    assert getattr(model, "forwards", 0) == 0 and history.cached and not history.shipped
    assert all(torch.equal(a, b) for a, b in zip(own.state_dict().values(), model.state_dict().values()))
    assert "lecture 02 trains this model; loaded your run of it from the cache" in capsys.readouterr().out
    # asked to train everything: it trains
    monkeypatch.setattr(pretrained, "_choice", False)
    model, _, _ = run()
    assert model.forwards == 80
    with pytest.raises(ValueError, match="lecture must name the lecture"):
        with pretrained.reusing(""):
            pass
