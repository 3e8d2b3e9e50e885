"""Datasets: 2D toys (offline, procedural)."""
from .toy2d import (
    Checkerboard,
    GaussianMixture,
    Spiral,
    TwoMoons,
    checkerboard,
    eight_gaussians,
    grid_gaussians,
    moons,
    ring_gaussians,
    spiral,
)

__all__ = [
    "GaussianMixture",
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
