"""Lecture 09 (generalized diffusion): converting an eps prediction, and one DDPM ancestral step."""
from __future__ import annotations

import torch

from ..paths import vp_cosine
from ._harness import call_student, close, exercise, fail, name_the_mistake


def _path_probe(probe):
    """A batch on the VP cosine path with its coefficients as (n, 1) tensors (float64)."""
    path = vp_cosine()
    g = probe.generator()
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)[:, None]
    x = torch.randn(19, 2, generator=g, dtype=torch.float64) * 2
    z = torch.randn(19, 2, generator=g, dtype=torch.float64)
    return path, t, x, z


@exercise("eps_to_x_and_velocity", references=("cs231n_gen.paths.DiffusionPath.to_x_eps",
                                                   "cs231n_gen.paths.DiffusionPath.convert"))
def check_eps_conversions(student_fn, probe):
    """Check ``eps_to_x_and_velocity(eps, x_t, a, b, da, db) -> (x_hat, velocity)``."""
    path, t, x, z = _path_probe(probe)
    a, b, da, db = path.a(t), path.b(t), path.da(t), path.db(t)
    x_t = a * x + b * z
    got = call_student("eps_to_x_and_velocity", student_fn, z.clone(), x_t.clone(), a, b, da, db)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"eps_to_x_and_velocity must return two tensors (x_hat, velocity), got {type(got).__name__}")
    x_hat, vel = (torch.as_tensor(v).double() for v in got)
    if x_hat.shape != x.shape or vel.shape != x.shape:
        fail(f"both outputs must have the shape of x_t {tuple(x.shape)}")
    if not close(x_hat, x, 1e-6):
        hints = [((x_t + b * z) / a, "the noise is subtracted: x_t = a x + b eps, so x_hat = (x_t - b eps) / a."),
                 ((x_t - b * z) * a, "divide by a, not multiply: x_hat = (x_t - b eps) / a."),
                 (x_t - b * z, "you forgot to divide by a: x_hat = (x_t - b eps) / a."),
                 ((x_t - a * z) / b, "a and b are swapped: x_t = a x + b eps, so x_hat = (x_t - b eps) / a.")]
        name_the_mistake(x_hat, hints, 1e-6, prefix="x_hat: ")
        fail("x_hat does not recover the clean data: solve x_t = a x + b eps for x.")
    want = da * x + db * z
    if not close(vel, want, 1e-6):
        mistakes = [(a * x + b * z, "that is x_t itself: the velocity uses the derivatives, a' x + b' eps."),
                    (z - x, "z - x is the velocity of rectified flow only; on this path it is a' x + b' eps."),
                    (-b * x + a * z, "that is the v-prediction target a eps - b x, not the velocity a' x + b' eps.")]
        name_the_mistake(vel, mistakes, 1e-6, prefix="velocity: ")
        fail("the velocity should be d x_t / dt = a' x_hat + b' eps.")
    return "eps_to_x_and_velocity is correct on the VP cosine path at 19 noise levels."


@exercise("ddpm_step", references=('cs231n_gen.sampling.ddpm',))
def check_ddpm_step(student_fn, probe):
    """Check ``ddpm_step(x_t, x_hat, a_t, b_t, a_s, b_s, noise) -> x_s`` (the forward posterior draw)."""
    path, t, x, z = _path_probe(probe)
    s = t - 0.04
    a_t, b_t, a_s, b_s = path.a(t), path.b(t), path.a(s), path.b(s)
    x_t = a_t * x + b_t * z
    g = probe.generator(1)
    x_hat = x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    got = call_student("ddpm_step", student_fn, x_t.clone(), x_hat.clone(), a_t, b_t, a_s, b_s, noise.clone())
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        fail(f"ddpm_step must return a tensor of shape {tuple(x.shape)}, got {got!r}")
    got = got.detach().double()
    a_ts = a_t / a_s
    b_ts2 = b_t**2 - a_ts**2 * b_s**2
    mean = a_s * b_ts2 / b_t**2 * x_hat + a_ts * b_s**2 / b_t**2 * x_t
    std = (b_ts2 * b_s**2 / b_t**2).sqrt()
    if close(got, mean + std * noise, 1e-6):
        return "ddpm_step is correct: mean and standard deviation of q(x_s | x_t, x_hat) both match."
    # First the mean: with zero noise the step must return it exactly.
    got_mean = call_student("ddpm_step with zero noise", student_fn, x_t.clone(), x_hat.clone(), a_t, b_t, a_s, b_s,
                            torch.zeros_like(noise))
    if not isinstance(got_mean, torch.Tensor) or got_mean.shape != x.shape:
        fail(f"ddpm_step must return a tensor of shape {tuple(x.shape)}, got {got_mean!r}")
    got_mean = got_mean.detach().double()
    if not close(got_mean, mean, 1e-6):
        mean_hints = [
            (a_s * x_hat, "with zero noise you return a_s x_hat: that re-noises x_hat from scratch and forgets x_t; "
                          "the posterior mean mixes x_hat and x_t."),
            (a_s * x_hat + b_s * (x_t - a_t * x_hat) / b_t,
             "this is the deterministic DDIM step; DDPM's mean is "
             "a_s b_{t|s}^2 / b_t^2 x_hat + a_{t|s} b_s^2 / b_t^2 x_t."),
            (a_ts * b_s**2 / b_t**2 * x_hat + a_s * b_ts2 / b_t**2 * x_t, "the weights of x_hat and x_t are swapped: "
                                                                          "x_hat gets a_s b_{t|s}^2 / b_t^2."),
            (x_t, "with zero noise the step returns x_t unchanged: the mean moves toward x_hat."),
        ]
        name_the_mistake(got_mean, mean_hints, 1e-6, prefix="The mean (your output with noise = 0) is wrong: ")
        fail("The mean (your output with noise = 0) is wrong: it should be a_s b_{t|s}^2 / b_t^2 x_hat + "
              "a_{t|s} b_s^2 / b_t^2 x_t, with a_{t|s} = a_t / a_s and b_{t|s}^2 = b_t^2 - a_{t|s}^2 b_s^2.")
    # The mean is right, so the rest is the noise term: read off the scale you gave it.
    biggest = noise.abs().argmax(dim=1, keepdim=True)  # per row, the coordinate with the most noise
    scale = (got - mean).gather(1, biggest) / noise.gather(1, biggest)
    std_hints = [(torch.zeros_like(std), "you add no noise: DDPM draws x_s, so add std * noise."),
                 (std**2, "you multiply the noise by the variance; multiply it by the standard deviation."),
                 (b_s.expand_as(std), "the noise scale is b_s, the spread of x_s given the clean x; given x_t it is "
                                      "smaller: sqrt(b_{t|s}^2 b_s^2 / b_t^2)."),
                 (b_ts2.sqrt(), "the noise scale is b_{t|s}, the forward step's; the posterior's is "
                                "sqrt(b_{t|s}^2 b_s^2 / b_t^2).")]
    name_the_mistake(scale, std_hints, 1e-4, prefix="The mean is right; the noise is not: ")
    fail("The mean is right; the noise is not: x_s = mean + std * noise with std = sqrt(b_{t|s}^2 b_s^2 / b_t^2).")
