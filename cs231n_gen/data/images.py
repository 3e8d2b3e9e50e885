"""Small images that need no download: scikit-learn's handwritten digits.

``load_digits`` ships inside the scikit-learn wheel: 1797 grayscale 8 x 8 digits (0-9)
with 17 intensity levels. :func:`digits` returns them as a (N, 1, size, size) float
tensor scaled to [-1, 1] (background -1, ink +1; the range a tanh generator outputs),
upsampled with bilinear interpolation when ``size`` > 8, with a fixed stratified
train/test split (80/20) so every lecture and metric agrees on what "test" means.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .._validate import check_int

DIGIT_SPLITS = ("train", "test", "all")
N_CLASSES = 10


@functools.lru_cache(maxsize=1)
def _raw_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # 0 background .. 1 ink
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(N_CLASSES):  # stratified: 20% of each class
        idx = np.flatnonzero(labels == c)
        test[rng.choice(idx, size=round(0.2 * len(idx)), replace=False)] = True
    return images, labels, test


def digits(size: int = 16, split: str = "train"):
    """Digits as (images, labels): images (N, 1, size, size) in [-1, 1], labels (N,) int64.

    Args:
        size: side length; 8 is the native resolution, larger sizes are bilinear
            upsamplings (16 is the course default: big enough to see, cheap to train).
        split: "train" (1438 images), "test" (359) or "all" (1797).
    """
    size = check_int("size", size, minimum=8)
    if split not in DIGIT_SPLITS:
        raise ValueError(f"split must be one of {DIGIT_SPLITS}, got {split!r}")
    images, labels, test = _raw_digits()
    keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
    x = torch.from_numpy(images[keep]).unsqueeze(1)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x * 2 - 1).clamp(-1, 1).contiguous()
    return x, torch.from_numpy(labels[keep])
