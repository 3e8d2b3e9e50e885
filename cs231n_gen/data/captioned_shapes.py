"""Procedural shapes with captions: the images of the second half of the course.

Each image shows one object on a plain dark background: a **shape** (circle, square,
triangle, cross), a **color** (six hues), a **size** (small, large) and a **position**
(a 3 x 3 grid: top left ... bottom right), with mild jitter in position, size and
brightness, so that two draws differ. Objects are drawn with 4 x 4 supersampling
(anti-aliased edges). Every image comes with its labels and a caption such as
"a small red circle at the top left"; :func:`parse_caption` reads a caption back.

The same renderer draws the judge's templates (:func:`cs231n_gen.image_metrics.shape_attributes`).
Geometry (fractions of the side S): grid points at 0.2, 0.5 and 0.8; half-extents 0.11 S
(small) and 0.15 S (large), jittered by 8%; positions jittered by 0.025 S; brightness by 6%.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._validate import check_generator, check_int, check_tensor, check_text

SHAPES = ("circle", "square", "triangle", "cross")
COLORS = ("red", "yellow", "green", "cyan", "blue", "magenta")
PALETTE = torch.tensor([[0.92, 0.16, 0.14], [0.93, 0.84, 0.12], [0.16, 0.80, 0.22],
                        [0.12, 0.82, 0.86], [0.18, 0.32, 0.95], [0.86, 0.20, 0.86]])  # RGB in [0, 1]
SIZES = ("small", "large")
RADIUS = (0.11, 0.15)  # half-extent of a small and a large object, as a fraction of the image side
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
CENTERS = (0.2, 0.5, 0.8)  # grid line centres, as a fraction of the side
BACKGROUND = torch.tensor([0.08, 0.08, 0.10])
ATTRIBUTES = ("shape", "color", "size", "position")
# area of each shape in units of r^2 (r = half-extent), and where its centroid sits below the centre
AREA = {"circle": math.pi, "square": (2 * 0.85) ** 2, "triangle": 1.8, "cross": 20 / 9}
CENTROID_DROP = {"circle": 0.0, "square": 0.0, "triangle": 0.2, "cross": 0.0}


class Shapes(NamedTuple):
    """A batch of shape images: ``images`` (n, 3, size, size) in [-1, 1], ``labels`` and ``captions``."""

    images: torch.Tensor
    labels: dict
    captions: list


PHRASINGS = 3  # ways to word the same caption (see :func:`caption`)


def caption(shape: int, color: int, size: int, position: int, phrasing: int = 0) -> str:
    """The caption of one object from its label indices.

    ``phrasing`` 0: "a small red circle at the top left" (the data's own captions);
    1: "red circle, small, top left"; 2: "at the top left, a small red circle". All three
    name the same four attributes, so :func:`parse_caption` reads the same labels back.
    """
    for name, value, names in (("shape", shape, SHAPES), ("color", color, COLORS), ("size", size, SIZES),
                               ("position", position, POSITIONS), ("phrasing", phrasing, range(PHRASINGS))):
        value = check_int(name, value, minimum=0)
        if value >= len(names):
            raise ValueError(f"{name} must be an index 0..{len(names) - 1} into {tuple(names)}, got {value}")
    shape, color, size, position = SHAPES[int(shape)], COLORS[int(color)], SIZES[int(size)], POSITIONS[int(position)]
    where = "in the center" if position == "center" else f"at the {position}"
    if phrasing == 1:
        return f"{color} {shape}, {size}, {position}"
    if phrasing == 2:
        return f"{where}, a {size} {color} {shape}"
    return f"a {size} {color} {shape} {where}"


def coverage(shape, cx, cy, r, size: int, supersample: int = 4) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1], shape (n, size, size), of objects drawn at (cx, cy) px.

    ``shape`` holds indices into :data:`SHAPES`; ``cx``, ``cy`` (the shape's own origin:
    its centre, or for the triangle the middle of its bounding box) and the half-extent
    ``r`` are float tensors in pixels (x to the right, y down), all of shape (n,). Each
    pixel is split into ``supersample`` x ``supersample`` points and counts the ones inside.
    """
    shape = check_tensor("shape", shape, ndim=1, floating=False)
    if shape.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"shape must be an integer tensor of indices into {SHAPES}, got dtype {shape.dtype}")
    n = shape.shape[0]
    cx, cy, r = (check_tensor(name, v, ndim=1) for name, v in (("cx", cx), ("cy", cy), ("r", r)))
    for name, v in (("cx", cx), ("cy", cy), ("r", r)):
        if v.shape[0] != n:
            raise ValueError(f"{name} must have one value per shape ({n}), got shape {tuple(v.shape)}")
    if bool(((shape < 0) | (shape >= len(SHAPES))).any()):
        raise ValueError(f"shape must hold indices 0..{len(SHAPES) - 1} into {SHAPES}, got {shape.tolist()}")
    if bool((r <= 0).any()):
        raise ValueError("r must be positive (a half-extent in pixels)")
    size = check_int("size", size, minimum=1)
    supersample = check_int("supersample", supersample, minimum=1)
    s = supersample
    ticks = (torch.arange(size * s, dtype=torch.float32) + 0.5) / s  # sub-pixel centres, in pixels
    x = ticks.view(1, 1, -1) - cx.view(-1, 1, 1)
    y = ticks.view(1, -1, 1) - cy.view(-1, 1, 1)
    r = r.view(-1, 1, 1)
    out = torch.empty(n, size, size)
    for start in range(0, n, _CHUNK):  # a chunk at a time: the sub-pixel grids are s * s times an image
        part = slice(start, start + _CHUNK)
        kind = shape[part]
        inside = torch.zeros(kind.shape[0], size * s, size * s, dtype=torch.bool)
        for k, name in enumerate(SHAPES):
            rows = kind == k
            if bool(rows.any()):
                inside[rows] = _inside(name, x[part][rows], y[part][rows], r[part][rows])
        out[part] = torch.nn.functional.avg_pool2d(inside.float().unsqueeze(1), s).squeeze(1)
    return out


_CHUNK = 512


def _inside(name: str, x, y, r) -> torch.Tensor:
    """Which sub-pixel points (x to the right, y down, from the shape's origin) lie inside the shape."""
    if name == "circle":
        return x * x + y * y <= r * r
    if name == "square":
        return torch.maximum(x.abs(), y.abs()) <= 0.85 * r
    if name == "triangle":  # apex (0, -r), base corners (+-r, 0.8 r): inside all three half-planes
        return (y <= 0.8 * r) & (1.8 * x.abs() <= (y + r))
    return ((x.abs() <= r / 3) & (y.abs() <= r)) | ((y.abs() <= r / 3) & (x.abs() <= r))  # cross


def _check_pairs(exclude) -> list:
    """``exclude`` as a list of (shape, color) index pairs that leave every shape and colour some pair."""
    if exclude is None:
        return []
    if not isinstance(exclude, (list, tuple)):
        raise ValueError(f"exclude must be a list of (shape, color) index pairs, got {exclude!r:.80}")
    pairs = []
    for pair in exclude:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"exclude must hold (shape, color) index pairs, got {pair!r:.80}")
        s, c = check_int("exclude's shape", pair[0], minimum=0), check_int("exclude's color", pair[1], minimum=0)
        if s >= len(SHAPES) or c >= len(COLORS):
            raise ValueError(f"exclude's pairs must index SHAPES (0..{len(SHAPES) - 1}) and COLORS "
                             f"(0..{len(COLORS) - 1}), got {pair!r}")
        pairs.append((s, c))
    for s in range(len(SHAPES)):
        if sum(p[0] == s for p in set(pairs)) == len(COLORS):
            raise ValueError(f"exclude removes every colour of the {SHAPES[s]}; leave it at least one")
    return pairs


def shapes(n: int, *, size: int = 32, generator: torch.Generator | None = None, exclude=None) -> Shapes:
    """``n`` random shape images of side ``size`` with their labels and captions (see the module).

    ``exclude``: (shape, color) index pairs never drawn (a colour drawn for an excluded
    pair is drawn again), for held-out combinations; None or [] keeps the plain stream.
    """
    n = check_int("n", n, minimum=1)
    size = check_int("size", size, minimum=16)
    generator = check_generator("generator", generator)
    pairs = _check_pairs(exclude)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    # Labels first, then jitter, all from one generator: the same seed gives the same data.
    labels = {
        "shape": torch.randint(len(SHAPES), (n,), generator=g),
        "color": torch.randint(len(COLORS), (n,), generator=g),
        "size": torch.randint(len(SIZES), (n,), generator=g),
        "position": torch.randint(len(POSITIONS), (n,), generator=g),
    }
    while pairs:
        banned = torch.zeros(n, dtype=torch.bool)
        for s, c in pairs:
            banned |= (labels["shape"] == s) & (labels["color"] == c)
        if not bool(banned.any()):
            break
        labels["color"][banned] = torch.randint(len(COLORS), (int(banned.sum()),), generator=g)
    jitter = torch.rand(n, 4, generator=g) * 2 - 1  # position x, y, size, brightness in [-1, 1]
    r = torch.tensor(RADIUS)[labels["size"]] * size * (1 + 0.08 * jitter[:, 2])
    centers = torch.tensor(CENTERS) * size
    cx = centers[labels["position"] % 3] + 0.025 * size * jitter[:, 0]
    drop = torch.tensor([CENTROID_DROP[s] for s in SHAPES])[labels["shape"]]
    cy = centers[labels["position"] // 3] + 0.025 * size * jitter[:, 1] - drop * r  # centroid on the grid point
    alpha = coverage(labels["shape"], cx, cy, r, size).unsqueeze(1)  # (n, 1, size, size)
    color = PALETTE[labels["color"]] * (1 + 0.06 * jitter[:, 3:4])
    rgb = BACKGROUND.view(1, 3, 1, 1) * (1 - alpha) + color.clamp(0, 1).view(n, 3, 1, 1) * alpha
    captions = [caption(*(int(labels[a][i]) for a in ATTRIBUTES)) for i in range(n)]
    return Shapes(rgb * 2 - 1, labels, captions)


_WORDS = {**{w: ("shape", i) for i, w in enumerate(SHAPES)}, **{w: ("color", i) for i, w in enumerate(COLORS)},
          **{w: ("size", i) for i, w in enumerate(SIZES)}, "big": ("size", 1), "little": ("size", 0)}
_PLACE = {"top": ("row", 0), "bottom": ("row", 2), "left": ("col", 0), "right": ("col", 2),
          "center": ("center", 1), "centre": ("center", 1), "middle": ("center", 1)}
_FILLER = {"a", "an", "the", "at", "in", "on", "of", "one", "with", "and"}


def parse_caption(text: str) -> dict:
    """Label indices named by a caption: ``{"shape": 0, "color": 0, "size": 0, "position": 0}``.

    Only the attributes the caption mentions are returned ("a red circle" has no size or
    position). Word order is free ("red circle, small, top left"); a word the course's
    vocabulary does not have raises ``ValueError`` naming it.
    """
    text = check_text("text", text)
    found, place = {}, {}
    for word in text.lower().replace(",", " ").replace(".", " ").replace("-", " ").split():
        if word in _FILLER:
            continue
        if word in _WORDS:
            key, value = _WORDS[word]
            if key in found and found[key] != value:
                raise ValueError(f"text names two {key}s ({text!r})")
            found[key] = value
        elif word in _PLACE:
            key, value = _PLACE[word]
            if key in place and place[key] != value:
                raise ValueError(f"text names two positions ({text!r})")
            place[key] = value
        else:
            known = sorted(set(_WORDS) | set(_PLACE))
            raise ValueError(f"text has the word {word!r}, which the shapes captions do not use; "
                             f"known words: {', '.join(known)}")
    if place:
        found["position"] = 3 * place.get("row", 1) + place.get("col", 1)
    return found
