"""Input checks shared by the public functions.

Every public function in the package validates what it is given and raises a
``ValueError`` that names the argument, what it got, and what it needs. These
helpers keep those messages uniform.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return repr(value)


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_real(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
) -> float:
    """Return ``value`` as a finite float within the given bounds, or raise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        if strict_min and value <= minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value}")
        if not strict_min and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_tensor(
    name: str,
    value,
    *,
    ndim: int | None = None,
    last_dim: int | None = None,
    finite: bool = True,
    floating: bool = True,
) -> torch.Tensor:
    """Check that ``value`` is a tensor with the expected rank and trailing size."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}"
        )
    if last_dim is not None and (value.ndim == 0 or value.shape[-1] != last_dim):
        raise ValueError(
            f"{name} must have last dimension {last_dim}, got shape {tuple(value.shape)}"
        )
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def check_points(name: str, value, dim: int | None = None) -> torch.Tensor:
    """A batch of points: a finite float tensor of shape (n, d) with n >= 1."""
    value = check_tensor(name, value, ndim=2, last_dim=dim)
    if value.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(value.shape)}")
    return value


def as_time(
    name: str, t, batch: int, like: torch.Tensor, *, check_values: bool = True
) -> torch.Tensor:
    """Turn a float, 0-d, (n,) or (n, 1) time into a (batch,) tensor on ``like``'s device.

    Times must lie in [0, 1] (t = 0 is clean data, t = 1 is pure noise). Shape checks
    are free; the value checks read the tensor back to the host, so hot loops (a model's
    forward pass inside a sampler) pass ``check_values=False``.
    """
    if isinstance(t, bool):
        raise ValueError(f"{name} must be a number or tensor in [0, 1], got {t!r}")
    if isinstance(t, Real):
        t = torch.tensor(float(t))
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a number or tensor in [0, 1], got {type(t).__name__}")
    t = t.to(device=like.device, dtype=like.dtype)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(
            f"{name} must be a scalar or have shape ({batch},) or ({batch}, 1), "
            f"got shape {tuple(t.shape)}"
        )
    if not check_values:
        return t
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((t < 0).any()) or bool((t > 1).any()):
        raise ValueError(
            f"{name} must lie in [0, 1] (0 = clean data, 1 = pure noise), got values in "
            f"[{t.min().item():.4g}, {t.max().item():.4g}]"
        )
    return t


def check_labels(name: str, value, n: int, n_labels: int, device=None) -> torch.Tensor:
    """Class labels as an (n,) long tensor with values in 0..n_labels-1.

    ``value`` may be one int (the same label for all n rows) or an integer tensor of n
    labels (any shape with n elements).
    """
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = torch.full((n,), int(value), dtype=torch.long, device=device)
    if not isinstance(value, torch.Tensor) or value.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                                    torch.uint8):
        raise ValueError(f"{name} must be an int or an integer tensor of {n} labels, got {_describe(value)}")
    value = value.reshape(-1).to(device=device if device is not None else value.device, dtype=torch.long)
    if value.shape[0] != n:
        raise ValueError(f"{name} must have {n} labels (one per row), got {value.shape[0]}")
    if n and bool(((value < 0) | (value >= n_labels)).any()):
        raise ValueError(f"{name} must lie in 0..{n_labels - 1}, got values in {int(value.min())}..{int(value.max())}")
    return value
