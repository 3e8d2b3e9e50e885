"""Short clips of one moving shape, with captions: the videos of the text-to-video section.

Each clip shows one object of :mod:`~cs231n_gen.data.captioned_shapes` (shape, colour,
size, drawn by the same renderer) crossing a 32 x 32 frame in a straight line: its
centroid moves from one grid line (0.2 of the side) to the opposite one (0.8) at constant
speed over the clip's T frames, along a **lane** (the top, middle or bottom row for
horizontal motion; the left, middle or right column for vertical motion). The caption
names shape, colour, size and **direction**: "a small red circle moving left".

Jitter, drawn once per clip: lane offset and start within 0.025 of the side, size by 8%,
brightness by 6%. The same generator gives the same clips.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .._validate import check_generator, check_int
from .captioned_shapes import BACKGROUND, CENTERS, CENTROID_DROP, COLORS, PALETTE, RADIUS, SHAPES, SIZES, coverage

DIRECTIONS = ("left", "right", "up", "down")
CLIP_ATTRIBUTES = ("shape", "color", "size", "direction")
# unit motion (x to the right, y down) of each direction
STEP = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


class Clips(NamedTuple):
    """A batch of clips: ``videos`` (n, T, 3, size, size) in [-1, 1], ``labels`` and ``captions``."""

    videos: torch.Tensor
    labels: dict
    captions: list


def clip_caption(shape: int, color: int, size: int, direction: int) -> str:
    """The caption of one clip from its label indices, e.g. "a small red circle moving left"."""
    for name, value, names in (("shape", shape, SHAPES), ("color", color, COLORS), ("size", size, SIZES),
                               ("direction", direction, DIRECTIONS)):
        value = check_int(name, value, minimum=0)
        if value >= len(names):
            raise ValueError(f"{name} must be an index 0..{len(names) - 1} into {names}, got {value}")
    return f"a {SIZES[int(size)]} {COLORS[int(color)]} {SHAPES[int(shape)]} moving {DIRECTIONS[int(direction)]}"


def moving_shapes(n: int, frames: int = 8, *, size: int = 32, generator: torch.Generator | None = None,
                  lane: int | None = None) -> Clips:
    """``n`` clips of ``frames`` frames of side ``size``, with labels and captions (see the module).

    Labels: ``shape``, ``color``, ``size``, ``direction`` (indices into :data:`DIRECTIONS`)
    and ``lane`` (0..2, drawn at random unless ``lane`` fixes it; 1 is through the
    centre). A one-frame clip shows the object at the middle of its path.
    """
    n = check_int("n", n, minimum=1)
    frames = check_int("frames", frames, minimum=1)
    size = check_int("size", size, minimum=16)
    generator = check_generator("generator", generator)
    if lane is not None and not 0 <= check_int("lane", lane, minimum=0) <= 2:
        raise ValueError(f"lane must be None (random) or 0, 1, 2, got {lane}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    labels = {
        "shape": torch.randint(len(SHAPES), (n,), generator=g),
        "color": torch.randint(len(COLORS), (n,), generator=g),
        "size": torch.randint(len(SIZES), (n,), generator=g),
        "direction": torch.randint(len(DIRECTIONS), (n,), generator=g),
        "lane": torch.randint(3, (n,), generator=g),
    }
    if lane is not None:
        labels["lane"] = torch.full((n,), lane)
    jitter = torch.rand(n, 4, generator=g) * 2 - 1  # lane offset, start offset, size, brightness
    r = torch.tensor(RADIUS)[labels["size"]] * size * (1 + 0.08 * jitter[:, 2])
    step = torch.tensor([STEP[d] for d in DIRECTIONS])[labels["direction"]]  # (n, 2)
    # progress along the path: from -1 (start line) to +1 (end line); one frame sits in the middle
    progress = torch.linspace(-1, 1, frames) if frames > 1 else torch.zeros(1)
    middle, half_path = CENTERS[1] * size, (CENTERS[2] - CENTERS[1]) * size
    lane = torch.tensor(CENTERS)[labels["lane"]] * size + 0.025 * size * jitter[:, 0]
    along = middle + 0.025 * size * jitter[:, 1:2] + half_path * progress[None, :]  # (n, T), signed by direction
    horizontal = step[:, 0] != 0
    sign = step.sum(1, keepdim=True)  # +1 for right / down, -1 for left / up
    along = middle + sign * (along - middle)
    cx = torch.where(horizontal[:, None], along, lane[:, None].expand(n, frames))
    cy = torch.where(horizontal[:, None], lane[:, None].expand(n, frames), along)
    drop = torch.tensor([CENTROID_DROP[s] for s in SHAPES])[labels["shape"]]
    cy = cy - (drop * r)[:, None]  # the centroid, not the shape's origin, follows the path
    alpha = coverage(labels["shape"].repeat_interleave(frames), cx.flatten(), cy.flatten(),
                     r.repeat_interleave(frames), size).view(n, frames, 1, size, size)
    color = (PALETTE[labels["color"]] * (1 + 0.06 * jitter[:, 3:4])).clamp(0, 1).view(n, 1, 3, 1, 1)
    background = BACKGROUND.view(1, 1, 3, 1, 1)
    rgb = (color - background) * alpha  # background (1 - alpha) + colour alpha, then to [-1, 1], in place
    rgb.add_(background).mul_(2).sub_(1)
    captions = [clip_caption(*(int(labels[a][i]) for a in CLIP_ATTRIBUTES)) for i in range(n)]
    return Clips(rgb, labels, captions)
