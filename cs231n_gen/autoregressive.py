r"""Autoregressive models: exact likelihoods, sampling with temperature and top-k, baselines.

A model such as :class:`~cs231n_gen.nn.GPT` gives, for a sequence :math:`s_1..s_T` and a
condition c, every factor of the chain rule at once, so the exact log-likelihood is one
forward pass:

.. math::  \log_2 p(s \mid c) = \sum_{i=1}^{T} \log_2 p(s_i \mid c, s_{<i}),
           \qquad \text{bits per token} = -\tfrac{1}{T} \log_2 p(s \mid c).

A model that knows nothing pays :math:`\log_2 K` bits per token (uniform over K tokens).
Sampling is the chain rule run forwards, one token at a time: T sequential network
evaluations for T tokens. Each step draws from the softmax of the logits divided by a
**temperature** :math:`\tau` (:math:`\tau < 1` sharpens, :math:`\tau \to 0` is greedy
argmax, :math:`\tau > 1` flattens) after keeping only the **top k** logits (the rest can
never be drawn).

:class:`MarginalCodes` is the baseline every prior must beat: each position's tokens
drawn independently from their histogram (per class), i.e. the chain rule with every
dependence between tokens dropped.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._validate import check_generator, check_int, check_labels, check_real, check_tensor, check_tokens
from .threads import following


def _labels_for(model, y, n: int, device):
    if getattr(model, "num_classes", None) is None:
        if y is not None:
            raise ValueError("y was given but the model is unconditional (num_classes=None)")
        return None
    if y is None:
        return torch.full((n,), model.num_classes, dtype=torch.long, device=device)  # the null label
    return check_labels("y", y, n, model.num_classes + 1, device, rows_of="tokens")


def _check_model(model):
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "vocab_size") or not hasattr(model, "block_size"):
        raise ValueError(f"model must be an autoregressive model with vocab_size and block_size (such as "
                         f"cs231n_gen.nn.GPT), got {type(model).__name__}")
    return model


def _checked_tokens(model, tokens, y, name: str = "tokens"):
    """The door of the functions below: (tokens as int64, labels or None), checked once."""
    tokens = check_tokens(name, tokens, model.vocab_size, max_length=model.block_size)
    if tokens.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one token per sequence, got shape (B, 0)")
    return tokens, _labels_for(model, y, tokens.shape[0], tokens.device)


def _log_probs(model, tokens: torch.Tensor, labels) -> torch.Tensor:
    """log p(s_i | c, s_<i) of checked tokens: the network reads the prefix and s_<i, and
    row i of its output is the distribution of s_i."""
    logits = model(tokens[:, :-1], labels)
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, tokens[..., None]).squeeze(-1)


def token_log_probs(model, tokens: torch.Tensor, y=None) -> torch.Tensor:
    """(B, T) tokens -> (B, T) natural-log probabilities log p(s_i | c, s_<i) under ``model``."""
    model = _check_model(model)
    return _log_probs(model, *_checked_tokens(model, tokens, y))


def ar_loss(model, batch, generator=None) -> torch.Tensor:
    """Next-token cross-entropy (nats per token), the loss for :func:`~cs231n_gen.train.fit`.

    ``batch`` is tokens (B, T), or (tokens, labels) for a class-conditional model.
    """
    model = _check_model(model)
    if isinstance(batch, (tuple, list)) and len(batch) != 2:
        raise ValueError(f"batch must be tokens (B, T) or a pair (tokens, labels), got a sequence of {len(batch)}")
    tokens, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
    try:
        log_probs = token_log_probs(model, tokens, y)
    except ValueError as err:  # name what the caller passed
        raise ValueError(f"batch: {err}") from err
    return -log_probs.mean()


@torch.no_grad()
def bits_per_token(model, tokens: torch.Tensor, y=None, batch_size: int = 1024) -> float:
    """The mean of -log2 p(s_i | c, s_<i) over every token of every sequence (exact)."""
    model = _check_model(model)
    tokens, labels = _checked_tokens(model, tokens, y)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, tokens.shape[0], batch_size):
        part = None if labels is None else labels[i:i + batch_size].to(device)
        total += float(_log_probs(model, tokens[i:i + batch_size].to(device), part).sum())
    return -total / (tokens.numel() * math.log(2))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One sampling step: (B, K) logits -> (B,) token ids.

    Keeps the ``top_k`` largest logits of each row (exactly k, ties broken by position;
    None or k >= K keeps all), divides by ``temperature`` and draws from the softmax;
    ``temperature`` 0 takes the argmax.
    """
    logits = check_tensor("logits", logits, ndim=2)
    temperature, top_k = _sampling_settings(temperature, top_k)
    return _draw(logits, temperature, top_k, check_generator("generator", generator, logits.device))


def _sampling_settings(temperature, top_k) -> tuple[float, int | None]:
    temperature = check_real("temperature", temperature, minimum=0.0)
    return temperature, None if top_k is None else check_int("top_k", top_k, minimum=1)


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, generator) -> torch.Tensor:
    """:func:`sample_next` on checked settings (a sampler's inner loop)."""
    if temperature == 0:
        return logits.argmax(dim=1)
    if top_k is not None and top_k < logits.shape[1]:
        keep = logits.topk(top_k, dim=1).indices
        logits = torch.full_like(logits, float("-inf")).scatter(1, keep, logits.gather(1, keep))
    probs = F.softmax(logits.float() / temperature, dim=1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def sample(model, n: int, length: int, y=None, *, temperature: float = 1.0, top_k: int | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n sequences of ``length`` tokens, one token per network evaluation -> (n, length).

    ``y``: a label (or one per row) for a class-conditional model; None draws
    unconditionally (the null label). The network is re-run on the whole prefix at every
    step (no key-value cache: ``length`` evaluations on growing sequences).
    """
    model = _check_model(model)
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=1)
    if length > model.block_size:
        raise ValueError(f"length must be <= the model's block_size={model.block_size}, got {length}")
    device = next(model.parameters()).device
    labels = _labels_for(model, y, n, device)
    temperature, top_k = _sampling_settings(temperature, top_k)
    generator = check_generator("generator", generator, device)
    was_training = model.training
    model.eval()
    tokens = torch.zeros(n, 0, dtype=torch.long, device=device)
    with following(model, device) as network:  # fewer threads when another program starts
        for _ in range(length):
            # The distribution of the next token given everything so far; draw it; append it.
            logits = network(tokens, labels)[:, -1]
            tokens = torch.cat([tokens, _draw(logits, temperature, top_k, generator)[:, None]], dim=1)
    model.train(was_training)
    return tokens


class MarginalCodes:
    """Each position's tokens drawn independently from their (per-class) histogram.

    Args:
        tokens: (N, T) training tokens; vocab_size: K.
        labels: optional (N,) class labels (then one histogram per class and position).
        num_classes: number of classes (default: max label + 1).
        smoothing: added to every count (Laplace), so held-out tokens never get
            probability 0.
    """

    def __init__(self, tokens: torch.Tensor, vocab_size: int, labels=None, num_classes: int | None = None,
                 smoothing: float = 1.0):
        self.vocab_size = check_int("vocab_size", vocab_size, minimum=2)
        tokens = check_tokens("tokens", tokens, self.vocab_size).cpu()
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ValueError(f"tokens must hold at least one sequence of at least one token, got {tuple(tokens.shape)}")
        smoothing = check_real("smoothing", smoothing, minimum=0.0)
        if labels is None:
            self.num_classes, labels = None, torch.zeros(tokens.shape[0], dtype=torch.long)
        else:
            if num_classes is None:
                if not isinstance(labels, torch.Tensor) or labels.numel() == 0:
                    raise ValueError(f"labels must be an integer tensor of {tokens.shape[0]} labels, "
                                     f"got {labels!r:.80}")
                num_classes = int(labels.max()) + 1
            self.num_classes = check_int("num_classes", num_classes, minimum=1)
            labels = check_labels("labels", labels, tokens.shape[0], self.num_classes, "cpu", rows_of="tokens")
        groups = self.num_classes or 1
        counts = torch.zeros(groups, tokens.shape[1], self.vocab_size, dtype=torch.float64)
        counts.index_put_((labels[:, None].expand_as(tokens), torch.arange(tokens.shape[1]).expand_as(tokens), tokens),
                          torch.ones(tokens.shape, dtype=torch.float64), accumulate=True)
        counts += smoothing
        if bool((counts.sum(-1) == 0).any()):
            raise ValueError("smoothing=0 leaves a class with no tokens at some position: use smoothing > 0")
        self.probs = counts / counts.sum(-1, keepdim=True)  # (classes, T, K)
        self.length = tokens.shape[1]

    def _labels(self, y, n):
        if self.num_classes is None:
            if y is not None:
                raise ValueError("y was given but these marginals were fitted without labels")
            return torch.zeros(n, dtype=torch.long)
        if y is None:
            raise ValueError(f"y is required (labels 0..{self.num_classes - 1}): these marginals are per class")
        return check_labels("y", y, n, self.num_classes, "cpu", rows_of="tokens")

    def bits_per_token(self, tokens: torch.Tensor, y=None) -> float:
        tokens = check_tokens("tokens", tokens, self.vocab_size).cpu()
        if tokens.shape[1] != self.length or tokens.shape[0] == 0:
            raise ValueError(f"tokens must be shaped (N, {self.length}) with N >= 1, got {tuple(tokens.shape)}")
        labels = self._labels(y, tokens.shape[0])
        p = self.probs[labels[:, None], torch.arange(self.length)[None], tokens]
        return float(-p.log2().mean())

    def sample(self, n: int, y=None, generator: torch.Generator | None = None) -> torch.Tensor:
        n = check_int("n", n, minimum=1)
        generator = check_generator("generator", generator, "cpu")
        probs = self.probs[self._labels(y, n)].reshape(-1, self.vocab_size)
        return torch.multinomial(probs, 1, generator=generator).reshape(n, self.length)


def to_levels(images: torch.Tensor, levels: int = 17) -> torch.Tensor:
    """Images in [-1, 1] -> integer grey levels 0..levels-1, one token per pixel, (N, pixels)."""
    images = check_tensor("images", images, ndim=4)
    levels = check_int("levels", levels, minimum=2)
    if bool(((images < -1) | (images > 1)).any()):
        raise ValueError("images must lie in [-1, 1]")
    return ((images + 1) / 2 * (levels - 1)).round().long().flatten(1)


def from_levels(tokens: torch.Tensor, side: int, levels: int = 17) -> torch.Tensor:
    """The inverse of :func:`to_levels` for one-channel square images: (N, side*side) -> (N, 1, side, side)."""
    levels = check_int("levels", levels, minimum=2)
    side = check_int("side", side, minimum=1)
    tokens = check_tokens("tokens", tokens, levels)
    if tokens.shape[1] != side * side:
        raise ValueError(f"tokens must hold side*side={side * side} pixels per row, got {tokens.shape[1]}")
    return (tokens.float() / (levels - 1) * 2 - 1).reshape(-1, 1, side, side)
