"""Files the library writes and reads, and resuming training from them.

Atomic, checksummed, tensors-only files (``_io``); the cache of trained helpers (read-only
folders, corrupt or lying files); checkpoints that never hold NaN, refuse other
settings, survive corruption with one clear error, and resume bit-exactly even for
models that draw from torch's global random stream (Dropout).
"""
import os
import pickle
import threading
import warnings

import pytest
import torch

from cs231n_gen import _io, cache, digit_judge
from cs231n_gen.data import eight_gaussians, ring_gaussians
from cs231n_gen.engine import CheckpointError, TrainingDivergedError
from cs231n_gen.gan import train_gan
from cs231n_gen.nn import MLPDiscriminator, MLPGenerator, TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.train import fit

KW = dict(batch_size=32, lr=1e-3, progress=False, device="cpu", log_every=5)


def _model():
    torch.manual_seed(0)
    return TimeMLP(hidden=16, depth=1)


# --------------------------------------------------------------------------- _io
def test_save_is_atomic_unique_and_ignores_a_planted_symlink(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("do not touch")
    path = tmp_path / "state.pt"
    os.symlink(target, tmp_path / "state.pt.tmp")  # the old fixed temp name, planted
    _io.save({"w": torch.ones(3)}, path)
    assert target.read_text() == "do not touch"
    assert torch.equal(_io.load(path)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt", "state.pt.tmp", "victim.txt"]


def test_two_writers_to_one_path_never_leave_a_broken_file(tmp_path):
    path = tmp_path / "shared.pt"
    errors = []

    def writer(k):
        try:
            for _ in range(15):
                _io.save({"k": torch.full((2000,), float(k))}, path)
        except Exception as err:  # noqa: BLE001 (any failure is what this test looks for)
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    value = _io.load(path)["k"]
    assert value.unique().numel() == 1  # one writer's whole file, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["shared.pt"]  # no temporary files left


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "foreign_pickle", "plain_torch"])
def test_every_damaged_file_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "f.pt"
    _io.save({"w": torch.arange(1000.0)}, path)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # a byte of the tensor data: the zip still opens, the digest catches it
        i = raw.index(bytes(torch.tensor([500.0]).numpy().tobytes()))
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "foreign_pickle":  # a pickle that would run code if loaded without weights_only
        path.write_bytes(pickle.dumps(os.getcwd))
    else:
        torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(_io.UnusableFileError, match="f.pt"):
        _io.load(path)


# --------------------------------------------------------------------------- cache
def test_unwritable_cache_warns_once_and_keeps_the_model_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))  # a folder that cannot be created
    config = {"test": "unwritable"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.store("thing", config, {"w": torch.ones(2)}) is None
        assert cache.store("thing", config, {"w": torch.ones(2)}) is None
    assert len([w for w in caught if "could not write its cache" in str(w.message)]) == 1
    assert torch.equal(cache.load("thing", config)["w"], torch.ones(2))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    with pytest.warns(RuntimeWarning, match="could not write"):
        assert cache.store("thing_ro", {"a": 1}, {"w": torch.ones(1)}) is None


def test_digit_classifier_survives_an_unwritable_cache(tmp_path, monkeypatch, digit_cache):
    judge = digit_judge.digit_classifier(16, device="cpu", progress=False)  # the session's trained judge
    calls = []
    monkeypatch.setattr(digit_judge, "train_digit_classifier", lambda *a, **k: calls.append(1) or judge)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="could not write"):
        first = digit_judge.digit_classifier(16, device="cpu", progress=False)
    second = digit_judge.digit_classifier(16, device="cpu", progress=False)  # from memory: no retraining
    assert calls == [1] and first.test_accuracy == second.test_accuracy >= 0.97


def test_cache_key_changes_with_config_and_version(monkeypatch):
    import cs231n_gen

    a = cache.cache_path("judge", {"size": 16})
    assert cache.cache_path("judge", {"size": 16}) == a
    assert cache.cache_path("judge", {"size": 32}) != a
    monkeypatch.setattr(cs231n_gen, "__version__", "9.9.9")
    assert cache.cache_path("judge", {"size": 16}) != a


def test_a_lying_or_damaged_classifier_cache_is_retrained(digit_cache, monkeypatch, capsys):
    good = digit_judge.digit_classifier(16, device="cpu", progress=False)
    path = cache.cache_path("digit_classifier", {"size": 16, "version": digit_judge.CLASSIFIER_VERSION,
                                                 "epochs": 30, "seed": 0})
    assert path.exists()
    payload = _io.load(path)
    monkeypatch.setattr(digit_judge, "train_digit_classifier", lambda *a, **k: good)

    # 1. Weights zeroed and the checksum recomputed (a file someone rewrote): the stored
    #    accuracy no longer holds on the held-out split.
    tampered = {"model": {k: (torch.zeros_like(v) if k.startswith("head") else v)
                          for k, v in payload["model"].items()}, "test_accuracy": payload["test_accuracy"]}
    _io.save(tampered, path)
    model = digit_judge.digit_classifier(16, device="cpu", progress=False)
    assert "claims test accuracy" in capsys.readouterr().out
    assert model.test_accuracy >= 0.97

    # 2. A NaN written into a weight (checksum recomputed).
    nan = {"model": dict(payload["model"]), "test_accuracy": payload["test_accuracy"]}
    first = next(iter(nan["model"]))
    nan["model"][first] = nan["model"][first].clone()
    nan["model"][first].view(-1)[0] = float("nan")
    _io.save(nan, path)
    digit_judge.digit_classifier(16, device="cpu", progress=False)
    assert "NaN" in capsys.readouterr().out

    # 3. Bytes flipped on disk: the checksum catches it.
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    digit_judge.digit_classifier(16, device="cpu", progress=False)
    assert "retraining digit_classifier" in capsys.readouterr().out

    # An intact file loads, with the accuracy measured again.
    loaded = digit_judge.digit_classifier(16, device="cpu", progress=False)
    assert capsys.readouterr().out == "" and abs(loaded.test_accuracy - payload["test_accuracy"]) <= 0.01


# ----------------------------------------------------------------- checkpoints and resume
def test_divergence_never_writes_a_nan_checkpoint_and_names_the_way_out(tmp_path):
    ckpt = tmp_path / "gan.pt"
    ring = ring_gaussians(8)
    steps_seen = {"n": 0}
    torch.manual_seed(0)
    G, D = MLPGenerator(4, 2, 16, 1), MLPDiscriminator(2, 16, 1)

    def data(n, generator):  # after 25 steps the generator's weights blow up (between log flushes)
        steps_seen["n"] += 1
        if steps_seen["n"] == 26:
            with torch.no_grad():
                next(G.parameters()).fill_(float("nan"))
        return ring.sample(n, generator=generator)

    with pytest.raises(TrainingDivergedError, match=r"gan\.pt.*resume=False|resume=False.*gan\.pt"):
        train_gan(G, D, data, steps=60, batch_size=16, device="cpu", progress=False, log_every=50,
                  checkpoint=ckpt, checkpoint_every=10)
    saved = _io.load(ckpt)
    assert saved["step"] == 20
    assert all(bool(torch.isfinite(v).all()) for m in saved["modules"].values() for v in m.values())
    # Re-running the cell resumes from the good checkpoint and diverges again with the same way out;
    # resume=False starts over with clean data.
    torch.manual_seed(0)
    G, D = MLPGenerator(4, 2, 16, 1), MLPDiscriminator(2, 16, 1)
    train_gan(G, D, ring, steps=30, batch_size=16, device="cpu", progress=False, checkpoint=ckpt, resume=False)
    assert _io.load(ckpt)["step"] == 30


def test_a_nan_checkpoint_from_elsewhere_is_refused(tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(_model(), rectified_flow_loss, eight_gaussians(), steps=10, checkpoint=ckpt, checkpoint_every=5, **KW)
    state = _io.load(ckpt)
    first = next(iter(state["modules"]["model"]))
    state["modules"]["model"][first].view(-1)[0] = float("nan")
    _io.save(state, ckpt)
    with pytest.raises(CheckpointError, match=r"NaN.*resume=False"):
        fit(_model(), rectified_flow_loss, eight_gaussians(), steps=10, checkpoint=ckpt, **KW)


class _DropoutNet(torch.nn.Module):
    """A velocity model whose Dropout draws from torch's global random stream."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = TimeMLP(hidden=32, depth=2)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x, t):
        return self.drop(self.net(x, t))


def test_resume_is_bit_exact_with_dropout(tmp_path):
    data = eight_gaussians()
    torch.manual_seed(123)
    full = _DropoutNet()
    torch.manual_seed(123)
    fit(full, rectified_flow_loss, data, steps=40, **KW)

    ckpt = tmp_path / "drop.pt"
    calls = {"n": 0}

    def interrupted(n, generator):
        calls["n"] += 1
        if calls["n"] == 26:
            raise KeyboardInterrupt
        return data.sample(n, generator=generator)

    part = _DropoutNet()
    torch.manual_seed(123)
    with pytest.raises(KeyboardInterrupt):
        fit(part, rectified_flow_loss, interrupted, steps=40, checkpoint=ckpt, checkpoint_every=10, **KW)
    torch.manual_seed(999)  # the global stream moves on before the student resumes
    resumed = _DropoutNet()
    fit(resumed, rectified_flow_loss, lambda n, g: data.sample(n, generator=g), steps=40, checkpoint=ckpt,
        checkpoint_every=10, **KW)
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change, word", [
    (dict(weight_decay=0.1), "weight_decay"),
    (dict(grad_clip=1.0), "grad_clip"),
    (dict(lr=5e-4), "lr"),
    (dict(model=lambda: TimeMLP(hidden=24, depth=1)), "shapes"),
    (dict(loss_fn=lambda m, b, g: 2 * rectified_flow_loss(m, b, g)), "loss_fn"),
])
def test_resume_refuses_other_settings(tmp_path, change, word):
    ckpt = tmp_path / "run.pt"
    loss = lambda m, b, g: rectified_flow_loss(m, b, g)  # noqa: E731
    fit(_model(), loss, eight_gaussians(), steps=20, checkpoint=ckpt, checkpoint_every=10, **KW)
    kw = dict(KW)
    kw.update({k: v for k, v in change.items() if k not in ("model", "loss_fn")})
    model = change["model"]() if "model" in change else _model()
    with pytest.raises(CheckpointError, match=rf"{word}.*resume=False"):
        fit(model, change.get("loss_fn", loss), eight_gaussians(), steps=20, checkpoint=ckpt, **kw)
    fit(model, change.get("loss_fn", loss), eight_gaussians(), steps=20, checkpoint=ckpt, resume=False, **kw)


def test_gan_resume_refuses_another_loss(tmp_path):
    ckpt = tmp_path / "gan.pt"
    kw = dict(steps=10, batch_size=16, device="cpu", progress=False, checkpoint=ckpt)
    torch.manual_seed(0)
    train_gan(MLPGenerator(4, 2, 8, 1), MLPDiscriminator(2, 8, 1), ring_gaussians(8), **kw)
    with pytest.raises(CheckpointError, match="g_loss"):
        train_gan(MLPGenerator(4, 2, 8, 1), MLPDiscriminator(2, 8, 1), ring_gaussians(8), g_loss="minimax", **kw)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "foreign_pickle", "other_kind"])
def test_a_damaged_checkpoint_is_one_error_naming_the_file_and_the_way_out(tmp_path, damage):
    ckpt = tmp_path / "run.pt"
    fit(_model(), rectified_flow_loss, eight_gaussians(), steps=10, checkpoint=ckpt, **KW)
    raw = ckpt.read_bytes()
    if damage == "truncate":
        ckpt.write_bytes(raw[:-300])
    elif damage == "flip":  # one bit of a weight: the file still opens, the checksum catches it
        weight = next(iter(_io.load(ckpt)["modules"]["model"].values()))
        i = raw.index(weight.numpy().tobytes()[:64]) + 5
        ckpt.write_bytes(raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1:])
    elif damage == "garbage":
        ckpt.write_bytes(os.urandom(4096))
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "foreign_pickle":
        ckpt.write_bytes(pickle.dumps(os.system))
    else:
        torch.manual_seed(0)
        train_gan(MLPGenerator(4, 2, 8, 1), MLPDiscriminator(2, 8, 1), ring_gaussians(8), steps=2, batch_size=8,
                  device="cpu", progress=False, checkpoint=ckpt, resume=False)
    with pytest.raises(CheckpointError, match=r"run\.pt.*resume=False"):
        fit(_model(), rectified_flow_loss, eight_gaussians(), steps=10, checkpoint=ckpt, **KW)
