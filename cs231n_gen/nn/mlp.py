r"""A time-conditioned MLP: the denoiser for 2D lectures.

``TimeMLP`` maps (x_t, t) to a vector of the same size as x_t. Time enters through a
Fourier embedding

.. math::  \gamma(t) = [\sin(\omega_1 t), \cos(\omega_1 t), \dots,
                        \sin(\omega_m t), \cos(\omega_m t)],

with geometrically spaced frequencies, which lets a small network represent fields
that change quickly in t (near t = 0 the optimal velocity bends sharply towards the
nearest mode). An optional class label adds a learned embedding; label ``num_classes``
is reserved as the "null" label used by classifier-free guidance. An optional guidance
weight w (``guidance_max``) enters the same way, through its own Fourier features and a
linear map that starts at zero: a guidance-distillation student initialised from a
trained conditional model starts out as exactly that model.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import (as_time, check_int, check_model_input, check_model_labels, check_real, check_row_weights,
                         host_readable)


class FourierTimeEmbedding(nn.Module):
    """gamma(t) for t in [0, 1]: ``dim`` features (sin and cos of dim // 2 frequencies)."""

    def __init__(self, dim: int = 32, max_frequency: float = 100.0):
        super().__init__()
        dim = check_int("dim", dim, minimum=2)
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        max_frequency = check_real("max_frequency", max_frequency, minimum=1.0)
        half = dim // 2
        freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), half))
        self.register_buffer("frequencies", freqs)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = check_model_input("t", t, (None,))
        angles = t[:, None] * self.frequencies[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class TimeMLP(nn.Module):
    """f(x, t[, y]): an MLP with SiLU activations and a Fourier time embedding.

    Args:
        dim: size of x (2 for the 2D lectures).
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        time_dim: size of the time embedding.
        num_classes: if given, the model also takes a label y in {0, ..., num_classes}
            where ``num_classes`` itself is the null label (no conditioning).
        guidance_max: if given, the model also takes a guidance weight w in
            [0, guidance_max] (a number or one per row): ``model(x, t, y, w)``.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 32,
        num_classes: int | None = None,
        guidance_max: float | None = None,
    ):
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        time_dim = check_int("time_dim", time_dim, minimum=2)
        if time_dim % 2:
            raise ValueError(f"time_dim must be even (sin and cos of each frequency), got {time_dim}")
        self.time_embed = FourierTimeEmbedding(time_dim)
        cond_dim = time_dim
        self.num_classes = None
        if num_classes is not None:
            self.num_classes = check_int("num_classes", num_classes, minimum=1)
            self.label_embed = nn.Embedding(self.num_classes + 1, time_dim)
        self.guidance_max = None
        if guidance_max is not None:
            self.guidance_max = check_real("guidance_max", guidance_max, minimum=0.0, strict_min=True)
            self.weight_embed = nn.Sequential(FourierTimeEmbedding(time_dim), nn.Linear(time_dim, time_dim))
            nn.init.zeros_(self.weight_embed[1].weight)
            nn.init.zeros_(self.weight_embed[1].bias)
        layers: list[nn.Module] = [nn.Linear(dim + cond_dim, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no condition" (None for an unconditional model)."""
        return self.num_classes

    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None, w=None) -> torch.Tensor:
        x = check_model_input("x", x, (None, self.dim))
        t = as_time("t", t, x.shape[0], x, check_values=host_readable(x))
        cond = self.time_embed(t)
        if self.num_classes is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            y = check_model_labels("y", y, x.shape[0], self.num_classes)
            cond = cond + self.label_embed(y.long())
        elif y is not None:
            raise ValueError("y was given but this model was built with num_classes=None")
        if self.guidance_max is not None:
            if w is None:
                raise ValueError(f"w (the guidance weight, 0..{self.guidance_max:g}) is required: this model was "
                                 "built with guidance_max")
            w = check_row_weights("w", w, x, maximum=self.guidance_max)
            if not isinstance(w, torch.Tensor):
                w = torch.full((x.shape[0],), w, device=x.device, dtype=x.dtype)
            w = w / self.guidance_max
            cond = cond + self.weight_embed(w)
        elif w is not None:
            raise ValueError("w was given but this model was built with guidance_max=None")
        return self.net(torch.cat([x, cond], dim=1))
