"""Datasets, all offline: 2D toys (procedural) and small images (scikit-learn digits)."""
from .images import digits
from .toy2d import (
    Checkerboard,
    GaussianMixture,
    LabelledMixture,
    Spiral,
    TwoMoons,
    checkerboard,
    eight_gaussians,
    grid_gaussians,
    moons,
    overlapping_classes,
    ring_gaussians,
    spiral,
)

__all__ = [
    "digits",
    "GaussianMixture",
    "LabelledMixture",
    "overlapping_classes",
    "TwoMoons",
    "Checkerboard",
    "Spiral",
    "eight_gaussians",
    "ring_gaussians",
    "grid_gaussians",
    "moons",
    "checkerboard",
    "spiral",
]
