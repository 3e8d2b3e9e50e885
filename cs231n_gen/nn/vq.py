r"""Vector quantisation and the VQ-VAE, read top to bottom: quantiser, encoder, decoder.

**The quantiser.** A codebook holds K vectors :math:`e_1, \dots, e_K \in \mathbb{R}^D`.
Every encoder output vector :math:`z` (one per grid cell) is replaced by its nearest code,

.. math::  k = \arg\min_j \lVert z - e_j \rVert^2, \qquad z_q = e_k .

The argmin has no gradient, so the backward pass copies the decoder's gradient from
:math:`z_q` to :math:`z` unchanged (the **straight-through** estimator): in code,
``z_q = z + (e_k - z).detach()``, whose value is :math:`e_k` and whose derivative with
respect to z is the identity. Two losses train what the straight-through path cannot:

.. math::  \mathcal{L}_\text{codebook} = \lVert \mathrm{sg}[z] - e_k \rVert^2, \qquad
           \mathcal{L}_\text{commit} = \lVert z - \mathrm{sg}[e_k] \rVert^2, \qquad
           \mathcal{L}_\text{VQ} = \mathcal{L}_\text{codebook} + \beta\, \mathcal{L}_\text{commit}

(sg: stop-gradient). The codebook term moves codes towards the encoder outputs that
chose them; the commitment term, weighted by :math:`\beta` (0.25 in the VQ-VAE paper),
keeps the encoder near its codes. The weight belongs on the term that trains the
encoder: put it on the codebook term and the codes learn slowly while the encoder is
pulled hard.

**Dead codes.** A code that no encoder output picks gets no gradient from either loss
and stays where it started: typically most of a randomly initialised codebook dies in
the first steps. Two fixes, both on by default: the first training batch initialises the
codebook from encoder outputs (a few k-means rounds), and a code unused for
``restart_after`` consecutive training batches is moved onto a random encoder output of
the current batch (it is then near data, so it gets picked and trained).

**The VQ-VAE.** A convolutional encoder halves the image side ``log2(size / grid)``
times down to a ``grid x grid`` map of D-dimensional vectors, the quantiser turns each
into a code, and a mirrored decoder turns the codes back into an image: an image becomes
``grid * grid`` integers, the tokens an autoregressive prior then models.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_generator, check_int, check_model_input, check_real, check_tensor
from .layers import Conv2d, ConvTranspose2d

INITS = ("kmeans", "uniform")


class Quantized(NamedTuple):
    """What :class:`VectorQuantizer` returns: ``z_q`` (straight-through, z's shape), ``codes``
    (z's shape without the channel axis), and the two loss terms and their weighted sum."""

    z_q: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor


def _nearest_codes(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(N, D) vectors, (K, D) codebook -> (N,) index of each vector's nearest code (squared L2)."""
    distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1)[None])
    return distances.argmin(dim=1)


class VectorQuantizer(nn.Module):
    """Nearest-code lookup with a straight-through gradient, codebook and commitment losses.

    Args:
        num_codes: codebook size K.
        dim: code dimension D (the channel axis of the input).
        beta: weight of the commitment loss.
        init: "kmeans" (the first training batch initialises the codebook) or "uniform"
            (U(-1/K, 1/K), the original VQ-VAE's initialisation).
        restart_after: in training, move a code unused for this many consecutive
            batches onto a random encoder output of the batch (None: never).

    ``forward(z)`` takes z (B, D, ...) (channels first, any number of spatial axes) and
    returns a :class:`Quantized`.
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, init: str = "kmeans",
                 restart_after: int | None = 20):
        super().__init__()
        self.num_codes = check_int("num_codes", num_codes, minimum=2)
        self.dim = check_int("dim", dim, minimum=1)
        self.beta = check_real("beta", beta, minimum=0.0)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.init = init
        self.restart_after = None if restart_after is None else check_int("restart_after", restart_after, minimum=1)
        self.codebook = nn.Parameter(torch.empty(self.num_codes, self.dim).uniform_(-1 / num_codes, 1 / num_codes))
        self.register_buffer("initialised", torch.tensor(init != "kmeans"))
        self.register_buffer("idle", torch.zeros(self.num_codes, dtype=torch.long))  # batches since last picked
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # codes restarted so far

    def forward(self, z: torch.Tensor) -> Quantized:
        if not isinstance(z, torch.Tensor) or z.ndim < 2:
            raise ValueError(f"z must be a (B, {self.dim}, ...) float tensor (channels first), got {z!r:.80}")
        z = check_model_input("z", z, (None, self.dim) + (None,) * (z.ndim - 2))
        if z.numel() == 0:
            raise ValueError(f"z must hold at least one vector to quantise, got shape {tuple(z.shape)}")
        flat = z.movedim(1, -1).reshape(-1, self.dim)  # one row per grid cell
        if self.training and not bool(self.initialised):
            self._kmeans_init(flat.detach())
        # Nearest code for every vector.
        codes = _nearest_codes(flat.detach(), self.codebook.detach())
        # (a one-hot product rather than codebook[codes]: the same rows, and a gradient
        # summed by a matrix product, so it has the same bits at any CPU thread count)
        e = F.one_hot(codes, self.num_codes).to(self.codebook.dtype) @ self.codebook
        # The two losses: codes move to the encoder outputs; the encoder commits to its codes.
        codebook_loss = F.mse_loss(e, flat.detach())
        commitment_loss = F.mse_loss(flat, e.detach())
        # Straight-through: the value of e, the gradient of the identity.
        z_q = flat + (e - flat).detach()
        if self.training and self.restart_after is not None:
            self._restart_dead(codes, flat.detach())
        spatial = z.movedim(1, -1).shape[:-1]
        return Quantized(z_q.reshape(*spatial, self.dim).movedim(-1, 1), codes.reshape(spatial),
                         codebook_loss, commitment_loss, codebook_loss + self.beta * commitment_loss)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor, rounds: int = 10) -> None:
        """A few rounds of k-means on one batch of encoder outputs (random rows to start)."""
        pick = torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)
        centres = flat[pick].clone()
        for _ in range(rounds):
            assign = _nearest_codes(flat, centres)
            sums = torch.zeros_like(centres).index_add_(0, assign, flat)
            counts = torch.bincount(assign, minlength=self.num_codes)
            used = counts > 0
            centres[used] = sums[used] / counts[used, None]
        self.codebook.copy_(centres)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _restart_dead(self, codes: torch.Tensor, flat: torch.Tensor) -> None:
        self.idle += 1
        self.idle[codes.unique()] = 0
        dead = (self.idle >= self.restart_after).nonzero().flatten()
        if len(dead):
            pick = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)
            self.codebook[dead] = flat[pick]
            self.idle[dead] = 0
            self.restarts += len(dead)


def codebook_usage(codes: torch.Tensor, num_codes: int) -> dict:
    r"""How a codebook is used over a set of codes (a whole dataset's, ideally).

    Returns ``counts`` (per code), ``active`` (codes used at least once),
    ``fraction_active`` and ``perplexity`` :math:`2^{H}` of the code histogram (the
    number of equally used codes that would give the same entropy; K at best).
    """
    num_codes = check_int("num_codes", num_codes, minimum=1)
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex() or codes.numel() == 0:
        raise ValueError(f"codes must be a non-empty integer tensor of code ids, got {codes!r:.80}")
    if bool(((codes < 0) | (codes >= num_codes)).any()):
        raise ValueError(f"codes must lie in 0..{num_codes - 1} (num_codes={num_codes}), got values in "
                         f"{int(codes.min())}..{int(codes.max())}")
    counts = torch.bincount(codes.reshape(-1).long().cpu(), minlength=num_codes)
    p = counts.double() / counts.sum()
    entropy_bits = float(-(p[p > 0] * p[p > 0].log2()).sum())
    active = int((counts > 0).sum())
    return {"counts": counts, "active": active, "fraction_active": active / num_codes,
            "perplexity": 2 ** entropy_bits}


def _conv_stack(widths, down: bool) -> list[nn.Module]:
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        conv = Conv2d(a, b, 4, stride=2, padding=1) if down else ConvTranspose2d(a, b, 4, stride=2, padding=1)
        layers += [conv, nn.SiLU()]
    return layers


class VQVAE(nn.Module):
    """Images (B, C, size, size) in [-1, 1] <-> a (B, grid, grid) map of codes.

    Args:
        channels: image channels (1 for digits, 3 for shapes).
        size: image side; grid: token grid side (``size / grid`` a power of 2).
        num_codes, code_dim: codebook size K and code dimension D.
        width: convolution channels.
        beta, init, restart_after: passed to :class:`VectorQuantizer`.

    ``forward(x)`` returns ``(reconstruction, quantized)`` where ``quantized`` is the
    quantiser's :class:`Quantized` (its ``loss`` is the VQ loss to add to the
    reconstruction loss).
    """

    def __init__(self, channels: int = 1, size: int = 16, grid: int = 4, num_codes: int = 64, code_dim: int = 16,
                 width: int = 64, beta: float = 0.25, init: str = "kmeans", restart_after: int | None = 20):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.size = check_int("size", size, minimum=1)
        self.grid = check_int("grid", grid, minimum=1)
        width = check_int("width", width, minimum=1)
        code_dim = check_int("code_dim", code_dim, minimum=1)
        downs = math.log2(self.size / self.grid) if self.size % self.grid == 0 else -1
        if downs < 0 or downs != int(downs):
            raise ValueError(f"size / grid must be a power of 2, got size={size}, grid={grid}")
        downs = int(downs)
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, init=init, restart_after=restart_after)
        # Encoder: lift to `width` channels, halve the side `downs` times, project to code_dim.
        self.encoder = nn.Sequential(Conv2d(self.channels, width, 3, padding=1), nn.SiLU(),
                                     *_conv_stack([width] * (downs + 1), down=True),
                                     Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                     Conv2d(width, code_dim, 1))
        # Decoder: the mirror image.
        self.decoder = nn.Sequential(Conv2d(code_dim, width, 3, padding=1), nn.SiLU(),
                                     Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                     *_conv_stack([width] * (downs + 1), down=False),
                                     Conv2d(width, self.channels, 3, padding=1))

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def _images(self, x) -> torch.Tensor:
        return check_model_input("x", x, (None, self.channels, self.size, self.size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        quantized = self.quantizer(self.encoder(self._images(x)))
        return torch.tanh(self.decoder(quantized.z_q)), quantized

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Images -> (B, grid, grid) int64 codes (in batches, without gradients)."""
        x = self._images(x)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        device = self.quantizer.codebook.device
        was_training = self.training
        self.eval()  # no codebook initialisation or restarts while encoding
        out = [self.quantizer(self.encoder(x[i:i + batch_size].to(device))).codes
               for i in range(0, x.shape[0], batch_size)]
        self.train(was_training)
        return torch.cat(out).to(x.device)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """(B, grid, grid) codes (or (B, grid * grid) token rows) -> images in [-1, 1]."""
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex():
            raise ValueError(f"codes must be an integer tensor shaped (B, {self.grid}, {self.grid}) or "
                             f"(B, {self.grid * self.grid}), got {codes!r:.80}")
        codes = codes.reshape(codes.shape[0], -1) if codes.ndim == 3 else codes
        if codes.ndim != 2 or codes.shape[1] != self.grid * self.grid:
            raise ValueError(f"codes must be shaped (B, {self.grid}, {self.grid}) or (B, {self.grid * self.grid}), "
                             f"got {tuple(codes.shape)}")
        if codes.numel() and bool(((codes < 0) | (codes >= self.num_codes)).any()):
            raise ValueError(f"codes must lie in 0..{self.num_codes - 1}, got values in "
                             f"{int(codes.min())}..{int(codes.max())}")
        batch_size = check_int("batch_size", batch_size, minimum=1)
        device = self.quantizer.codebook.device
        out = []
        for i in range(0, codes.shape[0], batch_size):
            e = self.quantizer.codebook[codes[i:i + batch_size].to(device).long()]  # (b, grid*grid, D)
            e = e.reshape(-1, self.grid, self.grid, self.quantizer.dim).movedim(-1, 1)
            out.append(torch.tanh(self.decoder(e)))
        return torch.cat(out).to(codes.device)


def vqvae_loss(model: VQVAE, batch, generator=None) -> torch.Tensor:
    """The VQ-VAE's training loss for :func:`~cs231n_gen.train.fit`: reconstruction MSE + VQ loss.

    ``batch`` is images, or (images, labels) (labels ignored).
    """
    if not isinstance(model, VQVAE):
        raise ValueError(f"model must be a VQVAE, got {type(model).__name__}")
    check_generator("generator", generator)
    images = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    images = check_tensor("batch", images, ndim=4)
    if images.shape[1:] != (model.channels, model.size, model.size):
        raise ValueError(f"batch must be images shaped (B, {model.channels}, {model.size}, {model.size}), got "
                         f"{tuple(images.shape)}")
    reconstruction, quantized = model(images)
    return F.mse_loss(reconstruction, images) + quantized.loss


__all__ = ["VectorQuantizer", "Quantized", "VQVAE", "codebook_usage", "vqvae_loss"]
