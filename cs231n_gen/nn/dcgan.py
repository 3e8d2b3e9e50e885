r"""DCGAN-style convolutional players for small square images, and StyleGAN's AdaIN.

Radford et al. (2016) made GANs work on real images with a few rules these modules
follow: strided (transposed) convolutions instead of pooling, batch norm in the
generator, LeakyReLU in the discriminator, tanh on the generator's output. The layers are
:mod:`cs231n_gen.nn.layers`' (torch's, computed so that training gives the same numbers at
any CPU thread count).

``AdaIN`` (Huang & Belongie 2017; the style block of StyleGAN, Karras et al. 2019)
normalises each channel of each example and then applies a predicted scale and shift:

.. math::  \mathrm{AdaIN}(x, w, b)_i = w_i \frac{x_i - \mu(x_i)}{\sigma(x_i)} + b_i,

with mu and sigma the mean and standard deviation of channel i over its pixels. The
output of channel i therefore has mean exactly b_i and standard deviation |w_i|: the
"style" (w, b) sets the statistics, the input keeps only its spatial pattern.
"""
from __future__ import annotations

import torch
from torch import nn

from .._validate import check_int, check_model_input, check_real, check_tensor
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d


def adain(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN(x, w, b) for x (n, c, h, w) and per-example, per-channel w, b of shape (n, c)."""
    x = check_tensor("x", x, ndim=4)
    n, c = x.shape[:2]
    w = check_tensor("w", w, ndim=2)
    b = check_tensor("b", b, ndim=2)
    for name, v in (("w", w), ("b", b)):
        if v.shape != (n, c):
            raise ValueError(f"{name} must have shape ({n}, {c}) (one value per example and channel), "
                             f"got {tuple(v.shape)}")
    eps = check_real("eps", eps, minimum=0.0, strict_min=True)
    mu = x.mean(dim=(2, 3), keepdim=True)
    sigma = (x.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return w[:, :, None, None] * (x - mu) / sigma + b[:, :, None, None]


class AdaIN(nn.Module):
    """Predicts (w, b) from a style vector with one linear layer, then applies :func:`adain`.

    The scale is parameterised as 1 + (predicted), so a fresh module starts close to
    plain instance normalisation.
    """

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.style_dim = check_int("style_dim", style_dim, minimum=1)
        self.to_style = nn.Linear(self.style_dim, 2 * self.channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = check_model_input("x", x, (None, self.channels, None, None))
        style = check_model_input("style", style, (None, self.style_dim))
        if style.shape[0] != x.shape[0] or x.shape[0] < 1:
            raise ValueError(f"style must have one row per image of x, got {style.shape[0]} rows for "
                             f"{x.shape[0]} images")
        w, b = self.to_style(style).chunk(2, dim=1)
        return adain(x, 1 + w, b)


class DCGenerator(nn.Module):
    """z (n, z_dim) -> image (n, 1, size, size) in [-1, 1]; size = 4 * 2^k (16 by default)."""

    def __init__(self, z_dim: int = 32, size: int = 16, width: int = 64, channels: int = 1):
        super().__init__()
        self.z_dim = check_int("z_dim", z_dim, minimum=1)
        self.size = check_int("size", size, minimum=8)
        n_up = (self.size // 4).bit_length() - 1
        if 4 * 2 ** n_up != self.size:
            raise ValueError(f"size must be 4 times a power of two (8, 16, 32, ...), got {size}")
        width = check_int("width", width, minimum=1)
        chans = [width * 2 ** (n_up - 1 - i) for i in range(n_up)]  # e.g. [128, 64] for 16 px
        self.project = nn.Sequential(nn.Linear(self.z_dim, chans[0] * 16), BatchNorm1d(chans[0] * 16), nn.ReLU())
        layers = []
        for i in range(n_up):
            out = chans[i + 1] if i + 1 < n_up else check_int("channels", channels, minimum=1)
            layers.append(ConvTranspose2d(chans[i], out, 4, stride=2, padding=1))
            layers += [BatchNorm2d(out), nn.ReLU()] if i + 1 < n_up else [nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self._c0 = chans[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = check_model_input("z", z, (None, self.z_dim))
        if z.shape[0] < (2 if self.training else 1):
            raise ValueError(f"z must hold at least {2 if self.training else 1} latents "
                             f"({'batch norm in training mode needs 2' if self.training else 'one image each'}), "
                             f"got {z.shape[0]}")
        return self.body(self.project(z).reshape(z.shape[0], self._c0, 4, 4))


class DCDiscriminator(nn.Module):
    """image (n, 1, size, size) -> logits (n,): strided convs with LeakyReLU(0.2)."""

    def __init__(self, size: int = 16, width: int = 64, channels: int = 1):
        super().__init__()
        self.size = check_int("size", size, minimum=8)
        n_down = (self.size // 4).bit_length() - 1
        if 4 * 2 ** n_down != self.size:
            raise ValueError(f"size must be 4 times a power of two (8, 16, 32, ...), got {size}")
        width = check_int("width", width, minimum=1)
        layers, c = [], check_int("channels", channels, minimum=1)
        for i in range(n_down):
            out = width * 2 ** i
            layers += [Conv2d(c, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = out
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * 16, 1))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_model_input("x", x, (None, self.channels, self.size, self.size))
        if x.shape[0] < 1:
            raise ValueError(f"x must hold at least one image, got shape {tuple(x.shape)}")
        return self.body(x)[:, 0]
