r"""Measuring generated images: distances between feature sets, and what a shape image shows.

- :func:`frechet_distance`: the Frechet distance between Gaussians fitted to two feature
  sets (the FID recipe; the digit judge, :mod:`cs231n_gen.digit_judge`, supplies features
  of its own for digits):

  .. math::  d^2 = \lVert \mu_a - \mu_b \rVert^2
                   + \mathrm{tr}\big(\Sigma_a + \Sigma_b - 2 (\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2})^{1/2}\big).

- Shape images (:func:`cs231n_gen.data.shapes`) need no learned judge:
  :func:`shape_attributes` reads their shape, colour, size and position back from the
  pixels, :func:`shape_features` turns them into features, :func:`clip_attributes` reads a
  clip frame by frame (and its direction of motion), :func:`sharpness` measures edges.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._moved import moved_names
from ._validate import check_tensor

__getattr__ = moved_names(__name__, {
    name: (f"cs231n_gen.digit_judge.{name}", "the digit judge (a model and its training) has a module of its own")
    for name in ("DigitJudge", "DigitClassifier", "digit_classifier", "train_digit_classifier", "accuracy",
                 "CLASSIFIER_VERSION", "ACCURACY_TOLERANCE")})


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature sets (float64)."""
    a = check_tensor("features_a", features_a, ndim=2).double().cpu()
    b = check_tensor("features_b", features_b, ndim=2).double().cpu()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_b must have {a.shape[1]} columns like features_a, got {b.shape[1]}")
    for name, f in (("features_a", a), ("features_b", b)):
        if f.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 rows, got {f.shape[0]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)

    def sqrtm_psd(m):
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp(min=0).sqrt()) @ v.T

    root_a = sqrtm_psd(cov_a)
    cross = sqrtm_psd(root_a @ cov_b @ root_a)
    d2 = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * torch.trace(cross)
    return float(d2.clamp(min=0))


def _blur3(x: torch.Tensor, passes: int) -> torch.Tensor:
    """``passes`` rounds of the 3 x 3 binomial blur on (n, H, W) maps (edges replicated)."""
    k = torch.tensor([0.25, 0.5, 0.25])
    k = torch.outer(k, k).view(1, 1, 3, 3)
    x = x.unsqueeze(1)
    for _ in range(passes):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    return x.squeeze(1)


def shape_attributes(images: torch.Tensor) -> dict:
    r"""Read shape, color, size and position back from shape images, with no learning.

    ``images`` are (n, 3, S, S) in [-1, 1], one object each on a plain background, as
    :func:`cs231n_gen.data.shapes` draws them (and as a model trained on them should).
    For each image:

    1. the background is the median of the border pixels; the object's *core* is where
       the colour differs most from it (at least 60% of the largest difference);
    2. **color**: the palette entry nearest to the core's mean colour;
    3. the coverage :math:`\alpha \in [0, 1]` of every pixel is its projection on the
       segment from the background to that colour (pixels far from the core, or below
       0.1, count as background: noise elsewhere is ignored);
    4. **position**: the grid cell nearest to the centroid of :math:`\alpha`;
    5. **shape**: for each shape, the half-extent that gives :math:`\sum \alpha` its area,
       a template drawn by the data's own renderer at that size and centroid (sharp, and
       blurred once and twice), and the squared difference to :math:`\alpha`; the best fit wins;
    6. **size**: small or large, from the fitted half-extent (the threshold is the
       geometric mean of the two).

    Returns a dict of LongTensors (n,) with the label names of
    :func:`~cs231n_gen.data.shapes` (``shape``, ``color``, ``size``, ``position``), plus
    ``found`` (bool): the object stands out from the background (a blank or washed-out
    image gets False, and its other readings mean little).

    Held-out images at 32 x 32 (``benchmarks/shape_judge.py``, 4000 images): shape 99.9%,
    colour, size and position 100%; after a 3 x 3 binomial blur, shape 98.8% and the rest
    100%; with Gaussian noise of std 0.1 added, 100%; at 64 x 64, 100% in all three cases
    (``tests/test_shapes.py`` asserts bounds on these). At 16 x 16 small shapes are a few
    pixels wide and shape accuracy drops to about 90%.
    """
    readings = _read_shapes(images)
    return {key: readings[key] for key in ("shape", "color", "size", "position", "found")}


def shape_features(images: torch.Tensor) -> torch.Tensor:
    """The judge's continuous readings of shape images, (n, 14): what Frechet distances compare.

    Per image: background and object colour (RGB each), the object's centroid (x, y as
    fractions of the side), its size (sqrt of its area over the side), the fit error of
    each of the four shape templates (relative to the object's area), and the contrast
    of the object against the background. Real shapes make a tight cloud in this space;
    smudges, two objects or washed-out colours fall outside it.
    """
    return _read_shapes(images)["features"]


def clip_attributes(videos: torch.Tensor) -> dict:
    r"""Read clips of one moving shape: :func:`shape_attributes` on every frame, and the motion.

    ``videos`` (n, T, 3, S, S) in [-1, 1], as :func:`cs231n_gen.data.moving_shapes` draws
    them. Returns LongTensors ``shape``, ``color``, ``size`` and bool ``found``, each
    (n, T), one reading per frame; ``centroid`` (n, T, 2), the object's centroid (x, y as
    fractions of the side, y down); ``displacement`` (n, 2), the least-squares slope of the
    centroid over the frames times (T - 1), i.e. how far the object travelled; and
    ``direction`` (n,), the index into ``DIRECTIONS`` ("left", "right", "up", "down") of
    the largest component of that displacement (0, "left", for a one-frame clip).
    """
    videos = check_tensor("videos", videos, ndim=5)
    n, frames = videos.shape[:2]
    if n < 1 or frames < 1 or videos.shape[2] != 3 or videos.shape[3] != videos.shape[4] or videos.shape[3] < 16:
        raise ValueError(f"videos must be RGB clips (n, T, 3, S, S) with n, T >= 1 and S >= 16, got shape "
                         f"{tuple(videos.shape)}")
    readings = _read_shapes(videos.flatten(0, 1))
    centroid = readings["features"][:, 6:8].reshape(n, frames, 2)
    f = torch.arange(frames, dtype=centroid.dtype, device=centroid.device)
    f = (f - f.mean())[None, :, None]
    slope = (f * (centroid - centroid.mean(1, keepdim=True))).sum(1) / f.square().sum().clamp_min(1e-12)
    displacement = slope * (frames - 1)
    scores = torch.stack([-displacement[:, 0], displacement[:, 0], -displacement[:, 1], displacement[:, 1]], 1)
    # (columns in the order of DIRECTIONS: left, right, up, down)
    out = {key: readings[key].reshape(n, frames) for key in ("shape", "color", "size", "found")}
    return {**out, "centroid": centroid, "displacement": displacement, "direction": scores.argmax(1)}


def _read_shapes(images: torch.Tensor) -> dict:
    """shape_attributes' work: the label readings plus the continuous features."""
    from .data import captioned_shapes as S

    images = check_tensor("images", images, ndim=4)
    if images.shape[1] != 3 or images.shape[2] != images.shape[3] or images.shape[2] < 16:
        raise ValueError(f"images must be RGB squares (n, 3, S, S) with S >= 16, got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image, got an empty batch")
    largest = float(images.detach().abs().max())
    if not largest <= 2.0:  # a sampler's overshoot is clamped; pixels in [0, 255] are a different scale
        raise ValueError(f"images must lie in [-1, 1] (a little outside is clamped), got values up to {largest:.4g}: "
                         "images in [0, 255] or [0, 1] need x / 127.5 - 1 or 2 x - 1 first")
    device = images.device
    rgb = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    n, side = rgb.shape[0], rgb.shape[-1]

    # 1. background and core
    border = torch.cat([rgb[:, :, 0, :], rgb[:, :, -1, :], rgb[:, :, :, 0], rgb[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values  # (n, 3)
    difference = (rgb - background.view(n, 3, 1, 1)).norm(dim=1)  # (n, S, S)
    peak = difference.flatten(1).amax(1)
    core = difference >= 0.6 * peak.clamp_min(1e-6).view(n, 1, 1)

    # 2. colour
    core_rgb = (rgb * core.unsqueeze(1)).sum((2, 3)) / core.sum((1, 2)).clamp_min(1).unsqueeze(1)
    color = torch.cdist(core_rgb, S.PALETTE).argmin(1)

    # 3. coverage
    span = S.PALETTE[color] - background  # (n, 3)
    alpha = ((rgb - background.view(n, 3, 1, 1)) * span.view(n, 3, 1, 1)).sum(1)
    alpha = (alpha / span.square().sum(1).clamp_min(1e-6).view(n, 1, 1)).clamp(0, 1)
    near = F.max_pool2d(core.float().unsqueeze(1), 5, stride=1, padding=2).squeeze(1) > 0
    alpha = torch.where((alpha > 0.1) & near, alpha, torch.zeros_like(alpha))
    area = alpha.sum((1, 2)).clamp_min(1e-6)

    # 4. position
    ticks = torch.arange(side, dtype=torch.float32) + 0.5
    cx = (alpha.sum(1) * ticks).sum(1) / area
    cy = (alpha.sum(2) * ticks).sum(1) / area
    centers = torch.tensor(S.CENTERS) * side
    position = 3 * (cy[:, None] - centers).abs().argmin(1) + (cx[:, None] - centers).abs().argmin(1)

    # 5. shape: the best-fitting template
    errors, radii = [], []
    for k, name in enumerate(S.SHAPES):
        r = (area / S.AREA[name]).sqrt()
        template = S.coverage(torch.full((n,), k), cx, cy - S.CENTROID_DROP[name] * r, r, side, supersample=2)
        errors.append(torch.stack([(_blur3(template, b) - alpha).square().sum((1, 2)) for b in (0, 1, 2)]).amin(0))
        radii.append(r)
    shape = torch.stack(errors, 1).argmin(1)

    # 6. size
    r = torch.stack(radii, 1).gather(1, shape[:, None]).squeeze(1) / side
    size = (r > (S.RADIUS[0] * S.RADIUS[1]) ** 0.5).long()
    found = peak > 0.25
    fit = torch.stack(errors, 1) / area.clamp_min(1.0)[:, None]
    features = torch.cat([background, core_rgb, torch.stack([cx / side, cy / side, area.sqrt() / side], 1), fit,
                          peak[:, None]], dim=1)
    out = {"shape": shape, "color": color, "size": size, "position": position, "found": found, "features": features}
    return {key: value.to(device) for key, value in out.items()}


# ---------------------------------------------------------------------------- sharpness
def sharpness(images: torch.Tensor) -> torch.Tensor:
    r"""The variance of the Laplacian of each image's brightness, (n,): large for crisp edges.

    The brightness is the mean of the channels in [0, 1]; the Laplacian is the 3 x 3
    stencil [[0, 1, 0], [1, -4, 1], [0, 1, 0]] on the interior pixels. Blurring an image
    lowers it (one 3 x 3 binomial blur divides it by about 6 on shape images); compare a
    model's images with real ones by the ratio of the means.
    """
    images = check_tensor("images", images, ndim=4)
    if images.shape[0] < 1 or images.shape[2] < 3 or images.shape[3] < 3:
        raise ValueError(f"images must be shaped (n, C, H, W) with n >= 1 and H, W >= 3, got {tuple(images.shape)}")
    grey = ((images.detach().float() + 1) / 2).mean(1, keepdim=True)
    stencil = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=grey.device).view(1, 1, 3, 3)
    return F.conv2d(grey, stencil).flatten(1).var(1)
