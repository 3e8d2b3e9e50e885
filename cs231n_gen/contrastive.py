r"""Contrastive image-text training (CLIP), its retrieval metric, and freezing what it trained.

For a batch of B matching pairs with image embeddings :math:`u_i` and text embeddings
:math:`v_j`, both scaled to unit length, the logits are the cosine similarities over a
temperature :math:`\tau`,

.. math::  S_{ij} = \frac{u_i^\top v_j}{\tau}, \qquad
           \mathcal{L} = \tfrac12\Big[\mathrm{CE}(S, \mathrm{diag}) + \mathrm{CE}(S^\top, \mathrm{diag})\Big]

row i of S asks "which caption belongs to image i?", row j of :math:`S^\top` "which image
belongs to caption j?"; the right answer is the diagonal in both, and every other item
of the batch is a negative. A small :math:`\tau` sharpens the softmax (CLIP learns it,
starting at 0.07).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_real, check_tensor


def _pair(image_emb, text_emb):
    image_emb = check_tensor("image_emb", image_emb, ndim=2)
    text_emb = check_tensor("text_emb", text_emb, ndim=2)
    if image_emb.shape != text_emb.shape or image_emb.shape[0] < 1:
        raise ValueError(f"image_emb and text_emb must both be (B, d) with B >= 1, row i of each from the same pair; "
                         f"got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    return image_emb, text_emb


def similarity(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (B_images, B_texts): entry [i, j] compares image i with text j."""
    image_emb = check_tensor("image_emb", image_emb, ndim=2)
    text_emb = check_tensor("text_emb", text_emb, ndim=2)
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"image_emb and text_emb must have the same embedding size, got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    return F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the batch (see the module); a scalar.

    ``temperature``: tau > 0, a number or a scalar tensor (a learned one gets gradients).
    """
    image_emb, text_emb = _pair(image_emb, text_emb)
    if isinstance(temperature, torch.Tensor) and temperature.numel() == 1:
        value = float(temperature.detach())
        if not value > 0 or value == float("inf"):
            raise ValueError(f"temperature must be a positive finite number, got {value}")
    else:
        temperature = check_real("temperature", temperature, minimum=0.0, strict_min=True)
    logits = similarity(image_emb, text_emb) / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def retrieval_accuracy(image_emb: torch.Tensor, text_emb: torch.Tensor, groups: torch.Tensor | None = None) -> float:
    """Image-to-text top-1 retrieval within the batch: the fraction of images whose most
    similar text is their own.

    ``groups`` (B,) integer: texts with the same group say the same thing (two images with
    identical attributes): retrieving any text of the image's own group counts as right.
    """
    image_emb, text_emb = _pair(image_emb, text_emb)
    n = image_emb.shape[0]
    if groups is None:
        groups = torch.arange(n)
    if not isinstance(groups, torch.Tensor) or groups.shape != (n,) or groups.is_floating_point():
        raise ValueError(f"groups must be a ({n},) integer tensor, got {groups!r:.80}")
    best = similarity(image_emb, text_emb).argmax(1).cpu()
    groups = groups.cpu()
    return float((groups[best] == groups).float().mean())


def freeze(module: nn.Module) -> nn.Module:
    """Stop training ``module``: no parameter needs a gradient, and it is put in eval mode. Returns it."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    module.requires_grad_(False)
    return module.eval()
