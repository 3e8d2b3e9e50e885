"""One training loop for every lecture: ``fit``.

``fit`` is a step function for the engine (:mod:`cs231n_gen.engine`), which owns the
plumbing a notebook should not repeat: a progress bar, the loss history, a guard
against NaN/inf losses, and checkpoints that are written atomically and resume
bit-for-bit (an interrupted run, resumed, ends with exactly the parameters of an
uninterrupted one on the same device). ``fit`` adds device placement, a seeded random
stream for data and noise, and AdamW with an optional warm-up and cosine decay.

The lecture keeps the idea: ``loss_fn(model, batch, generator)`` is where the slide's
few lines live.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch

from ._validate import check_int, check_real
from .engine import (
    Loop,
    RunRecord,
    TrainingDivergedError,
    batch_source,
    callable_signature,
    data_signature,
    lr_factor,
    model_signature,
    prepare,
    train_steps,
)

__all__ = ["fit", "FitSettings", "History", "TrainingDivergedError"]

LR_SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class FitSettings:
    """The optimisation settings of :func:`fit`, validated once (see its arguments)."""

    batch_size: int = 512
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        fix("batch_size", check_int("batch_size", self.batch_size, minimum=1))
        fix("lr", check_real("lr", self.lr, minimum=0.0, strict_min=True))
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        fix("warmup", check_int("warmup", self.warmup, minimum=0))
        fix("weight_decay", check_real("weight_decay", self.weight_decay, minimum=0.0))
        if self.grad_clip is not None:
            fix("grad_clip", check_real("grad_clip", self.grad_clip, minimum=0.0, strict_min=True))
        fix("seed", check_int("seed", self.seed, minimum=0))


@dataclass
class History(RunRecord):
    """What happened during :func:`fit`.

    Attributes:
        loss: the training loss at every step, in order (a resumed run includes the
            steps from before the interruption).
        lr: the learning rate at every step.
        seconds: wall time spent in this call (not counting earlier runs).
        steps_run: optimisation steps taken in this call.
        cached: the run was loaded from the cache (``seconds`` and ``steps_run`` are
            then those of the run that was cached).
        shipped: the run is the course's shipped trained model (:mod:`cs231n_gen.pretrained`).
    """

    loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    COLUMNS = ("loss", "lr")

    @property
    def steps(self) -> int:
        return len(self.loss)

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
    cache: bool | None = None,
    shipped: str | None = None,
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
            is loaded and training continues from its step. It resumes only under the
            same settings, model shapes, loss function and kind of data
            (:class:`~cs231n_gen.engine.CheckpointError` otherwise).
        progress: show a progress bar (a notebook widget in Jupyter).
        log_every: steps between host syncs (progress update, NaN check).
        cache: reuse a finished run from the cache when everything that made it is the
            same (initial weights, data, loss function and the globals it reads,
            settings, random state, device, library code), else train and store it.
            None: on in a lecture (after :func:`~cs231n_gen.start_lecture`), off
            otherwise. Ignored when ``checkpoint`` is given.
        shipped: the name of the course's trained model this call makes
            (:mod:`cs231n_gen.pretrained`). In full mode it trains as usual; in quick mode
            (or after ``start_lecture(pretrained=True)``) it checks the shipped model was
            made by exactly this call, trains a few steps to exercise the loop, and then
            holds the shipped weights, history and random state.

    Returns:
        A :class:`History` with the per-step loss. Raises
        :class:`TrainingDivergedError` when the loss turns NaN or infinite.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    config = FitSettings(batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, warmup=warmup,
                         weight_decay=weight_decay, grad_clip=grad_clip, seed=seed)
    loop = Loop(steps=steps, log_every=log_every, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                resume=resume, progress=progress, desc=desc, cache=cache, shipped=shipped)
    device, generator = prepare(device, config.seed)

    model.to(device)
    draw = batch_source(data, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    history = History()
    lr_at = lambda i: config.lr * lr_factor(config.lr_schedule, i, loop.steps, config.warmup)  # noqa: E731

    def step(i):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i)
        # Data and the lecture's loss.
        batch = draw(config.batch_size, generator)
        try:
            loss = loss_fn(model, batch, generator)
        except ValueError as err:
            raise ValueError(f"loss_fn rejected a batch drawn from data at step {i}: {err}") from err
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor, got {loss!r}")
        # The update.
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        return loss.detach().reshape(1)

    def record(steps_done, rows):
        history.loss.extend(row[0] for row in rows)
        history.lr.extend(lr_at(s - 1) for s in steps_done)

    def describe(s, row):
        return (f"the loss became {row[0]} at step {s - 1} (lr {lr_at(s - 1):.3g}). Things to try: a smaller lr, "
                "grad_clip=1.0, warmup=100, and checking that the data holds no NaN or inf.")

    settings = {**asdict(config), "steps": loop.steps, "model": model_signature(model),
                "loss_fn": callable_signature(loss_fn), "data": data_signature(data)}
    return train_steps(step, loop=loop, kind="fit", settings=settings, history=history, modules={"model": model},
                       optimizers={"optimizer": optimizer}, generators={"generator": generator}, device=device,
                       describe=describe, record=record, fingerprinted={"data": data, "loss_fn": loss_fn},
                       postfix=lambda rows: {"loss": f"{sum(r[0] for r in rows) / len(rows):.4f}"})
