"""One training loop for every lecture: ``fit``.

``fit`` owns the plumbing a notebook should not repeat: device placement, a seeded
random stream for data and noise, Adam with an optional cosine decay, a progress bar,
the loss history, a guard against NaN/inf losses, and checkpoints that are written
atomically and resume bit-for-bit (an interrupted run, resumed, ends with exactly the
parameters of an uninterrupted one on the same device).

The lecture keeps the idea: ``loss_fn(model, batch, generator)`` is where the slide's
few lines live.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._validate import check_int, check_real
from .runtime import get_device


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite during :func:`fit`."""


@dataclass
class History:
    """What happened during :func:`fit`.

    Attributes:
        loss: the training loss at every step, in order (a resumed run includes the
            steps from before the interruption).
        lr: the learning rate at every step.
        seconds: wall time spent in this call (not counting earlier runs).
        steps_run: optimisation steps taken in this call.
    """

    loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: float = 0.0
    steps_run: int = 0

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else float("nan")

    def smoothed(self, window: int = 100) -> list:
        """A running mean of the loss over ``window`` steps (for plotting)."""
        window = check_int("window", window, minimum=1)
        out, acc = [], 0.0
        for i, v in enumerate(self.loss):
            acc += v
            if i >= window:
                acc -= self.loss[i - window]
            out.append(acc / min(i + 1, window))
        return out


def _batch_source(data, device):
    """Turn ``data`` into ``draw(n, generator) -> batch`` on ``device``."""
    if isinstance(data, torch.Tensor):
        if data.ndim < 1 or data.shape[0] < 1:
            raise ValueError(f"data as a tensor must have shape (N, ...), got {tuple(data.shape)}")
        if data.is_floating_point() and not bool(torch.isfinite(data).all()):
            raise ValueError("data contains NaN or infinite values")
        table = data.to(device)

        def draw(n, generator):
            idx = torch.randint(0, table.shape[0], (n,), generator=generator, device=device)
            return table[idx]

        return draw
    if isinstance(data, (tuple, list)) and data and all(isinstance(d, torch.Tensor) for d in data):
        n = data[0].shape[0] if data[0].ndim else 0
        if n < 1 or any(d.ndim < 1 or d.shape[0] != n for d in data):
            raise ValueError("data as a tuple of tensors needs the same number of rows (>= 1) in each, got shapes "
                             f"{[tuple(d.shape) for d in data]}")
        for d in data:
            if d.is_floating_point() and not bool(torch.isfinite(d).all()):
                raise ValueError("data contains NaN or infinite values")
        tables = tuple(d.to(device) for d in data)

        def draw_rows(n_draw, generator):
            idx = torch.randint(0, n, (n_draw,), generator=generator, device=device)
            return tuple(table[idx] for table in tables)

        return draw_rows
    if hasattr(data, "sample"):
        source = data.to(device) if hasattr(data, "to") else data
        return lambda n, generator: source.sample(n, generator=generator)
    if callable(data):
        return data
    raise ValueError(
        "data must be a tensor of examples, a tuple of tensors with matching rows, an object with "
        f".sample(n, generator=...), or a callable draw(n, generator); got {type(data).__name__}"
    )


def _lr_factor(schedule: str, step: int, steps: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _read_checkpoint(path: Path, settings: dict, device) -> dict:
    """Load a checkpoint written by this module, refusing one made with other settings."""
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("settings") != settings:
        raise ValueError(
            f"checkpoint {path} was written with settings {state.get('settings')}, "
            f"but this call uses {settings}; pass resume=False to start over"
        )
    return state


def _restore_rng(generator: torch.Generator, saved: torch.Tensor) -> None:
    """Generators take their state as a CPU byte tensor, whatever device they draw on."""
    generator.set_state(saved.cpu())


def fit(
    model: torch.nn.Module,
    loss_fn,
    data,
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 1e-3,
    lr_schedule: str = "cosine",
    warmup: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    seed: int = 0,
    device=None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int = 50,
    desc: str = "training",
) -> History:
    """Train ``model`` for ``steps`` Adam steps on batches drawn from ``data``.

    Args:
        model: the network; moved to ``device`` (default :func:`get_device`).
        loss_fn: ``loss_fn(model, batch, generator) -> scalar tensor``; use
            ``generator`` for any randomness (noise, times) so runs are reproducible.
        data: a tensor of examples (minibatches drawn with replacement), a tuple of
            tensors with matching rows such as (images, labels) (batches are tuples of
            the same rows), an object with
            ``.sample(n, generator=...)`` (such as a ``GaussianMixture``), or a callable
            ``draw(n, generator)``.
        steps: total number of optimisation steps (including any already in a
            checkpoint being resumed).
        lr, lr_schedule, warmup, weight_decay: Adam(W) learning rate, "cosine" (decay
            to 0 by the last step) or "constant", linear warm-up steps, decoupled
            weight decay.
        grad_clip: clip the global gradient norm to this value (None: no clipping).
        seed: seeds the random stream for data, noise and times.
        checkpoint, checkpoint_every, resume: write a checkpoint to this path every
            ``checkpoint_every`` steps and at the end; with ``resume`` an existing one
            is loaded and training continues from its step.
        progress: show a progress bar (a notebook widget in Jupyter).
        log_every: steps between host syncs (progress update, NaN check).

    Returns:
        A :class:`History` with the per-step loss. Raises
        :class:`TrainingDivergedError` when the loss turns NaN or infinite.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_real("lr", lr, minimum=0.0, strict_min=True)
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    warmup = check_int("warmup", warmup, minimum=0)
    weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
    if grad_clip is not None:
        grad_clip = check_real("grad_clip", grad_clip, minimum=0.0, strict_min=True)
    seed = check_int("seed", seed, minimum=0)
    log_every = check_int("log_every", log_every, minimum=1)
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
        if checkpoint is None:
            raise ValueError("checkpoint_every was given but checkpoint (a file path) was not")
    device = torch.device(device) if device is not None else get_device()

    model.to(device)
    draw = _batch_source(data, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    history = History()
    start = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule,
                "warmup": warmup, "seed": seed}

    if ckpt_path is not None and resume and ckpt_path.exists():
        state = _read_checkpoint(ckpt_path, settings, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _restore_rng(generator, state["generator"])
        history.loss, history.lr = list(state["loss"]), list(state["lr"])
        start = state["step"]

    def save(step):
        _atomic_save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "step": step, "loss": history.loss,
             "lr": history.lr, "settings": settings},
            ckpt_path,
        )

    bar = None
    if progress and start < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc=desc, mininterval=0.5, leave=True)

    pending: list[torch.Tensor] = []
    pending_lr: list[float] = []

    def flush(step_after):
        """Bring the buffered losses to the host; stop on NaN/inf."""
        if not pending:
            return
        values = torch.stack(pending).detach().float().cpu().tolist()
        first = step_after - len(values)
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise TrainingDivergedError(
                    f"the loss became {v} at step {first + i} (lr {pending_lr[i]:.3g}). "
                    "Things to try: a smaller lr, grad_clip=1.0, warmup=100, and checking "
                    "that the data holds no NaN or inf."
                )
        history.loss.extend(values)
        history.lr.extend(pending_lr)
        if bar is not None:
            bar.update(len(values))
            bar.set_postfix(loss=f"{sum(values) / len(values):.4f}", refresh=False)
        pending.clear()
        pending_lr.clear()

    model.train()
    t0 = time.perf_counter()
    try:
        for step in range(start, steps):
            factor = _lr_factor(lr_schedule, step, steps, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            batch = draw(batch_size, generator)
            loss = loss_fn(model, batch, generator)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError(f"loss_fn must return a scalar tensor, got {loss!r}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            pending.append(loss.detach().reshape(()))
            pending_lr.append(lr * factor)
            done = step + 1
            history.steps_run += 1
            if done % log_every == 0 or done == steps:
                flush(done)
            if checkpoint_every is not None and done % checkpoint_every == 0:
                flush(done)
                save(done)
        flush(steps)
        if ckpt_path is not None and history.steps_run:
            save(steps)
    finally:
        history.seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        model.eval()
    return history
