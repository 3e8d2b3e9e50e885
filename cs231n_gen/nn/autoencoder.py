r"""The autoencoder of latent diffusion, read top to bottom: encoder, decoder, VAE, patch critic.

An image x of shape (3, H, W) goes to a latent of shape (C, H/D, W/D): D-fold spatial
downsampling with more channels per position (the slides' 256 x 256 x 3 -> 32 x 32 x 16
with D = 8, C = 16; here 32 x 32 x 3 -> 8 x 8 x 4 with D = 4, C = 4).

The encoder predicts a diagonal Gaussian q(z | x) = N(mu(x), diag(exp(log_var(x)))); a
latent is drawn with the reparameterisation z = mu + exp(log_var / 2) * eps, so the
gradient reaches mu and log_var. The decoder maps z back to pixels. Trained as a VAE
with a small KL weight (:mod:`cs231n_gen.autoencoding`), the latents stay close to the
data (good reconstructions) and only loosely near N(0, I).

:class:`PatchDiscriminator` scores overlapping patches (one logit per patch): the
adversarial loss that sharpens the decoder's blurry reconstructions judges local
texture, not the whole image.

Every convolution works at any resolution divisible by D; channel counts stay small so
that a 2-core CPU trains the whole autoencoder in about a minute. The convolutions are
:mod:`cs231n_gen.nn.layers`' (torch's, with the weight gradient summed in one order), so
training computes the same numbers at any CPU thread count (group norm does already).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import check_generator, check_int, check_model_input
from .layers import Conv2d, GroupNorm


def _sizes(in_channels, latent_channels, width, factor, factor_name: str) -> tuple[int, int, int, int]:
    """The autoencoder's size arguments, checked: positive ints, the factor a power of 2 (>= 2)."""
    in_channels = check_int("in_channels" if factor_name == "downsample" else "out_channels", in_channels, minimum=1)
    latent_channels = check_int("latent_channels", latent_channels, minimum=1)
    width = check_int("width", width, minimum=1)
    factor = check_int(factor_name, factor, minimum=2)
    if factor & (factor - 1):
        raise ValueError(f"{factor_name} must be a power of 2 (each level halves the resolution), got {factor}")
    return in_channels, latent_channels, width, factor


def _images(name: str, x, channels: int, factor: int) -> torch.Tensor:
    """(n, channels, H, W) with H and W divisible by ``factor``."""
    x = check_model_input(name, x, (None, channels, None, None))
    if x.shape[0] < 1 or x.shape[2] % factor or x.shape[3] % factor or x.shape[2] < factor or x.shape[3] < factor:
        raise ValueError(f"{name} must be shaped (n, {channels}, H, W) with n >= 1 and H, W positive multiples of "
                         f"{factor}, got {tuple(x.shape)}")
    return x


def _norm(channels: int) -> GroupNorm:
    return GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """x + conv(SiLU(norm(conv(SiLU(norm(x)))))) at a fixed width (the unit both halves repeat)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_model_input("x", x, (None, self.channels, None, None))
        return x + self.body(x)


def _widths(width: int, levels: int) -> list[int]:
    """Channels at each resolution, full resolution first: width, 2 width, 2 width, ..."""
    return [width] + [2 * width] * levels


class Encoder(nn.Module):
    """(n, in_channels, H, W) -> mean and log-variance, each (n, latent_channels, H/D, W/D)."""

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, width: int = 16, downsample: int = 4):
        super().__init__()
        in_channels, latent_channels, width, downsample = _sizes(in_channels, latent_channels, width, downsample,
                                                                 "downsample")
        self.in_channels, self.downsample = in_channels, downsample
        levels = int(math.log2(downsample))
        widths = _widths(width, levels)
        self.stem = Conv2d(in_channels, widths[0], 3, padding=1)
        stages = []
        for level in range(levels):  # halve the resolution, then refine at the new one
            stages += [Conv2d(widths[level], widths[level + 1], 3, stride=2, padding=1),
                       ResBlock(widths[level + 1])]
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(_norm(widths[-1]), nn.SiLU(), Conv2d(widths[-1], 2 * latent_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _images("x", x, self.in_channels, self.downsample)
        h = self.head(self.stages(self.stem(x)))
        mean, log_var = h.chunk(2, dim=1)
        return mean, log_var.clamp(-20.0, 10.0)  # keeps exp(log_var) finite early in training


class Decoder(nn.Module):
    """(n, latent_channels, h, w) -> (n, out_channels, h D, w D) in [-1, 1] (a tanh at the end).

    The mirror of :class:`Encoder`, with no residual block at full resolution (where a
    small autoencoder would spend most of its time).
    """

    def __init__(self, latent_channels: int = 4, out_channels: int = 3, width: int = 16, upsample: int = 4):
        super().__init__()
        out_channels, latent_channels, width, upsample = _sizes(out_channels, latent_channels, width, upsample,
                                                                "upsample")
        self.latent_channels = latent_channels
        levels = int(math.log2(upsample))
        widths = _widths(width, levels)[::-1]  # lowest resolution first
        self.stem = nn.Sequential(Conv2d(latent_channels, widths[0], 3, padding=1), ResBlock(widths[0]))
        stages = []
        for level in range(levels):  # double the resolution, then refine at the new one
            stages += [nn.Upsample(scale_factor=2, mode="nearest"),
                       Conv2d(widths[level], widths[level + 1], 3, padding=1)]
            if level < levels - 1:
                stages.append(ResBlock(widths[level + 1]))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(_norm(widths[-1]), nn.SiLU())
        # The adaptive GAN weight is measured at this layer (autoencoding.adaptive_weight).
        self.last_layer = Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = _images("z", z, self.latent_channels, 1)
        return torch.tanh(self.last_layer(self.head(self.stages(self.stem(z)))))


class VAE(nn.Module):
    """Encoder and decoder with a Gaussian latent: ``encode``, ``sample``, ``decode``.

    Args:
        in_channels: image channels (3).
        latent_channels: C, channels per latent position.
        width: channels at full resolution (doubled at the lower ones).
        downsample: D, a power of 2; H and W must be divisible by it.
    """

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, width: int = 16, downsample: int = 4):
        super().__init__()
        in_channels, latent_channels, width, downsample = _sizes(in_channels, latent_channels, width, downsample,
                                                                 "downsample")
        self.in_channels, self.latent_channels, self.downsample = in_channels, latent_channels, downsample
        self.encoder = Encoder(in_channels, latent_channels, width, downsample)
        self.decoder = Decoder(latent_channels, in_channels, width, downsample)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, H/D, W/D): the latent of an image of this size."""
        for name, side in (("height", height), ("width", width)):
            side = check_int(name, side, minimum=1)
            if side % self.downsample:
                raise ValueError(f"{name} must be divisible by downsample={self.downsample}, got {side}")
        return self.latent_channels, height // self.downsample, width // self.downsample

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z | x): its mean and log-variance, each (n, C, H/D, W/D)."""
        return self.encoder(x)

    def sample(self, mean: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None):
        """z = mean + exp(log_var / 2) * eps with eps ~ N(0, I): a draw that gradients pass through."""
        mean = _images("mean", mean, self.latent_channels, 1)
        log_var = check_model_input("log_var", log_var, (None, self.latent_channels, None, None))
        if log_var.shape != mean.shape:
            raise ValueError(f"log_var must have the shape of mean {tuple(mean.shape)}, got {tuple(log_var.shape)}")
        generator = check_generator("generator", generator, mean.device)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (n, in_channels, h D, w D) in [-1, 1] from latents (n, C, h, w)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """(reconstruction, mean, log_var) for images x, through one sampled latent."""
        generator = check_generator("generator", generator)
        mean, log_var = self.encode(x)
        return self.decoder(self.sample(mean, log_var, generator)), mean, log_var


class PatchDiscriminator(nn.Module):
    """Images (n, C, H, W) -> one realness logit per overlapping patch, (n, 1, H/8, W/8).

    Three stride-2 convolutions and a 1 x 1 convolution to one logit: each logit sees a
    22 x 22 pixel patch (the stack's receptive field), and neighbouring patches overlap
    by 14 pixels. Patches this large keep the object of a 32 x 32 image in most of them,
    so the critic's average over patches is not swamped by plain background. Group norm,
    no batch statistics: every image is judged on its own.
    """

    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, minimum=1)
        width = check_int("width", width, minimum=1)
        self.in_channels = in_channels
        self.net = nn.Sequential(
            Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            Conv2d(width, 2 * width, 4, stride=2, padding=1), _norm(2 * width), nn.LeakyReLU(0.2),
            Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), _norm(2 * width), nn.LeakyReLU(0.2),
            Conv2d(2 * width, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _images("x", x, self.in_channels, 1)
        return self.net(x)
