"""Datasets, all offline: 2D toys (procedural), small images (scikit-learn digits) and captioned shapes."""
from .captioned_shapes import Shapes, parse_caption, shapes
from .images import digits
from .clips import Clips, moving_shapes
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
    "shapes",
    "parse_caption",
    "Shapes",
    "moving_shapes",
    "Clips",
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
