"""Every public callable, called with bad arguments, answers clearly.

For each public function, method, class and model ``forward`` there is one valid call
(``SPECS``). The fuzzer replaces one argument at a time by values chosen from the valid
value's kind (a tensor: wrong rank, wrong last size, one row fewer, integer dtype, NaN,
inf, empty, a list, a string; a number: negative, zero, NaN, inf, a string, a bool; a
label tensor: out of range, float; a generator: an int; an object: a string, None; ...)
and requires one of two outcomes:

- a ``ValueError`` raised by cs231n_gen itself (not passed through from torch, NumPy or
  another dependency) whose message names the argument, or
- a normal return whose floating-point numbers are all finite.

Anything else (TypeError, RuntimeError, IndexError, an assert inside torch, a ValueError
from inside NumPy, a NaN in the result) fails the test. ``test_every_public_callable_has_a_spec``
keeps the list complete as the library grows.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import pkgutil
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import cs231n_gen  # noqa: E402
from cs231n_gen import (  # noqa: E402
    cache,
    digit_judge,
    engine,
    fingerprint,
    exercises,
    gan,
    guidance,
    image_metrics,
    metrics,
    oracle,
    paths,
    runtime,
    sampling,
    schedules,
    train,
    viz,
    widgets,
)
from cs231n_gen import threads  # noqa: E402
from cs231n_gen import pretrained  # noqa: E402
from cs231n_gen.data import captioned_shapes as data_shapes  # noqa: E402
from cs231n_gen.data import images as data_images  # noqa: E402
from cs231n_gen.grading import grade as grading_grade  # noqa: E402
from cs231n_gen.grading import gradescope as grading_gradescope  # noqa: E402
from cs231n_gen.grading import notebooks as grading_notebooks  # noqa: E402
from cs231n_gen.grading import release as grading_release  # noqa: E402
from cs231n_gen.grading import sandbox as grading_sandbox  # noqa: E402
from cs231n_gen.grading import screen as grading_screen  # noqa: E402
from cs231n_gen.data import toy2d  # noqa: E402
from cs231n_gen.nn import autoencoder, clip as nn_clip, dcgan, dit, gan_mlp, mlp, video_dit  # noqa: E402
from cs231n_gen import contrastive, tokenizer  # noqa: E402
from cs231n_gen.data import clips as data_clips  # noqa: E402
from cs231n_gen import autoencoding  # noqa: E402
from cs231n_gen import distillation  # noqa: E402
from cs231n_gen import autoregressive  # noqa: E402
from cs231n_gen.nn import gpt as nn_gpt, layers as nn_layers, vq as nn_vq  # noqa: E402
from cs231n_gen.nn import linear_vae  # noqa: E402

PACKAGE_DIR = Path(cs231n_gen.__file__).resolve().parent

# Kept out of the fuzzing, each for a reason.
EXEMPT = {
    "cs231n_gen.engine.TrainingDivergedError": "an exception class",
    **{f"cs231n_gen.{name}": "an input check itself (tests/test_validation.py): it raises the ValueError, naming "
                             "the caller's argument" for name in ("paths.check_path", "paths.check_target",
                                                                  "data.toy2d.check_mixture",
                                                                  "data.toy2d.check_labelled_mixture")},
    "cs231n_gen.engine.CheckpointError": "an exception class",
    "cs231n_gen.engine.run": "the trainers' engine; fuzzed through fit and train_gan, which validate for it",
    "cs231n_gen.engine.train_steps": "the trainers' frame around run; fuzzed through fit, train_gan and "
                                     "train_autoencoder, which validate for it",
    "cs231n_gen.engine.Trainable": "a plain record of what a checkpoint holds, built by the trainers",
    "cs231n_gen.engine.RunStats": "a result record",
    **{f"cs231n_gen.engine.RunRecord{m}": "the trainers' history base, filled by the trainers from run's RunStats "
                                          "and its own saved columns"
       for m in ("", ".took", ".columns", ".load_columns", ".append_rows")},
    "cs231n_gen.gan.Snapshot": "a result record",
    "cs231n_gen.gan.GANHistory": "a result record",
    "cs231n_gen.train.History": "a result record (its smoothed() is fuzzed)",
    "cs231n_gen.runtime.is_quick": "takes no arguments",
    "cs231n_gen.runtime.caching_runs": "takes no arguments",
    "cs231n_gen.fingerprint.fingerprint": "hashes any value; one it cannot read raises NotFingerprintable, "
                                          "a ValueError",
    "cs231n_gen.fingerprint.NotFingerprintable": "an exception class",
    "cs231n_gen.engine.cache_inputs": "fingerprints what fit and train_gan built after validating it",
    "cs231n_gen.sampling.CountCalls.forward": "hands its arguments to the wrapped model, which checks them",
    "cs231n_gen.engine.plain": "turns any value into plain values; every input is valid",
    "cs231n_gen.engine.data_signature": "describes any value; every input is valid",
    "cs231n_gen.engine.callable_signature": "describes any value; every input is valid",
    "cs231n_gen.data.captioned_shapes.Shapes": "a result record",
    "cs231n_gen.data.clips.Clips": "a result record",
    "cs231n_gen.threads.ThreadChoice": "a result record",
    "cs231n_gen.nn.vq.Quantized": "a result record",
    "cs231n_gen.threads.usable_cpus": "takes no arguments",
    "cs231n_gen.threads.switches": "takes no arguments",
    "cs231n_gen.threads.LoadFollower.finish": "takes no arguments",
    "cs231n_gen.threads.LoadFollower.switch": "takes no arguments; without a proposal it raises ValueError "
                                             "(tests/test_threads.py)",
    "cs231n_gen.threads.LoadFollower.for_this_process": "takes the device; checked by torch.device",
    "cs231n_gen.threads.LoadFollower.begin": "takes no arguments",
    "cs231n_gen.threads.trial_running": "takes no arguments",
    "cs231n_gen.threads.held": "takes no arguments",
    "cs231n_gen.threads.FollowedCalls.__call__": "hands its arguments to the wrapped function, which checks them",
    "cs231n_gen.pretrained.reused_from": "takes no arguments",
    "cs231n_gen.nn.layers.LayerNorm.forward": "a layer inside the models, whose forward checks the input",
    "cs231n_gen.nn.layers.Conv2d.forward": "a layer inside the models, whose forward checks the input",
    "cs231n_gen.nn.layers.ConvTranspose2d.forward": "a layer inside the models, whose forward checks the input",
    "cs231n_gen.nn.layers.GroupNorm.forward": "a layer inside the models, whose forward checks the input",
    **{f"cs231n_gen.nn.layers.{name}": "a transformer piece inside the models' forwards, which check the input "
                                       "once (fuzzed through DiT, VideoDiT and TextEncoder)"
       for name in ("modulate", "attend", "attention_weights", "Attention.forward", "FinalLayer.forward",
                    "embed_context")},
    "cs231n_gen.cli.main": "argparse checks the command line; a ValueError becomes exit status 2 with its message",
    "cs231n_gen.grading.kernel.seal": "takes no arguments; runs only in the grader's own notebook cell",
    "cs231n_gen.grading.kernel.serve": "called only from the grader's own cells, with values it wrote",
    **{f"cs231n_gen.grading.{name}": "the grader's channel: frames it writes itself, or untrusted bytes that "
                                     "decode refuses with BadMessage (tests/test_grading_sandbox.py)"
       for name in ("wire.leaves", "wire.tensors_in", "wire.send_frame", "wire.recv_frame", "wire.send_call",
                    "wire.recv_call", "wire.encode",
                    "wire.decode", "wire.send_data", "wire.recv_data", "remote.Verdict", "remote.StudentFunction",
                    "remote.StudentFunction.__call__", "remote.Listener", "remote.Listener.close")},
    **{f"cs231n_gen.grading.{name}": "internal to the sandbox: called by grade with the release's own references "
                                     "and paths it made"
       for name in ("sandbox.bwrap_path", "sandbox.bwrap_problem", "sandbox.group_name", "sandbox.work_prefix",
                    "sandbox.sweep_stale", "sandbox.redacted_source", "sandbox.redactions", "sandbox.bwrap_command",
                    "sandbox.ControlGroup", "sandbox.ControlGroup.join",
                    "sandbox.ControlGroup.close", "sandbox.apply_limits")},
    **{f"cs231n_gen.grading.{name}": "internal to the autograder: runs inside Gradescope on the files export wrote"
       for name in ("gradescope.build_wheel", "gradescope.pinned_requirements", "gradescope.autograder_root",
                    "gradescope.sandbox_here", "gradescope.grade_folder", "gradescope.run", "gradescope.main",
                    "gradescope.results_table")},
    **{f"cs231n_gen.grading.{name}": "internal to the grader: called by release and grade on what they validated"
       for name in ("grade.Submission", "grade.Limits", "grade.RunOutcome", "grade.build_graded", "grade.run_graded",
                    "grade.judge", "grade.grade_submission", "grade.write_gradebook", "grade.summary_path",
                    "notebooks.Exercise", "notebooks.write_notebook", "notebooks.source_of", "notebooks.tags_of",
                    "notebooks.cell_kind", "notebooks.cell_digest", "notebooks.defined_functions",
                    "notebooks.ensure_cell_ids", "notebooks.exercises_of", "notebooks.setup_cell",
                    "release.student_copy")},
}


# ------------------------------------------------------------------------------ fixtures
def _g(seed=0):
    return torch.Generator().manual_seed(seed)


MIX = toy2d.eight_gaussians()
LAB = toy2d.overlapping_classes()
X = MIX.sample(16, generator=_g(1))
Z = torch.randn(16, 2, generator=_g(2))
T = torch.rand(16, generator=_g(3)) * 0.9 + 0.05
Y = torch.arange(16) % 3
IMG = torch.rand(6, 1, 16, 16, generator=_g(4)) * 2 - 1
PATH = paths.vp_cosine()


def _tmlp(classes=None):
    torch.manual_seed(0)
    return mlp.TimeMLP(hidden=16, depth=1, num_classes=classes)


def _history():
    h = train.History()
    h.loss = [1.0, 0.8, 0.5]
    h.lr = [1e-3] * 3
    return h


def _gan_history():
    G = gan_mlp.MLPGenerator(4, 2, 8, 1)
    return gan.train_gan(G, gan_mlp.MLPDiscriminator(2, 8, 1), MIX, steps=2, batch_size=8, device="cpu",
                         progress=False, snapshot_every=1, snapshot_n=10, snapshot_grid=(3.0, 4), log_every=1)


def _axes():
    return plt.figure().add_subplot(1, 1, 1)


def _player():
    return widgets.FramePlayer(2, lambda ax, i: ax.plot([0, i]), lambda i: f"frame {i}", size=(1, 1))


def _slider():
    import ipywidgets

    return ipywidgets.IntSlider()


@pytest.fixture(scope="module")
def judge(digit_cache):
    return digit_judge.DigitJudge(16, device="cpu", progress=False)


# One valid call per callable: name -> () -> (callable, kwargs). Names are the public paths.
def specs(judge):
    cond = _tmlp(3)
    unc = _tmlp()
    G, D = gan_mlp.MLPGenerator(4, 2, 8, 1), gan_mlp.MLPDiscriminator(2, 8, 1)
    dcg, dcd = dcgan.DCGenerator(8, 16, 4), dcgan.DCDiscriminator(16, 4)
    gauss = gan_mlp.GaussianGenerator(2)
    CG = gan_mlp.ConditionalMLPGenerator(3, noise_dim=4, out_dim=2, hidden=8, depth=1)
    LV, X4 = linear_vae.LinearVAE(4, 2), torch.randn(16, 4, generator=_g(31))
    traj = torch.randn(4, 16, 2, generator=_g(5))
    times = schedules.time_grid(3)
    loss = lambda m, b, g: paths.rectified_flow_loss(m, b, g)  # noqa: E731
    s = {
        # runtime
        "runtime.get_device": (runtime.get_device, dict(prefer="cpu")),
        "runtime.seed_everything": (runtime.seed_everything, dict(seed=3)),
        "runtime.budget": (runtime.budget, dict(full=10, quick=2)),
        "runtime.device_of": (runtime.device_of, dict(model=unc)),
        # data
        "data.images.digits": (data_images.digits, dict(size=8, split="test")),
        "data.toy2d.GaussianMixture": (toy2d.GaussianMixture, dict(means=torch.zeros(2, 2), std=0.5,
                                                                   weights=torch.ones(2))),
        "data.toy2d.GaussianMixture.to": (MIX.to, dict(device="cpu", dtype=torch.float64)),
        "data.toy2d.GaussianMixture.sample": (MIX.sample, dict(n=5, generator=_g(), return_labels=True)),
        "data.toy2d.GaussianMixture.component_log_prob": (MIX.component_log_prob, dict(x=X)),
        "data.toy2d.GaussianMixture.log_prob": (MIX.log_prob, dict(x=X)),
        "data.toy2d.GaussianMixture.posterior": (MIX.posterior, dict(x=X)),
        "data.toy2d.eight_gaussians": (toy2d.eight_gaussians, dict(radius=2.0, std=0.1)),
        "data.toy2d.ring_gaussians": (toy2d.ring_gaussians, dict(n_modes=5, radius=2.0, std=0.1)),
        "data.toy2d.grid_gaussians": (toy2d.grid_gaussians, dict(n_side=3, spacing=2.0, std=0.05)),
        "data.toy2d.TwoMoons": (toy2d.TwoMoons, dict(noise=0.05, scale=1.5)),
        "data.toy2d.Checkerboard": (toy2d.Checkerboard, dict(side=2.0)),
        "data.toy2d.Spiral": (toy2d.Spiral, dict(turns=1.5, radius=2.5, noise=0.08)),
        "data.toy2d.moons": (toy2d.moons, dict(noise=0.05, scale=1.5)),
        "data.toy2d.checkerboard": (toy2d.checkerboard, dict(side=2.0)),
        "data.toy2d.spiral": (toy2d.spiral, dict(turns=1.5, radius=2.5, noise=0.08)),
        "data.toy2d.TwoMoons.sample": (toy2d.moons().sample, dict(n=5, generator=_g(), return_labels=False)),
        "data.toy2d.TwoMoons.to": (toy2d.moons().to, dict(device="cpu", dtype=torch.float64)),
        "data.toy2d.LabelledMixture": (toy2d.LabelledMixture, dict(mixture=MIX, component_classes=torch.arange(8) % 2)),
        "data.toy2d.LabelledMixture.to": (LAB.to, dict(device="cpu", dtype=torch.float64)),
        "data.toy2d.LabelledMixture.class_mixture": (LAB.class_mixture, dict(y=1)),
        "data.toy2d.LabelledMixture.sample": (LAB.sample, dict(n=5, generator=_g())),
        "data.toy2d.LabelledMixture.sample_class": (LAB.sample_class, dict(y=1, n=5, generator=_g())),
        "data.toy2d.LabelledMixture.sample_sharpened": (LAB.sample_sharpened, dict(y=1, n=5, w=1.0, generator=_g())),
        "data.toy2d.LabelledMixture.class_posterior": (LAB.class_posterior, dict(x=X)),
        "data.toy2d.overlapping_classes": (toy2d.overlapping_classes, dict(std=0.5)),
        # paths
        "paths.interpolate": (paths.interpolate, dict(x=X, z=Z, t=T)),
        "paths.velocity_target": (paths.velocity_target, dict(x=X, z=Z)),
        "paths.rectified_flow_loss": (paths.rectified_flow_loss, dict(model=unc, x=X, generator=_g(), z=Z, t=T)),
        "paths.DiffusionPath": (paths.DiffusionPath, dict(name="p", a=lambda t: 1 - t, b=lambda t: t,
                                                          da=lambda t: -torch.ones_like(t),
                                                          db=lambda t: torch.ones_like(t))),
        "paths.DiffusionPath.a": (PATH.a, dict(t=T)),
        "paths.DiffusionPath.b": (PATH.b, dict(t=T)),
        "paths.DiffusionPath.da": (PATH.da, dict(t=T)),
        "paths.DiffusionPath.db": (PATH.db, dict(t=T)),
        "paths.DiffusionPath.snr": (PATH.snr, dict(t=T)),
        "paths.DiffusionPath.t_at_log_snr": (PATH.t_at_log_snr, dict(log_snr=torch.tensor([-1.0, 0.0, 2.0]))),
        "paths.DiffusionPath.interpolate": (PATH.interpolate, dict(x=X, z=Z, t=T)),
        "paths.DiffusionPath.target_coefficients": (PATH.target_coefficients, dict(target="v", t=T)),
        "paths.DiffusionPath.target": (PATH.target, dict(target="v", x=X, z=Z, t=T)),
        "paths.DiffusionPath.to_x_eps": (PATH.to_x_eps, dict(y=Z, target="eps", x_t=X, t=T)),
        "paths.DiffusionPath.convert": (PATH.convert, dict(y=Z, source="eps", dest="v", x_t=X, t=T)),
        "paths.DiffusionPath.loss": (PATH.loss, dict(model=unc, x=X, target="v", generator=_g(), z=Z, t=T,
                                                     t_range=(0.0, 1.0))),
        "paths.rectified_flow": (paths.rectified_flow, {}),
        "paths.vp_cosine": (paths.vp_cosine, {}),
        "paths.vp_linear": (paths.vp_linear, dict(beta_min=0.1, beta_max=20.0)),
        "paths.ve": (paths.ve, dict(sigma_min=0.01, sigma_max=50.0)),
        # schedules
        "schedules.uniform_t": (schedules.uniform_t, dict(n=4, generator=_g(), device="cpu")),
        "schedules.time_grid": (schedules.time_grid, dict(steps=4, device="cpu", dtype=torch.float64)),
        "schedules.logit_normal_t": (schedules.logit_normal_t, dict(n=4, m=0.0, s=1.0, generator=_g(), device="cpu")),
        "schedules.logit_normal_density": (schedules.logit_normal_density, dict(t=T, m=0.0, s=1.0)),
        "schedules.shift_time": (schedules.shift_time, dict(t=T, shift=3.0)),
        "schedules.shifted_time_grid": (schedules.shifted_time_grid, dict(steps=4, shift=3.0, device="cpu",
                                                                          dtype=torch.float32)),
        "schedules.snr_matching_shift": (schedules.snr_matching_shift, dict(low_pixels=64, high_pixels=1024)),
        "schedules.TimeSampler": (schedules.TimeSampler, dict(kind="logit_normal", m=0.0, s=1.0, shift=2.0)),
        "schedules.TimeSampler.__call__": (schedules.TimeSampler("logit_normal"), dict(n=4, generator=_g(),
                                                                                      device="cpu")),
        "schedules.TimeSampler.density": (schedules.TimeSampler("logit_normal", shift=2.0).density, dict(t=T)),
        "schedules.block_snr": (schedules.block_snr, dict(images=IMG, t=0.5, block=2, generator=_g())),
        # guidance
        "guidance.drop_labels": (guidance.drop_labels, dict(y=Y, p_uncond=0.5, null_label=3, generator=_g())),
        "guidance.conditional_rf_loss": (guidance.conditional_rf_loss, dict(model=cond, x=X, y=Y, p_uncond=0.5,
                                                                            generator=_g(), z=Z, t=T)),
        "guidance.cfg_velocity": (guidance.cfg_velocity, dict(model=cond, x_t=X, t=T, y=Y, w=2.0)),
        "guidance.Guided": (guidance.Guided, dict(model=cond, y=Y, w=2.0)),
        "guidance.Guided.forward": (guidance.Guided(cond, Y, 2.0), dict(x_t=X, t=T)),
        # sampling
        "sampling.euler": (sampling.euler, dict(model=unc, x=Z, steps=3, return_trajectory=True)),
        "sampling.CountCalls": (sampling.CountCalls, dict(model=unc)),
        "sampling.CountCalls.reset": (sampling.CountCalls(unc).reset, dict()),
        "sampling.probability_flow": (sampling.probability_flow, dict(model=oracle.Oracle(MIX, PATH, "eps"), x=Z,
                                                                      steps=3, path=PATH, target="eps",
                                                                      method="heun", t_start=0.99, t_end=0.0)),
        "sampling.ddim": (sampling.ddim, dict(model=oracle.Oracle(MIX, PATH, "v"), x=Z, steps=3, path=PATH,
                                              target="v", t_start=0.99, t_end=0.0)),
        "sampling.ddpm": (sampling.ddpm, dict(model=oracle.Oracle(MIX, PATH, "x"), x=Z, steps=3, path=PATH, target="x",
                                              generator=_g(), t_start=0.99, t_end=0.0)),
        "sampling.reverse_sde": (sampling.reverse_sde, dict(model=oracle.Oracle(MIX, paths.vp_linear(), "eps"), x=Z,
                                                            steps=5, path=paths.vp_linear(), target="eps",
                                                            generator=_g(), t_start=0.99, t_end=0.0, denoise=True)),
        "sampling.log_snr_times": (sampling.log_snr_times, dict(path=PATH, steps=4, t_start=0.99, t_last=0.01)),
        "sampling.langevin": (sampling.langevin, dict(model=oracle.Oracle(MIX, paths.ve(), "score"), x=Z * 50,
                                                      levels=3, steps_per_level=2, path=paths.ve(), target="score",
                                                      step_scale=0.5, generator=_g(), t_start=0.99, t_end=0.01,
                                                      denoise=True)),
        # oracle
        "oracle.component_posterior": (oracle.component_posterior, dict(mixture=MIX, x_t=X, t=T)),
        "oracle.posterior_mean": (oracle.posterior_mean, dict(mixture=MIX, x_t=X, t=T)),
        "oracle.noise_mean": (oracle.noise_mean, dict(mixture=MIX, x_t=X, t=T)),
        "oracle.velocity": (oracle.velocity, dict(mixture=MIX, x_t=X, t=T)),
        "oracle.conditional_variance": (oracle.conditional_variance, dict(mixture=MIX, x_t=X, t=T)),
        "oracle.irreducible_loss": (oracle.irreducible_loss, dict(mixture=MIX, t=torch.tensor([0.2, 0.8]), n=64,
                                                                  generator=_g())),
        "oracle.predict": (oracle.predict, dict(mixture=MIX, x_t=X, t=T, path=PATH, target="score")),
        "oracle.Oracle": (oracle.Oracle, dict(mixture=MIX, path=PATH, target="eps")),
        "oracle.Oracle.forward": (oracle.Oracle(MIX, PATH, "eps"), dict(x_t=X, t=T)),
        "oracle.denoising_error": (oracle.denoising_error, dict(mixture=MIX, t=torch.tensor([0.2, 0.8]), n=64,
                                                                generator=_g())),
        "oracle.VelocityOracle": (oracle.VelocityOracle, dict(mixture=MIX)),
        "oracle.VelocityOracle.forward": (oracle.VelocityOracle(MIX), dict(x_t=X, t=T)),
        "oracle.affine_loss": (oracle.affine_loss, dict(mixture=MIX, t=torch.tensor([0.2, 0.8]), n=64,
                                                        generator=_g())),
        "oracle.class_velocity": (oracle.class_velocity, dict(labelled=LAB, x_t=X, t=T, y=Y)),
        "oracle.class_conditional_variance": (oracle.class_conditional_variance, dict(labelled=LAB, x_t=X, t=T, y=Y)),
        "oracle.guided_velocity": (oracle.guided_velocity, dict(labelled=LAB, x_t=X, t=T, y=Y, w=2.0)),
        "oracle.class_log_posterior": (oracle.class_log_posterior, dict(labelled=LAB, x_t=X, t=T)),
        "oracle.classifier_guided_velocity": (oracle.classifier_guided_velocity, dict(labelled=LAB, x_t=X, t=T, y=Y,
                                                                                      scale=2.0)),
        # metrics
        "metrics.wasserstein2": (metrics.wasserstein2, dict(a=X, b=Z)),
        "metrics.evaluation_sets": (metrics.evaluation_sets, dict(data=MIX, n_sets=2, n_points=10, generator=_g())),
        "metrics.path_straightness": (metrics.path_straightness,
                                      dict(trajectory=torch.stack([Z, (Z + X) / 2 + 0.3, X]))),
        "metrics.interpolation_smoothness": (metrics.interpolation_smoothness,
                                             dict(frames=torch.stack([Z, (Z + X) / 2, X]))),
        "metrics.nearest_neighbor_distances": (metrics.nearest_neighbor_distances, dict(items=X, reference=Z,
                                                                                        batch_size=4)),
        "metrics.memorization": (metrics.memorization, dict(samples=X, train=Z, held_out=X.flip(0) + 0.1,
                                                            copy_threshold=0.3)),
        "metrics.wasserstein2_ratio": (metrics.wasserstein2_ratio, dict(samples=X, data=Z, fresh=X.flip(0) + 0.1)),
        "metrics.sliced_wasserstein": (metrics.sliced_wasserstein, dict(a=X, b=Z, n_projections=8, generator=_g())),
        "metrics.mmd": (metrics.mmd, dict(a=X, b=Z, bandwidths=(0.5, 1.0))),
        "metrics.excess_loss": (metrics.excess_loss, dict(model=unc, mixture=MIX, n=32, t=0.5, generator=_g(),
                                                          batch_size=16)),
        "metrics.mode_coverage": (metrics.mode_coverage, dict(samples=X, means=MIX.means, std=0.1, radius=3.0)),
        "metrics.class_conditional_scores": (metrics.class_conditional_scores, dict(labelled=LAB, samples=X, labels=Y,
                                                                                    generator=_g())),
        "metrics.branch_errors": (metrics.branch_errors, dict(model=cond, labelled=LAB, n=32, generator=_g(),
                                                              batch_size=16)),
        # models
        "nn.mlp.FourierTimeEmbedding": (mlp.FourierTimeEmbedding, dict(dim=8, max_frequency=50.0)),
        "nn.mlp.FourierTimeEmbedding.forward": (mlp.FourierTimeEmbedding(8), dict(t=T)),
        "nn.mlp.TimeMLP": (mlp.TimeMLP, dict(dim=2, hidden=8, depth=1, time_dim=8, num_classes=3)),
        "nn.mlp.TimeMLP.forward": (cond, dict(x=X, t=T, y=Y)),
        "nn.gan_mlp.MLPGenerator": (gan_mlp.MLPGenerator, dict(z_dim=4, out_dim=2, hidden=8, depth=1)),
        "nn.gan_mlp.MLPGenerator.forward": (G, dict(z=torch.randn(5, 4, generator=_g()))),
        "nn.gan_mlp.MLPDiscriminator": (gan_mlp.MLPDiscriminator, dict(in_dim=2, hidden=8, depth=1)),
        "nn.gan_mlp.MLPDiscriminator.forward": (D, dict(x=X)),
        "nn.gan_mlp.ConditionalMLPGenerator": (gan_mlp.ConditionalMLPGenerator,
                                               dict(num_classes=3, noise_dim=4, out_dim=2, hidden=8, depth=1,
                                                    class_probs=torch.tensor([0.2, 0.3, 0.5]))),
        "nn.gan_mlp.ConditionalMLPGenerator.forward": (CG, dict(z=torch.randn(5, 5, generator=_g()))),
        "nn.gan_mlp.ConditionalMLPGenerator.generate": (CG.generate, dict(noise=torch.randn(5, 4, generator=_g()),
                                                                         y=torch.tensor([0, 1, 2, 0, 1]))),
        "nn.linear_vae.LinearVAE": (linear_vae.LinearVAE, dict(data_dim=4, latent_dim=2)),
        **{f"nn.linear_vae.LinearVAE.{m}": (getattr(LV, m), dict(x=X4))
           for m in ("reconstruction", "kl", "elbo", "log_likelihood", "posterior", "encoder_distribution", "forward")},
        "nn.linear_vae.LinearVAE.marginal": (LV.marginal, dict()),
        "nn.linear_vae.ppca_log_likelihood": (linear_vae.ppca_log_likelihood, dict(x=X4, latent_dim=2)),
        "nn.gan_mlp.GaussianGenerator": (gan_mlp.GaussianGenerator, dict(dim=2, mean=0.5, std=2.0)),
        "nn.gan_mlp.GaussianGenerator.forward": (gauss, dict(z=Z)),
        "nn.gan_mlp.GaussianGenerator.log_prob": (gauss.log_prob, dict(x=X)),
        "nn.gan_mlp.GaussianGenerator.sample": (gauss.sample, dict(n=5, generator=_g())),
        "nn.dcgan.adain": (dcgan.adain, dict(x=torch.randn(2, 3, 4, 4, generator=_g()), w=torch.rand(2, 3) + 0.5,
                                             b=torch.randn(2, 3, generator=_g()), eps=1e-5)),
        "nn.dcgan.AdaIN": (dcgan.AdaIN, dict(channels=3, style_dim=4)),
        "nn.dcgan.AdaIN.forward": (dcgan.AdaIN(3, 4), dict(x=torch.randn(2, 3, 4, 4, generator=_g()),
                                                           style=torch.randn(2, 4, generator=_g()))),
        "nn.dcgan.DCGenerator": (dcgan.DCGenerator, dict(z_dim=8, size=16, width=4, channels=1)),
        "nn.dcgan.DCGenerator.forward": (dcg, dict(z=torch.randn(3, 8, generator=_g()))),
        "nn.dcgan.DCDiscriminator": (dcgan.DCDiscriminator, dict(size=16, width=4, channels=1)),
        "nn.dcgan.DCDiscriminator.forward": (dcd, dict(x=IMG)),
        # gan
        "gan.discriminator_loss": (gan.discriminator_loss, dict(real_logits=T, fake_logits=-T)),
        "gan.value": (gan.value, dict(real_logits=T, fake_logits=-T)),
        "gan.minimax_generator_loss": (gan.minimax_generator_loss, dict(fake_logits=T)),
        "gan.nonsaturating_generator_loss": (gan.nonsaturating_generator_loss, dict(fake_logits=T)),
        "gan.generator_loss": (gan.generator_loss, dict(fake_logits=T, kind="minimax")),
        "gan.optimal_discriminator": (gan.optimal_discriminator, dict(log_p_data=-T, log_p_model=-2 * T)),
        "gan.js_divergence": (gan.js_divergence, dict(p=MIX, q=gauss, n=64, generator=_g())),
        "gan.optimal_value": (gan.optimal_value, dict(p_data=MIX, p_model=gauss, n=64, generator=_g())),
        "gan.sample_latents": (gan.sample_latents, dict(generator_net=G, n=4, generator=_g(), device="cpu")),
        "gan.sample": (gan.sample, dict(generator_net=G, n=5, generator=_g(), batch_size=2)),
        "gan.decision_grid": (gan.decision_grid, dict(lim=3.0, res=4, device="cpu")),
        "gan.GANSettings": (gan.GANSettings, dict(batch_size=8, lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.9), d_steps=1,
                                                  r1_gamma=0.1, g_loss="minimax")),
        "gan.train_gan": (gan.train_gan, dict(generator_net=G, discriminator_net=D, data=MIX, steps=2, batch_size=8,
                                              device="cpu", progress=False, snapshot_every=1, snapshot_n=4,
                                              snapshot_grid=(3.0, 4), log_every=1, lr_g=1e-3, r1_gamma=0.1)),
        # training
        "engine.Loop": (engine.Loop, dict(steps=3, log_every=1, checkpoint=None, resume=True, progress=False,
                                          desc="x")),
        "engine.prepare": (engine.prepare, dict(device="cpu", seed=3)),
        "engine.lr_factor": (engine.lr_factor, dict(schedule="cosine", step=3, steps=10, warmup=2)),
        "engine.batch_source": (engine.batch_source, dict(data=X, device="cpu")),
        "engine.model_signature": (engine.model_signature, dict(module=unc)),
        "train.FitSettings": (train.FitSettings, dict(batch_size=8, lr=1e-3, lr_schedule="constant", warmup=1,
                                                      weight_decay=0.1, grad_clip=1.0, seed=1)),
        "train.History.smoothed": (_history().smoothed, dict(window=2)),
        "train.fit": (train.fit, dict(model=unc, loss_fn=loss, data=X, steps=2, batch_size=8, lr=1e-3,
                                      weight_decay=0.1, grad_clip=1.0, device="cpu", progress=False, log_every=1)),
        # cache and judges
        "pretrained.folder": (pretrained.folder, {}),
        "pretrained.mode": (pretrained.mode, {}),
        "pretrained.available": (pretrained.available, {}),
        "pretrained.manifest": (pretrained.manifest, dict(name="no_such_model")),
        "pretrained.record": (pretrained.record, dict(name="no_such_model", w2=0.5)),
        "cache.cache_dir": (cache.cache_dir, {}),
        "cache.cache_key": (cache.cache_key, dict(config={"a": 1})),
        "cache.cache_path": (cache.cache_path, dict(name="thing", config={"a": 1})),
        "cache.load": (cache.load, dict(name="thing", config={"a": 1}, verify=None)),
        "cache.store": (cache.store, dict(name="fuzz_thing", config={"a": 1}, payload={"w": torch.ones(2)})),
        "digit_judge.DigitClassifier": (digit_judge.DigitClassifier, dict(size=16)),
        "digit_judge.DigitClassifier.forward": (judge.classifier, dict(x=IMG)),
        "digit_judge.DigitClassifier.features": (judge.classifier.features, dict(x=IMG)),
        "digit_judge.accuracy": (digit_judge.accuracy, dict(model=judge.classifier, images=IMG,
                                                                labels=torch.arange(6), batch_size=4)),
        "digit_judge.train_digit_classifier": (digit_judge.train_digit_classifier, dict(size=8, epochs=1,
                                                                                            seed=0, device="cpu",
                                                                                            progress=False)),
        "digit_judge.digit_classifier": (digit_judge.digit_classifier, dict(size=16, device="cpu", retrain=False,
                                                                                progress=False)),
        "image_metrics.frechet_distance": (image_metrics.frechet_distance, dict(features_a=X, features_b=Z)),
        "digit_judge.DigitJudge": (digit_judge.DigitJudge, dict(size=16, device="cpu", progress=False)),
        "digit_judge.DigitJudge.features": (judge.features, dict(images=IMG)),
        "digit_judge.DigitJudge.predict": (judge.predict, dict(images=IMG)),
        "digit_judge.DigitJudge.evaluate": (judge.evaluate, dict(images=IMG, labels=torch.arange(6),
                                                                   min_fraction=0.1, confidence=0.5)),
        # figures
        "viz.scatter": (viz.scatter, dict(ax=_axes(), points=X, color="r", lim=3.0, title="t", s=2.0, alpha=0.5)),
        "viz.class_scatter": (viz.class_scatter, dict(ax=_axes(), points=X, labels=Y, lim=3.0, title="t")),
        "viz.curves": (viz.curves, dict(ax=_axes(), x=[0.0, 1.0, 2.0], series={"a": [1.0, 2.0, 3.0]}, xlabel="w",
                                        ylabel="y", title="t", logy=True, reference=(1.0, "real"),
                                        styles={"a": ("o-", "k")}, ms=3.0)),
        "viz.plot_density": (viz.plot_density, dict(ax=_axes(), mixture=MIX, lim=3.0, resolution=10)),
        "viz.plot_samples": (viz.plot_samples, dict(panels={"a": X, "b": Z}, lim=3.0, size=1.0)),
        "viz.plot_field": (viz.plot_field, dict(ax=_axes(), field=unc, t=0.5, lim=3.0, n=4, background=X)),
        "viz.compare_fields": (viz.compare_fields, dict(fields={"m": unc}, times=[0.2, 0.8], lim=3.0, n=4, size=1.0)),
        "viz.plot_trajectories": (viz.plot_trajectories, dict(ax=_axes(), trajectory=traj, n_show=5, lim=3.0,
                                                              reference=X)),
        "viz.plot_snapshots": (viz.plot_snapshots, dict(trajectory=traj, times=times, at=(1.0, 0.0), lim=3.0,
                                                        size=1.0)),
        "viz.plot_loss": (viz.plot_loss, dict(history=_history(), ax=_axes(), window=2, label="l")),
        "viz.plot_decision": (viz.plot_decision, dict(ax=_axes(), decision=torch.rand(4, 4, generator=_g()), lim=3.0,
                                                      alpha=0.5)),
        "viz.plot_gan_snapshot": (viz.plot_gan_snapshot, dict(ax=_axes(), snapshot=_gan_history().snapshots[-1],
                                                              reference=X, lim=3.0, n_show=5)),
        "viz.step_axis": (viz.step_axis, dict(ax=_axes(), counts=[1, 2, 5], label="steps")),
        "viz.image_grid": (viz.image_grid, dict(ax=_axes(), images=IMG, per_row=3, title="t", pad=1)),
        "viz.captioned_grid": (viz.captioned_grid, dict(ax=_axes(), images=IMG, captions=["a red circle"] * 6,
                                                        per_row=3, wrap=10, fontsize=6.0)),
        "viz.captioned_grid_aspect": (viz.captioned_grid_aspect, dict(captions=["a b c"] * 6, h=16, w=16, per_row=3,
                                                                      wrap=10)),
        "viz.label_columns": (viz.label_columns, dict(ax=_axes(), labels=["0", "1", "2"], tile=16, pad=1, title="t")),
        "viz.label_rows": (viz.label_rows, dict(ax=_axes(), labels=["a", "b"], tile=16, pad=1, fontsize=8.0)),
        # widgets
        "widgets.player.FramePlayer": (widgets.FramePlayer, dict(n_frames=2, draw=lambda ax, i: ax.plot([0, i]),
                                                          label=lambda i: str(i), size=(1, 1), interval=100)),
        "widgets.player.FramePlayer.frame_png": (_player().frame_png, dict(i=1)),
        "widgets.player.FramePlayer.show_frame": (_player().show_frame, dict(i=1)),
        "widgets.rectified_flow.flow_player": (widgets.flow_player,
                                               dict(trajectory=traj, times=times, reference=X, lim=3.0, n_show=5,
                                                    static=False)),
        "widgets.rectified_flow.interpolation_explorer": (widgets.interpolation_explorer,
                                                          dict(x=X, z=Z, n_frames=3, lim=3.0, n_pairs=4,
                                                               static=False)),
        "widgets.gans.gan_training_player": (widgets.gan_training_player, dict(history=_gan_history(), reference=X,
                                                                          lim=3.0, n_show=5, static=False)),
        "widgets.gans.latent_interpolation": (widgets.latent_interpolation, dict(generator_net=dcg,
                                                                            z0=torch.randn(2, 8, generator=_g()),
                                                                            z1=torch.randn(2, 8, generator=_g(1)),
                                                                            n_frames=3, per_row=2, static=False)),
        "widgets.guidance.guidance_explorer": (widgets.guidance_explorer,
                                               dict(ws=[0.0, 1.0], samples=torch.stack([X, Z]),
                                                                      labels=Y, reference=X, lim=3.0, static=False)),
        "widgets.schedules.time_sampler_explorer": (widgets.time_sampler_explorer, dict(reference=(T.sort().values, T),
                                                                              reference_label="d", static=False)),
        "widgets.generalized.path_explorer": (widgets.path_explorer,
                                              dict(mixture=MIX, paths={"cos": PATH}, targets=("eps",),
                                                              lim=3.0, static=False)),
        "widgets.player.live_figure": (widgets.live_figure, dict(controls=[_slider()], draw=lambda ax: ax.plot([0, 1]),
                                                                 size=(1.0, 1.0))),
        "widgets.player.frame_picks": (widgets.frame_picks, dict(n_frames=9, count=3)),
        "widgets.player.static_strip": (widgets.static_strip, dict(panels=2, draw=lambda ax, k: ax.plot([0, k]),
                                                                   title="t", panel_size=(1.0, 1.0), rows=1)),
        "runtime.start_lecture": (runtime.start_lecture, dict(seed=0, device="cpu")),
        "runtime.median_seconds": (runtime.median_seconds, dict(fn=lambda: None, repeats=2, warmup=0, device="cpu",
                                                                at_least_s=0.0)),
        "runtime.timing_claims_apply": (runtime.timing_claims_apply, dict(device="cpu")),
        "runtime.training_step_seconds": (runtime.training_step_seconds,
                                          dict(model=unc, loss=lambda m: m(X, T).square().mean(), repeats=2,
                                               device="cpu", at_least_s=0.0)),
        "fingerprint.code_digest": (fingerprint.code_digest, dict(fn=lambda x: x + 1, h=hashlib.sha256())),
        "fingerprint.source_text": (fingerprint.source_text, dict(fn=lambda x: x + 1)),
    }
    for name, check in exercises.CHECKS.items():  # only bad values are tried (a valid call needs a solution)
        s[f"{check.__module__.removeprefix('cs231n_gen.')}.{name}"] = (check, dict(student_fn=None))
    s |= {
        "data.captioned_shapes.parse_caption": (data_shapes.parse_caption, dict(text="a small red circle")),
        "data.captioned_shapes.caption": (data_shapes.caption, dict(shape=1, color=2, size=1, position=4,
                                                                    phrasing=2)),
        "data.captioned_shapes.shapes": (data_shapes.shapes, dict(n=3, size=32, generator=_g(), exclude=[(0, 1)])),
        "data.captioned_shapes.coverage": (data_shapes.coverage, dict(shape=torch.tensor([0, 2]),
                                                                    cx=torch.tensor([8.0, 20.0]),
                                                                    cy=torch.tensor([8.0, 20.0]),
                                                                    r=torch.tensor([3.0, 5.0]), size=32,
                                                                    supersample=2)),
        "image_metrics.shape_attributes": (image_metrics.shape_attributes,
                                           dict(images=data_shapes.shapes(3, generator=_g(1)).images)),
    }
    torch.manual_seed(0)
    vae, critic = autoencoder.VAE(latent_channels=2, width=4), autoencoder.PatchDiscriminator(width=4)
    rgb = data_shapes.shapes(4, size=16, generator=_g(2)).images
    mean, log_var = vae.encode(rgb)
    x_hat = vae.decode(mean)
    rec = (x_hat - rgb).square().mean()
    g_loss = gan.hinge_generator_loss(critic(x_hat))
    latent_images = torch.randn(4, 2, 4, 4, generator=_g(3))
    s |= {
        "nn.autoencoder.ResBlock": (autoencoder.ResBlock, dict(channels=4)),
        "nn.autoencoder.ResBlock.forward": (autoencoder.ResBlock(4), dict(x=torch.randn(2, 4, 4, 4, generator=_g()))),
        "nn.autoencoder.Encoder": (autoencoder.Encoder, dict(in_channels=3, latent_channels=2, width=4, downsample=4)),
        "nn.autoencoder.Encoder.forward": (vae.encoder, dict(x=rgb)),
        "nn.autoencoder.Decoder": (autoencoder.Decoder, dict(latent_channels=2, out_channels=3, width=4, upsample=4)),
        "nn.autoencoder.Decoder.forward": (vae.decoder, dict(z=latent_images)),
        "nn.autoencoder.VAE": (autoencoder.VAE, dict(in_channels=3, latent_channels=2, width=4, downsample=4)),
        "nn.autoencoder.VAE.latent_shape": (vae.latent_shape, dict(height=16, width=8)),
        "nn.autoencoder.VAE.encode": (vae.encode, dict(x=rgb)),
        "nn.autoencoder.VAE.sample": (vae.sample,
                                      dict(mean=latent_images, log_var=latent_images * 0.1, generator=_g())),
        "nn.autoencoder.VAE.decode": (vae.decode, dict(z=latent_images)),
        "nn.autoencoder.VAE.forward": (vae, dict(x=rgb, generator=_g())),
        "nn.autoencoder.PatchDiscriminator": (autoencoder.PatchDiscriminator, dict(in_channels=3, width=4)),
        "nn.autoencoder.PatchDiscriminator.forward": (critic, dict(x=rgb)),
        "autoencoding.gaussian_kl": (autoencoding.gaussian_kl, dict(mean=latent_images, log_var=latent_images * 0.1)),
        "autoencoding.adaptive_weight": (autoencoding.adaptive_weight,
                                         dict(rec_loss=rec, gan_loss=g_loss, last_layer=vae.decoder.last_layer.weight,
                                              max_weight=1e4, delta=1e-4)),
        "autoencoding.AutoencoderSettings": (autoencoding.AutoencoderSettings,
                                             dict(batch_size=2, lr=1e-3, lr_schedule="constant", kl_weight=1e-3,
                                                  disc_weight=0.5, disc_start=1, disc_lr=1e-3, train_encoder=True,
                                                  seed=0)),
        "autoencoding.AutoencoderHistory": (autoencoding.AutoencoderHistory, dict(mse=[0.1], kl=[1.0])),
        "autoencoding.train_autoencoder": (autoencoding.train_autoencoder,
                                           dict(vae=autoencoder.VAE(latent_channels=2, width=4), images=rgb, steps=2,
                                                discriminator=autoencoder.PatchDiscriminator(width=4), batch_size=2,
                                                lr=1e-3, kl_weight=1e-3, disc_weight=0.5, disc_start=1, disc_lr=1e-3,
                                                train_encoder=False, seed=0, device="cpu", progress=False,
                                                log_every=1, cache=False)),
        "autoencoding.encode": (autoencoding.encode, dict(vae=vae, images=rgb, batch_size=2, sample=True,
                                                          generator=_g())),
        "autoencoding.latent_scale": (autoencoding.latent_scale, dict(latents=latent_images)),
        "autoencoding.decode": (autoencoding.decode, dict(vae=vae, latents=latent_images, scale=0.5)),
        "autoencoding.gaussian_fit_kl": (autoencoding.gaussian_fit_kl,
                                         dict(latents=torch.randn(40, 3, generator=_g()))),
        "gan.hinge_discriminator_loss": (gan.hinge_discriminator_loss, dict(real_logits=T, fake_logits=-T)),
        "gan.hinge_generator_loss": (gan.hinge_generator_loss, dict(fake_logits=T)),
        "image_metrics.shape_features": (image_metrics.shape_features,
                                         dict(images=data_shapes.shapes(3, generator=_g(1)).images)),
        "image_metrics.sharpness": (image_metrics.sharpness, dict(images=rgb)),
        "widgets.latent.decoder_comparison": (widgets.decoder_comparison,
                                              dict(originals=rgb, plain=rgb, sharp=rgb, captions=["a"] * 4,
                                                   per_frame=2, static=False)),
        "widgets.latent.guidance_samples": (widgets.guidance_samples,
                                            dict(ws=[0.0, 1.0], images=torch.stack([rgb, rgb]), names=["a", "b"],
                                                 static=False)),
        "widgets.transformers.token_grid": (widgets.token_grid,
                                            dict(image=rgb[0], latent_shape=(4, 8, 8), patch_sizes=[1, 2],
                                                 static=False)),
    }
    torch.manual_seed(0)
    tokens_in, block = torch.randn(2, 16, 8, generator=_g(4)), dit.DiTBlock(8, 2, kind="joint")
    text_dit = dit.DiT(input_size=4, in_channels=2, patch_size=2, width=8, depth=1, heads=2, context_dim=3,
                       conditioning="cross")
    s |= {
        "nn.dit.patchify": (dit.patchify, dict(x=latent_images, p=2)),
        "nn.dit.unpatchify": (dit.unpatchify, dict(tokens=tokens_in, p=2, h=8, w=8)),
        "nn.dit.sincos_position_embedding": (dit.sincos_position_embedding, dict(dim=8, rows=2, cols=3)),
        "nn.dit.DiTBlock": (dit.DiTBlock, dict(width=8, heads=2, mlp_ratio=2.0, kind="cross")),
        "nn.dit.DiTBlock.forward": (block, dict(x=tokens_in, c=torch.randn(2, 8, generator=_g(5)),
                                                context=torch.randn(2, 3, 8, generator=_g(6)),
                                                context_mask=torch.tensor([[True, True, False], [True, False, True]]),
                                                key_mask=torch.ones(2, 16, dtype=torch.bool))),
        "nn.dit.DiT": (dit.DiT, dict(input_size=4, in_channels=2, patch_size=2, width=8, depth=1, heads=2,
                                     mlp_ratio=2.0, num_classes=3, conditioning="joint")),
        "nn.dit.DiT.forward": (text_dit, dict(x=latent_images, t=torch.rand(4, generator=_g(7)),
                                              context=torch.randn(4, 2, 3, generator=_g(8)),
                                              context_mask=torch.tensor([[True, False]] * 4))),
    }
    tok = tokenizer.Tokenizer()
    ids, ids_mask = tok.encode(["a red circle", "blue square, small, top left"])
    text_enc = nn_clip.TextEncoder(len(tok), max_length=10, width=8, depth=1, heads=2, embed_dim=4)
    image_enc = nn_clip.ImageEncoder(3, 16, width=2, embed_dim=4)
    pair = nn_clip.CLIP(text_enc, image_enc)
    text_images = data_shapes.shapes(2, size=16, generator=_g(9)).images
    ctx4, ctx4_mask = torch.randn(4, 3, 3, generator=_g(10)), torch.tensor([[True, True, False]] * 4)
    emb_a, emb_b = torch.randn(4, 5, generator=_g(11)), torch.randn(4, 5, generator=_g(12))
    video = video_dit.VideoDiT(frames=2, input_size=4, in_channels=2, patch_size=2, width=8, depth=1, heads=2,
                               context_dim=3)
    video_block = video_dit.VideoBlock(8, 2, 2.0, "factorised")
    clip_videos = data_clips.moving_shapes(2, 3, size=16, generator=_g(13)).videos
    s |= {
        "tokenizer.words": (tokenizer.words, dict(text="Red circle, small")),
        "tokenizer.Tokenizer": (tokenizer.Tokenizer, dict(vocabulary=["red", "circle"])),
        "tokenizer.Tokenizer.unknown": (tok.unknown, dict(text="a purple circle")),
        "tokenizer.Tokenizer.tokenize": (tok.tokenize, dict(text="a red circle")),
        "tokenizer.Tokenizer.encode": (tok.encode, dict(texts=["a red circle", "a square"], length=5)),
        "tokenizer.Tokenizer.decode": (tok.decode, dict(ids=ids, mask=ids_mask)),
        "contrastive.similarity": (contrastive.similarity, dict(image_emb=emb_a, text_emb=emb_b)),
        "contrastive.clip_loss": (contrastive.clip_loss, dict(image_emb=emb_a, text_emb=emb_b, temperature=0.1)),
        "contrastive.retrieval_accuracy": (contrastive.retrieval_accuracy,
                                           dict(image_emb=emb_a, text_emb=emb_b, groups=torch.tensor([0, 1, 1, 2]))),
        "contrastive.freeze": (contrastive.freeze, dict(module=torch.nn.Linear(2, 2))),
        "nn.clip.TextEncoder": (nn_clip.TextEncoder, dict(vocab_size=len(tok), max_length=10, width=8, depth=1,
                                                          heads=2, embed_dim=4)),
        "nn.clip.TextEncoder.forward": (text_enc, dict(ids=ids, mask=ids_mask)),
        "nn.clip.TextEncoder.pool": (text_enc.pool, dict(tokens=torch.randn(2, 5, 8, generator=_g(14)),
                                                         mask=ids_mask)),
        "nn.clip.TextEncoder.embed": (text_enc.embed, dict(ids=ids, mask=ids_mask)),
        "nn.clip.ImageEncoder": (nn_clip.ImageEncoder, dict(in_channels=3, size=16, width=2, embed_dim=4)),
        "nn.clip.ImageEncoder.forward": (image_enc, dict(images=text_images)),
        "nn.clip.CLIP": (nn_clip.CLIP, dict(text=text_enc, image=image_enc)),
        "nn.clip.CLIP.forward": (pair, dict(images=text_images, ids=ids, mask=ids_mask)),
        "nn.dit.DiT.cross_attention_maps": (dit.DiT(input_size=4, in_channels=2, patch_size=2, width=8, depth=1,
                                                    heads=2, context_dim=3, conditioning="cross").cross_attention_maps,
                                            dict(x=latent_images, t=torch.rand(4, generator=_g(7)), context=ctx4,
                                                 context_mask=ctx4_mask)),
        "nn.video_dit.inflate": (video_dit.inflate, dict(image_dit=dit.DiT(input_size=4, in_channels=2, patch_size=2,
                                                                           width=8, depth=1, heads=2, context_dim=3,
                                                                           conditioning="cross"),
                                                         frames=2, attention="full")),
        "nn.video_dit.sincos_frame_embedding": (video_dit.sincos_frame_embedding, dict(dim=8, frames=3)),
        "nn.video_dit.VideoBlock": (video_dit.VideoBlock, dict(width=8, heads=2, mlp_ratio=2.0, attention="full")),
        "nn.video_dit.VideoBlock.forward": (video_block, dict(x=torch.randn(2, 3, 4, 8, generator=_g(15)),
                                                              c=torch.randn(2, 8, generator=_g(16)),
                                                              context=torch.randn(2, 3, 8, generator=_g(17)),
                                                              context_mask=torch.tensor([[True, False, True]] * 2))),
        "nn.video_dit.VideoDiT": (video_dit.VideoDiT, dict(frames=2, input_size=4, in_channels=2, patch_size=2,
                                                           width=8, depth=1, heads=2, mlp_ratio=2.0, context_dim=3,
                                                           attention="full", pooled_context=True)),
        "nn.video_dit.VideoDiT.forward": (video, dict(x=torch.randn(4, 2, 2, 4, 4, generator=_g(18)),
                                                      t=torch.rand(4, generator=_g(19)), context=ctx4,
                                                      context_mask=ctx4_mask)),
        "guidance.caption_rf_loss": (guidance.caption_rf_loss, dict(model=video, x=torch.randn(4, 2, 2, 4, 4,
                                                                                              generator=_g(20)),
                                                                    context=ctx4, context_mask=ctx4_mask, p_uncond=0.5,
                                                                    generator=_g())),
        "guidance.GuidedByText": (guidance.GuidedByText, dict(model=video, context=ctx4, context_mask=ctx4_mask,
                                                              w=2.0)),
        "guidance.GuidedByText.forward": (guidance.GuidedByText(video, ctx4, ctx4_mask, 2.0),
                                          dict(x_t=torch.randn(4, 2, 2, 4, 4, generator=_g(21)),
                                               t=torch.rand(4, generator=_g(22)))),
        "data.clips.moving_shapes": (data_clips.moving_shapes, dict(n=2, frames=3, size=16, generator=_g())),
        "data.clips.clip_caption": (data_clips.clip_caption, dict(shape=1, color=2, size=0, direction=3)),
        "image_metrics.clip_attributes": (image_metrics.clip_attributes, dict(videos=clip_videos)),
        "widgets.text_to_image.prompt_box": (widgets.prompt_box, dict(generate=lambda p, w: text_images,
                                                                      prompt="a red circle", w=1.0, w_max=4.0,
                                                                      per_row=2, static=False)),
        "widgets.text_to_image.PromptBox": (widgets.PromptBox, dict(generate=lambda p, w: text_images,
                                                                    prompt="a red circle", w=1.0, w_max=4.0,
                                                                    per_row=2, size=(3.0, 2.0))),
        "widgets.text_to_image.PromptBox.render": (widgets.PromptBox(lambda p, w: text_images, "a").render,
                                                   dict(prompt="a red circle", w=1.0)),
        "widgets.text_to_image.clip_player": (widgets.clip_player, dict(videos=clip_videos, captions=["a", "b"],
                                                                        per_row=2, static=False)),
    }
    gcond = mlp.TimeMLP(hidden=16, depth=1, num_classes=3, guidance_max=4.0)
    s |= {
        "distillation.reflow_pairs": (distillation.reflow_pairs, dict(model=unc, noise=Z, steps=2)),
        "distillation.reflow_loss": (distillation.reflow_loss, dict(model=unc, pairs=(X, Z), generator=_g())),
        "distillation.two_step_target": (distillation.two_step_target, dict(teacher=unc, x_t=X, t=T * 0.5 + 0.5,
                                                                            dt=0.25)),
        "distillation.progressive_loss": (distillation.progressive_loss, dict(student=unc, teacher=unc, x=X,
                                                                              generator=_g(), steps=4)),
        "distillation.consistency_loss": (distillation.consistency_loss, dict(student=unc, teacher=unc, x=X,
                                                                              generator=_g(), steps=4)),
        "distillation.consistency_sample": (distillation.consistency_sample, dict(student=unc, z=Z, steps=2,
                                                                                  generator=_g())),
        "distillation.guidance_distillation_loss": (distillation.guidance_distillation_loss,
                                                    dict(student=gcond, teacher=cond, x=X, y=Y, generator=_g(),
                                                         w_max=4.0)),
        "nn.mlp.TimeMLP.forward (guidance weight)": (gcond, dict(x=X, t=T, y=Y, w=torch.rand(16, generator=_g(23)))),
        "widgets.distillation.reflow_player": (widgets.reflow_player, dict(trajectories={"a": traj, "b": traj},
                                                                           times=times, static=False)),
        "widgets.distillation.SwitchPlayer": (widgets.SwitchPlayer, dict(names=["a", "b"], n_frames=2,
                                                                         draw=lambda ax, name, i: ax.plot([0, i]),
                                                                         label=lambda i: f"frame {i}")),
        "widgets.player.FramePlayer.redraw": (_player().redraw, dict()),
    }
    gpt_c = nn_gpt.GPT(vocab_size=6, block_size=5, width=8, depth=1, heads=2, num_classes=3)
    toks = torch.randint(0, 6, (4, 5), generator=_g(30))
    labs = torch.tensor([0, 1, 2, 1])
    vqm = nn_vq.VQVAE(channels=1, size=8, grid=2, num_codes=8, code_dim=3, width=4)
    code_grids = torch.randint(0, 8, (3, 2, 2), generator=_g(31))
    img8 = torch.rand(3, 1, 8, 8, generator=_g(32)) * 2 - 1
    marg = autoregressive.MarginalCodes(toks, 6, labs, 3)
    s |= {
        "autoregressive.token_log_probs": (autoregressive.token_log_probs, dict(model=gpt_c, tokens=toks, y=labs)),
        "autoregressive.ar_loss": (autoregressive.ar_loss, dict(model=gpt_c, batch=(toks, labs), generator=_g())),
        "autoregressive.bits_per_token": (autoregressive.bits_per_token, dict(model=gpt_c, tokens=toks, y=labs,
                                                                              batch_size=2)),
        "autoregressive.sample_next": (autoregressive.sample_next, dict(logits=torch.randn(4, 6, generator=_g(33)),
                                                                        temperature=0.8, top_k=3, generator=_g())),
        "autoregressive.sample": (autoregressive.sample, dict(model=gpt_c, n=3, length=5, y=1, temperature=0.9,
                                                              top_k=4, generator=_g())),
        "autoregressive.MarginalCodes": (autoregressive.MarginalCodes, dict(tokens=toks, vocab_size=6, labels=labs,
                                                                            num_classes=3, smoothing=0.5)),
        "autoregressive.MarginalCodes.bits_per_token": (marg.bits_per_token, dict(tokens=toks, y=labs)),
        "autoregressive.MarginalCodes.sample": (marg.sample, dict(n=4, y=labs, generator=_g())),
        "autoregressive.to_levels": (autoregressive.to_levels, dict(images=img8, levels=17)),
        "autoregressive.from_levels": (autoregressive.from_levels, dict(tokens=torch.randint(0, 17, (3, 64),
                                                                                             generator=_g(34)),
                                                                        side=8, levels=17)),
        "nn.gpt.GPT": (nn_gpt.GPT, dict(vocab_size=6, block_size=5, width=8, depth=1, heads=2, mlp_ratio=2.0,
                                        num_classes=3, dropout=0.1)),
        "nn.gpt.GPT.forward": (gpt_c, dict(tokens=toks[:, :4], y=labs)),
        "nn.vq.VectorQuantizer": (nn_vq.VectorQuantizer, dict(num_codes=8, dim=3, beta=0.25, init="kmeans",
                                                              restart_after=5)),
        "nn.vq.VectorQuantizer.forward": (nn_vq.VectorQuantizer(8, 3), dict(z=torch.randn(2, 3, 2, 2,
                                                                                          generator=_g(35)))),
        "nn.vq.codebook_usage": (nn_vq.codebook_usage, dict(codes=code_grids, num_codes=8)),
        "nn.vq.VQVAE": (nn_vq.VQVAE, dict(channels=1, size=8, grid=2, num_codes=8, code_dim=3, width=4, beta=0.25,
                                          init="uniform", restart_after=5)),
        "nn.vq.VQVAE.forward": (vqm, dict(x=img8)),
        "nn.vq.VQVAE.encode": (vqm.encode, dict(x=img8, batch_size=2)),
        "nn.vq.VQVAE.decode": (vqm.decode, dict(codes=code_grids, batch_size=2)),
        "nn.vq.vqvae_loss": (nn_vq.vqvae_loss, dict(model=vqm, batch=img8, generator=_g())),
        "viz.code_map": (viz.code_map, dict(ax=_axes(), codes=code_grids, num_codes=8, per_row=2, title="codes",
                                            pad=1)),
        "widgets.autoregressive.sampling_explorer": (widgets.sampling_explorer,
                                                     dict(samples={"a": torch.rand(2, 3, 1, 8, 8,
                                                                                   generator=_g(36)) * 2 - 1},
                                                          temperatures=[0.5, 1.0], per_row=3, static=False)),
    }
    s |= {
        "threads.choose_threads": (threads.choose_threads, dict(max_threads=2)),
        "threads.apply_thread_policy": (threads.apply_thread_policy, dict(max_threads=2)),
        "threads.LoadFollower": (threads.LoadFollower, dict(usable=2)),
        "threads.FollowedCalls": (threads.FollowedCalls, dict(fn=torch.neg, follower=threads.LoadFollower(2))),
        "threads.following": (threads.following, dict(fn=torch.neg, device="cpu")),
        "threads.timing_counts": (threads.timing_counts, dict(device="cpu")),
        "pretrained.reusing": (pretrained.reusing, dict(lecture="lecture 05")),
        "nn.layers.LayerNorm": (nn_layers.LayerNorm, dict(width=8, eps=1e-5, elementwise_affine=True)),
        "nn.layers.BatchNorm1d": (nn_layers.BatchNorm1d, dict(features=8, eps=1e-5, momentum=0.1)),
        "nn.layers.BatchNorm2d": (nn_layers.BatchNorm2d, dict(channels=8, eps=1e-5, momentum=0.1)),
        "nn.layers.GroupNorm": (nn_layers.GroupNorm, dict(groups=2, channels=8, eps=1e-5, affine=True)),
        "nn.layers.Attention": (nn_layers.Attention, dict(width=8, heads=2)),
        "nn.layers.feed_forward": (nn_layers.feed_forward, dict(width=8, ratio=4.0)),
        "nn.layers.adaln_norm": (nn_layers.adaln_norm, dict(width=8)),
        "nn.layers.FinalLayer": (nn_layers.FinalLayer, dict(width=8, patch_numbers=12)),
        **{f"nn.layers.{name}": (getattr(nn_layers, name), dict(in_channels=2, out_channels=3, kernel_size=3, stride=1,
                                                                padding=1, dilation=1, bias=True))
           for name in ("Conv2d", "ConvTranspose2d")},
        "threads.LoadFollower.step_done": (threads.LoadFollower(2).step_done, dict(seconds=0.01)),
        "threads.LoadFollower.keep": (threads.LoadFollower(2).keep, dict(reason="a reason")),
        "threads.LoadFollower.judge": (_proposing_follower().judge, dict(same=True, what="this loop")),
    }
    release_dir = _release_dir()
    s |= {
        "grading.notebooks.read_notebook": (grading_notebooks.read_notebook, dict(path=LECTURE)),
        "grading.notebooks.strip_solutions": (grading_notebooks.strip_solutions,
                                              dict(source="def f():\n    ### BEGIN SOLUTION\n    return 1\n"
                                                          "    ### END SOLUTION\n")),
        "grading.screen.screen": (grading_screen.screen, dict(source="x = 1", protected=["check_shift"])),
        "grading.release.release": (grading_release.release, dict(notebooks=[LECTURE], out_dir=str(release_dir))),
        "grading.release.load_release": (grading_release.load_release, dict(release_dir=str(release_dir))),
        "grading.grade.find_submissions": (grading_grade.find_submissions,
                                           dict(submissions_dir=str(release_dir.parent / "empty"),
                                                manifest=grading_release.load_release(release_dir))),
        "grading.sandbox.choose": (grading_sandbox.choose, dict(sandbox="none")),
        "grading.gradescope.export": (grading_gradescope.export,
                                      dict(release_dir=str(release_dir), out=str(release_dir.parent / "ag.zip"),
                                           per_lecture=False, cpu_torch=True, wheel=str(_wheel()), timeout=20.0,
                                           memory_mb=1000)),
        "grading.gradescope.try_zip": (grading_gradescope.try_zip, dict(zip_path=str(_autograder_zip()),
                                                                        notebook=LECTURE)),
        "grading.grade.grade": (grading_grade.grade, dict(submissions_dir=str(release_dir.parent / "empty"),
                                                          release_dir=str(release_dir),
                                                          out=str(release_dir.parent / "book.csv"), jobs=1,
                                                          timeout=5.0, memory_mb=1000, full=False, progress=None)),
    }
    return s


LECTURE = str(Path(__file__).resolve().parents[1] / "lectures" / "04_noise_schedules.ipynb")
_RELEASE = []
_BUILT = {}


def _wheel() -> Path:
    """The library's wheel, built once per session."""
    if "wheel" not in _BUILT:
        _BUILT["wheel"] = grading_gradescope.build_wheel(_release_dir().parent)
    return _BUILT["wheel"]


def _autograder_zip() -> Path:
    """An autograder zip of the fuzz release, written once per session."""
    if "zip" not in _BUILT:
        _BUILT["zip"] = grading_gradescope.export(_release_dir(), _release_dir().parent / "autograder.zip",
                                                  wheel=_wheel(), timeout=20.0)[0]
    return _BUILT["zip"]


def _release_dir() -> Path:
    """A released lecture and an empty submissions folder, made once per session."""
    if not _RELEASE:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="cs231n-gen-fuzz-"))
        (root / "empty").mkdir()
        grading_release.release([LECTURE], root / "release")
        _RELEASE.append(root / "release")
    return _RELEASE[0]


# -------------------------------------------------------------------- the bad values
class _Bad:
    """A bad value and a label for the report."""

    def __init__(self, label, value):
        self.label, self.value = label, value


def bad_values(valid):
    """Values of the wrong kind, shape or range for an argument whose valid value is ``valid``."""
    common = [_Bad("str", "bogus"), _Bad("list-of-str", ["a"]), _Bad("object", object())]
    if isinstance(valid, torch.Tensor):
        out = [_Bad("list", valid.tolist()), _Bad("empty", valid.reshape(-1)[:0])] + common
        if valid.ndim >= 1:
            out += [_Bad("rank+1", valid.unsqueeze(0)), _Bad("rank-1", valid[0]), _Bad("row-fewer", valid[:-1])]
            out.append(_Bad("last+1", torch.cat([valid, valid[..., :1]], dim=-1)))
        if valid.is_floating_point():
            nan, inf = valid.clone(), valid.clone()
            if valid.numel():
                nan.view(-1)[0] = float("nan")
                inf.view(-1)[-1] = float("inf")
            out += [_Bad("nan", nan), _Bad("inf", inf), _Bad("int64", valid.long()), _Bad("bool", valid > 0),
                    _Bad("complex", valid.to(torch.complex64))]
        elif valid.dtype == torch.bool:
            out += [_Bad("float", valid.float()), _Bad("int64", valid.long())]
        else:
            out += [_Bad("float", valid.float()), _Bad("negative", valid - 100), _Bad("huge", valid + 100)]
        return out
    if isinstance(valid, bool):
        return [_Bad("int", 1), _Bad("None", None)] + common
    if isinstance(valid, int):
        return [_Bad("-1", -1), _Bad("0", 0), _Bad("2.5", 2.5), _Bad("True", True), _Bad("nan", float("nan")),
                _Bad("None", None)] + common
    if isinstance(valid, float):
        return [_Bad("nan", float("nan")), _Bad("inf", float("inf")), _Bad("-inf", float("-inf")), _Bad("-1", -1.0),
                _Bad("0", 0.0), _Bad("True", True), _Bad("tensor2", torch.ones(2))] + common
    if isinstance(valid, str):
        return [_Bad("unknown", "no-such-choice"), _Bad("3", 3)] + [_Bad("list-of-str", ["a"])]
    if isinstance(valid, torch.Generator):
        return [_Bad("int", 0), _Bad("str", "seed")]
    if isinstance(valid, torch.dtype):
        return [_Bad("int64", torch.int64), _Bad("bool", torch.bool), _Bad("str", "float32")]
    if isinstance(valid, (tuple, list)):
        return [_Bad("empty", type(valid)()), _Bad("nan", type(valid)([float("nan")] * max(1, len(valid)))),
                _Bad("str", "bogus"), _Bad("int", 3)]
    if isinstance(valid, dict):
        return [_Bad("empty", {}), _Bad("str", "bogus"), _Bad("list", [1])]
    return [_Bad("int", 3), _Bad("None", None)] + common  # models, mixtures, paths, callables, axes...


def _device_bad():
    return [_Bad("unknown-device", "tpu9"), _Bad("int", -3), _Bad("object", object())]


# --------------------------------------------------------------------------- outcomes
def _finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all())
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def _raised_inside_package(err: BaseException) -> bool:
    """Was the ValueError raised by cs231n_gen's own code (the innermost frame is ours)?"""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE_DIR)


def _names(arg: str):
    return {arg, arg.rstrip("_")}


def _outcome(fn, kwargs, arg):
    """None when the call answered well, else a description of what went wrong."""
    try:
        result = fn(**kwargs)
    except ValueError as err:
        if not _raised_inside_package(err):
            return f"ValueError from a dependency: {err}"
        message = str(err)
        if not any(n in message for n in _names(arg)):
            return f"ValueError that does not name {arg!r}: {message}"
        return None
    except Exception as err:  # noqa: BLE001 (any other exception is the failure being looked for)
        return f"{type(err).__name__}: {str(err)[:200]}"
    finally:
        plt.close("all")
    if not _finite(result):
        return "returned NaN or inf without an error"
    return None


# Arguments whose valid value should not be mutated (labels of a figure, file names...) or
# where a bad value is accepted on purpose (documented), by "spec.arg".
NOT_FUZZED = {
    "viz.scatter.color", "viz.scatter.title", "viz.class_scatter.title",
    "viz.plot_loss.label", "viz.step_axis.label", "viz.image_grid.title",
              "widgets.schedules.time_sampler_explorer.reference_label",
    "engine.Loop.desc", "paths.DiffusionPath.name", "widgets.player.static_strip.title",
    "viz.code_map.title", "viz.label_columns.title",
}


def _cases(judge):
    for name, (fn, kwargs) in specs(judge).items():
        for arg, valid in kwargs.items():
            if f"{name}.{arg}" in NOT_FUZZED:
                continue
            values = _device_bad() if arg == "device" or arg == "prefer" else bad_values(valid)
            for bad in values:
                yield name, fn, kwargs, arg, bad


def _proposing_follower():
    """A follower proposing the count there is now (its switch changes nothing)."""
    follower = threads.LoadFollower(2)
    follower.proposal = torch.get_num_threads()
    return follower


def test_every_public_callable_has_a_spec(judge):
    names = set(specs(judge))
    missing = []
    for info in pkgutil.walk_packages(cs231n_gen.__path__, "cs231n_gen."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        mod = importlib.import_module(info.name)
        for key, obj in vars(mod).items():
            if key.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            full = f"{info.name}.{key}"
            short = full.removeprefix("cs231n_gen.")
            if full in EXEMPT or issubclass(obj, BaseException) if inspect.isclass(obj) else full in EXEMPT:
                continue
            if short not in names:
                missing.append(short)
            if inspect.isclass(obj):
                for meth, f in vars(obj).items():
                    if (not meth.startswith("_") or meth == "__call__") and inspect.isfunction(f) \
                            and f"{short}.{meth}" not in names and f"{full}.{meth}" not in EXEMPT:
                        missing.append(f"{short}.{meth}")
    assert not missing, f"public callables with no fuzz spec: {missing}"


def test_bad_arguments_get_clear_errors(judge, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failures, calls = [], 0
    for name, fn, kwargs, arg, bad in _cases(judge):
        calls += 1
        problem = _outcome(fn, {**kwargs, arg: bad.value}, arg)
        if problem:
            failures.append(f"{name}({arg}={bad.label}): {problem}")
    print(f"fuzz: {calls} calls with one bad argument each, {len(failures)} answered badly")
    assert calls > 1500
    assert not failures, f"{len(failures)} of {calls} bad calls answered badly:\n" + "\n".join(failures)


def test_valid_calls_succeed(judge):
    """The specs themselves are valid (so every failure above is about the bad value)."""
    for name, (fn, kwargs) in specs(judge).items():
        if name.startswith("exercises."):
            continue
        try:
            result = fn(**kwargs)
        finally:
            plt.close("all")
        assert _finite(result), name
