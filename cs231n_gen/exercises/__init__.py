"""Checks for the lecture exercises, one module per lecture over one shared harness.

Each ``check_<name>(student_fn, *, seed=None, raise_on_fail=True)`` runs the student's
function on probe inputs drawn from ``seed``, compares it with the library's reference,
and on a mismatch names the usual mistake it matches (sign of v, direction of time, an
off-by-one time grid, ...). In a notebook it prints a confirmation and returns a
:class:`CheckResult`, or raises :class:`ExerciseFailed` (an ``AssertionError``) with the
hint; with ``raise_on_fail=False`` it returns the failed result instead (the grader's
way). ``CHECKS`` maps every check's name to the check.
"""
from ._harness import CheckResult, ExerciseFailed
from .autoregressive import check_sample_next, check_straight_through
from .distillation import check_reflow_pairs, check_two_step_target
from .gans import check_nonsaturating_loss, check_optimal_discriminator
from .generalized import check_ddpm_step, check_eps_conversions
from .guidance import check_cfg_loss, check_cfg_velocity
from .latent import check_kl_divergence, check_latent_rf_loss
from .rectified_flow import check_euler_sampler, check_rf_loss
from .schedules import check_logit_normal_sampler, check_shift
from .text_to_image import check_clip_loss, check_masked_cross_attention
from .transformers import check_adaln_zero_block, check_patchify, check_zero_modulation

CHECKS = {check.__name__: check for check in (
    check_nonsaturating_loss, check_optimal_discriminator,  # 01 GANs
    check_rf_loss, check_euler_sampler,  # 02 rectified flow
    check_cfg_velocity, check_cfg_loss,  # 03 classifier-free guidance
    check_logit_normal_sampler, check_shift,  # 04 noise schedules
    check_kl_divergence, check_latent_rf_loss,  # 05 latent diffusion
    check_patchify, check_adaln_zero_block, check_zero_modulation,  # 06 diffusion transformers
    check_clip_loss, check_masked_cross_attention,  # 07 text-to-image and video
    check_reflow_pairs, check_two_step_target,  # 08 distillation
    check_eps_conversions, check_ddpm_step,  # 09 generalized diffusion
    check_straight_through, check_sample_next,  # 10 autoregressive models over VQ latents
)}

__all__ = ["CheckResult", "ExerciseFailed", "CHECKS", *CHECKS]
