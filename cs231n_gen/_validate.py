"""Input checks shared by the public functions.

Every public function in the package validates what it is given and raises a
``ValueError`` that names the argument, what it got, and what it needs. These
helpers keep those messages uniform.

Checks of a tensor's *values* (NaN, a range) read the tensor back to the host. On the CPU
that costs nothing; on an accelerator it stalls the device until its queue drains, at
every call of a training step or a sampler's model. So value checks run on CPU tensors
only (:func:`host_readable`); on an accelerator the shape and type checks still run, and
the trainers' NaN guard and the samplers' own checks catch bad values there.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def host_readable(t: torch.Tensor) -> bool:
    """Whether reading ``t``'s values costs nothing (it lives on the CPU; see the module)."""
    return t.device.type == "cpu"


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


def check_width_and_heads(width, heads, *, multiple_of: int = 1, why: str = "") -> tuple[int, int]:
    """A transformer's token width and head count as ints: width splits evenly into the heads
    (each head gets width / heads features) and, where ``multiple_of`` > 1, into that many parts
    too (``why`` says what needs it, e.g. sin-cos position embeddings)."""
    width, heads = check_int("width", width, minimum=1), check_int("heads", heads, minimum=1)
    if width % heads or width % multiple_of:
        also = f" and by {multiple_of}{f' ({why})' if why else ''}" if multiple_of > 1 else ""
        raise ValueError(f"width must be divisible by heads={heads}{also}, got {width}")
    return width, heads


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
    if finite and value.is_floating_point() and host_readable(value) and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def check_points(name: str, value, dim: int | None = None) -> torch.Tensor:
    """A batch of points: a finite float tensor of shape (n, d) with n >= 1."""
    value = check_tensor(name, value, ndim=2, last_dim=dim)
    if value.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(value.shape)}")
    return value


def check_batch(name: str, value) -> torch.Tensor:
    """A batch of items of any shape: a finite float tensor (n, ...) with n >= 1 and ndim >= 2
    (points (n, d), images (n, C, H, W), latents)."""
    value = check_tensor(name, value)
    if value.ndim < 2 or value.shape[0] < 1:
        raise ValueError(f"{name} must be a batch shaped (n, d) or (n, C, H, W) with n >= 1, got {tuple(value.shape)}")
    return value


def per_row(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (n,) tensor viewed as (n, 1, ..., 1) to broadcast against ``like`` (n, ...)."""
    return t.reshape(t.shape[0], *([1] * (like.ndim - 1)))


def check_items(name: str, value, dim: int | None = None, like: str = "the reference") -> torch.Tensor:
    """n >= 1 items of any shape (points, images), finite: returned as (n, numbers per item)."""
    value = check_tensor(name, value)
    if value.ndim < 2 or value.shape[0] < 1 or value[0].numel() < 1:
        raise ValueError(f"{name} must be shaped (n, ...) with n >= 1 non-empty items (points or images), "
                         f"got {tuple(value.shape)}")
    value = value.detach().reshape(value.shape[0], -1).float()
    if dim is not None and value.shape[1] != dim:
        raise ValueError(f"{name} must hold items of {dim} numbers each (as {like} does), got {value.shape[1]}")
    return value


def as_time(
    name: str, t, batch: int, like: torch.Tensor, *, check_values: bool = True, rows_of: str = "x"
) -> torch.Tensor:
    """Turn a float, 0-d, (n,) or (n, 1) time into a (batch,) tensor on ``like``'s device.

    Times must lie in [0, 1] (t = 0 is clean data, t = 1 is pure noise). Shape checks
    are free; the value checks read the tensor back to the host, so they run on the CPU
    only, and hot loops (a model's forward pass inside a sampler) pass ``check_values=False``.
    """
    if isinstance(t, bool):
        raise ValueError(f"{name} must be a number or tensor in [0, 1], got {t!r}")
    if isinstance(t, Real):
        t = torch.tensor(float(t))
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a number or tensor in [0, 1], got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point time (an integer tensor would truncate it), "
                         f"got dtype {t.dtype}")
    t = t.to(device=like.device, dtype=like.dtype)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(
            f"{name} must be a scalar or have shape ({batch},) or ({batch}, 1) (one time per row of "
            f"{rows_of}, which has {batch}), got shape {tuple(t.shape)}"
        )
    if not check_values or not host_readable(t):
        return t
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((t < 0).any()) or bool((t > 1).any()):
        raise ValueError(
            f"{name} must lie in [0, 1] (0 = clean data, 1 = pure noise), got values in "
            f"[{t.min().item():.4g}, {t.max().item():.4g}]"
        )
    return t


def check_labels(name: str, value, n: int, n_labels: int, device=None, rows_of: str = "x") -> torch.Tensor:
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
        raise ValueError(f"{name} must have {n} labels (one per row of {rows_of}), got {value.shape[0]}")
    return _check_in_range(name, value, n_labels - 1)


def check_model_labels(name: str, value, n: int, num_classes: int) -> torch.Tensor:
    """A class-conditional model's labels: an (n,) integer tensor in 0..num_classes, where
    ``num_classes`` is the null label (no condition); the range is read on the CPU only."""
    if not isinstance(value, torch.Tensor) or value.shape != (n,) or value.is_floating_point() \
            or value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must be a ({n},) integer tensor of labels, got {_describe(value)}")
    return _check_in_range(name, value, num_classes, note=f" ({num_classes} = no label)")


def _check_in_range(name: str, value: torch.Tensor, top: int, *, verb: str = "lie in", note: str = ""):
    """``value`` if its integers lie in 0..top (read on the CPU only: see the module)."""
    if value.numel() and host_readable(value) and bool(((value < 0) | (value > top)).any()):
        raise ValueError(f"{name} must {verb} 0..{top}{note}, got values in {int(value.min())}..{int(value.max())}")
    return value


def check_ids(name: str, value, vocab_size: int) -> torch.Tensor:
    """Token ids already shaped: values in 0..vocab_size-1, read on the CPU only."""
    return _check_in_range(name, value, vocab_size - 1)


def check_keeps_a_token(name: str, mask: torch.Tensor, rows: str = "row") -> torch.Tensor:
    """A (B, L) bool mask that keeps at least one token in every row (read on the CPU only)."""
    if host_readable(mask) and not bool(mask.any(1).all()):
        raise ValueError(f"{name} must keep at least one token of every {rows}")
    return mask


def check_row_weights(name: str, value, like: torch.Tensor, maximum: float | None = None, rows_of: str = "x"):
    """A weight >= 0 (<= ``maximum`` if given): one number (returned as a float), or a 0-d or
    (n,) float tensor, one weight per row of ``like`` (returned as (n,) on its device and dtype;
    the range is read on the CPU only)."""
    if not isinstance(value, torch.Tensor):
        return check_real(name, value, minimum=0.0, maximum=maximum)
    n = like.shape[0]
    if not value.is_floating_point() or value.ndim > 1 or (value.ndim == 1 and value.shape[0] != n):
        raise ValueError(f"{name} must be a number or a ({n},) float tensor (one weight per row of {rows_of}), "
                         f"got {_describe(value)}")
    value = value.to(device=like.device, dtype=like.dtype).expand(n)
    top = float("inf") if maximum is None else maximum
    if host_readable(value) and not bool((torch.isfinite(value) & (value >= 0) & (value <= top)).all()):
        where = "be finite and >= 0" if maximum is None else f"lie in [0, {maximum:g}]"
        raise ValueError(f"{name} must {where}, got values in [{float(value.min()):.4g}, {float(value.max()):.4g}]")
    return value


def check_seed(name: str, value) -> int:
    """A random seed: an integer in 0..2**64 - 1 (torch's generators hold 64 bits)."""
    value = check_int(name, value, minimum=0)
    if value >= 2**64:
        raise ValueError(f"{name} must be below 2**64 (torch's generators hold 64 bits), got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` if it is True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {_describe(value)}")
    return value


def check_generator(name: str, value, device=None) -> torch.Generator | None:
    """None or a ``torch.Generator`` (on ``device``'s type, when given)."""
    if value is None:
        return None
    if not isinstance(value, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator or None, got {_describe(value)}")
    if device is not None and torch.device(device).type != value.device.type:
        raise ValueError(f"{name} draws on {value.device.type} but the tensors live on "
                         f"{torch.device(device).type}; make it with torch.Generator(device=...)")
    return value


def check_dtype(name: str, value) -> torch.dtype:
    """A floating-point torch dtype."""
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch dtype (e.g. torch.float32), got {value!r}")
    return value


def check_times(name: str, value, *, low: float = 0.0, high: float = 1.0, open_low: bool = False,
                dtype=None, device=None) -> torch.Tensor:
    """A number, a list of numbers or a non-empty 1-D tensor of times in [low, high] (``open_low``: > low),
    as a 1-D tensor.

    For functions that loop over a list of times (irreducible loss per t, plots); hot
    paths use :func:`as_time` instead.
    """
    is_list = isinstance(value, (list, tuple)) and all(isinstance(v, Real) and not isinstance(v, bool)
                                                       for v in value)
    if isinstance(value, bool) or not (is_list or isinstance(value, (Real, torch.Tensor))):
        raise ValueError(f"{name} must be a number, a list of numbers or a 1-D tensor of times, "
                         f"got {_describe(value)}")
    t = torch.as_tensor(value, dtype=dtype if dtype is not None else torch.get_default_dtype(), device=device)
    if isinstance(value, torch.Tensor) and not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of times, got dtype {value.dtype}")
    if t.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D tensor, got shape {tuple(t.shape)}")
    t = t.reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name} must hold at least one time, got an empty tensor")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    too_low = (t <= low) if open_low else (t < low)
    if bool(too_low.any()) or bool((t > high).any()):
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must lie in {bracket}{low:g}, {high:g}], got values in "
                         f"[{t.min().item():.4g}, {t.max().item():.4g}]")
    return t


def check_device(name: str, value) -> torch.device | None:
    """None, or something ``torch.device`` understands ("cpu", "cuda:0", a device)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, torch.device)):
        raise ValueError(f"{name} must be a device such as 'cpu' or 'cuda', or None, got {_describe(value)}")
    try:
        return torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must be a device such as 'cpu' or 'cuda', got {value!r}") from None


def check_callable(name: str, value, what: str = "a function"):
    """``value`` if it can be called."""
    if not callable(value):
        raise ValueError(f"{name} must be {what}, got {_describe(value)}")
    return value


def check_module(name: str, value) -> torch.nn.Module:
    """``value`` if it is a ``torch.nn.Module``."""
    if not isinstance(value, torch.nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {_describe(value)}")
    return value


def check_model_input(name: str, value, shape: tuple) -> torch.Tensor:
    """A model's input: a real floating tensor whose shape matches ``shape`` (None: any size).

    Values are checked for NaN and inf only when the tensor is on the CPU, where that
    costs nothing; on an accelerator it would stall the device at every call, so there
    the callers (samplers, trainers with their NaN guard) check instead.
    """
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {_describe(value)}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    want = "(" + ", ".join("n" if i == 0 and s is None else ("*" if s is None else str(s))
                           for i, s in enumerate(shape)) + ")"
    if value.ndim != len(shape) or any(s is not None and v != s for v, s in zip(value.shape, shape)):
        raise ValueError(f"{name} must have shape {want}, got {tuple(value.shape)}")
    if host_readable(value) and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def check_same_shape(name: str, value, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """A finite float tensor of exactly ``like``'s shape."""
    value = check_tensor(name, value)
    if value.shape != like.shape:
        raise ValueError(f"{name} must have the shape of {like_name} {tuple(like.shape)}, got {tuple(value.shape)}")
    return value


def check_axes(name: str, value):
    """A matplotlib Axes."""
    from matplotlib.axes import Axes

    if not isinstance(value, Axes):
        raise ValueError(f"{name} must be a matplotlib Axes (e.g. from plt.subplots()), got {_describe(value)}")
    return value


def check_points_sequence(name: str, value, flatten: bool = False) -> torch.Tensor:
    """A (T, n, d) float tensor of T >= 2 snapshots of n >= 1 points, finite; with
    ``flatten``, (T, n, ...) of any trailing shape, returned as (T, n, numbers per item)."""
    value = check_tensor(name, value)
    if flatten and value.ndim >= 3 and value.numel() > 0:
        value = value.reshape(value.shape[0], value.shape[1], -1)
    if value.ndim != 3 or value.shape[0] < 2 or value.shape[1] < 1 or value.shape[2] < 1:
        want = ("(T, n, ...) with T >= 2 frames of n >= 1 items" if flatten
                else "(T, n, d) with T >= 2 steps of n >= 1 points")
        raise ValueError(f"{name} must be shaped {want}, got {tuple(value.shape)}")
    return value.detach().float()


# ---------------------------------------------------------------- the library's own objects

def check_one_of(name: str, value, choices: tuple):
    """``value`` if it is one of ``choices`` (strings, such as a target's name), else a ValueError."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_instance(name: str, value, cls: type, what: str):
    """``value`` if it is an instance of ``cls`` (``what`` names it in the message), else a ValueError.

    The library's own kinds are checked with it next to their class, so that this module
    imports none of them: :func:`cs231n_gen.paths.check_path`,
    :func:`cs231n_gen.data.toy2d.check_mixture` and the like."""
    if not isinstance(value, cls):
        raise ValueError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_density(name: str, dist) -> None:
    """A distribution with ``.sample(n, generator=...)`` and ``.log_prob(x)``."""
    if not (hasattr(dist, "sample") and hasattr(dist, "log_prob")):
        raise ValueError(f"{name} must have .sample(n, generator=...) and .log_prob(x), got {type(dist).__name__}")


def as_float_tensor(name: str, value, ndim: int | None = None) -> torch.Tensor:
    """Array-like numbers as a float tensor (finite, ``ndim`` dimensions if given)."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be array-like numbers, got {value!r}") from err
    if not value.is_floating_point():
        value = value.float()
    return check_tensor(name, value, ndim=ndim)


def as_point_sets(name: str, value) -> list[torch.Tensor]:
    """One point set (n, d), a (k, n, d) tensor or a list of sets: a list of checked sets."""
    if isinstance(value, torch.Tensor) and value.ndim == 3:
        return [check_points(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must hold at least one point set")
        return [check_points(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [check_points(name, value)]


def check_sampling_times(times) -> torch.Tensor:
    """A sampling grid: at least 2 times in [0, 1], strictly decreasing (noise to data)."""
    times = check_tensor("times", times, ndim=1)
    if times.shape[0] < 2:
        raise ValueError(f"times must hold at least 2 points, got {times.shape[0]}")
    if bool((times[1:] >= times[:-1]).any()):
        raise ValueError("times must be strictly decreasing (sampling runs from t = 1 to t = 0)")
    if bool((times < 0).any()) or bool((times > 1).any()):
        raise ValueError(f"times must lie in [0, 1], got [{times.min().item():.4g}, {times.max().item():.4g}]")
    return times


def check_file_path(name: str, value):
    """``value`` as a :class:`pathlib.Path` if it is a str or os.PathLike naming a path, else a ValueError."""
    import os
    from pathlib import Path

    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{name} must be a file or folder path (str or pathlib.Path), got {_describe(value)}")
    return Path(value)


def check_strings(name: str, value, n: int | None = None, of: str = "") -> list[str]:
    """A list or tuple of strings (``n`` of them when given; at least one), as a list."""
    count = f"{n} " if n is not None else ""
    if not isinstance(value, (list, tuple)) or not value or (n is not None and len(value) != n) \
            or not all(isinstance(t, str) for t in value):
        raise ValueError(f"{name} must be a list of {count}strings{f' ({of})' if of else ''}, got {value!r:.80}")
    return list(value)


def check_text(name: str, value) -> str:
    """``value`` if it is a str, else a ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {_describe(value)}")
    return value


def check_tokens(name: str, value, vocab_size: int, max_length: int | None = None) -> torch.Tensor:
    """A (B, T) integer tensor of token ids in 0..vocab_size-1 (T <= ``max_length``), as int64."""
    if not isinstance(value, torch.Tensor) or value.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                                    torch.uint8):
        raise ValueError(f"{name} must be an integer tensor of token ids shaped (B, T), got {_describe(value)}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be shaped (B, T) (a batch of token sequences), got shape {tuple(value.shape)}")
    if max_length is not None and value.shape[1] > max_length:
        raise ValueError(f"{name} may hold at most {max_length} tokens per sequence, got {value.shape[1]}")
    return _check_in_range(name, value, vocab_size - 1, verb="hold token ids in").long()
