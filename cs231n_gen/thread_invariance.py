"""Backward passes whose numbers do not depend on the CPU thread count.

Matrix products, attention and every forward pass the library's models use give the
same bits at any thread count (with ``MKL_CBWR=AUTO,STRICT``, which ``import cs231n_gen``
sets). A few backward kernels do not: they split a sum over the batch between threads
and add the partial sums in an order that depends on how many there are.

- a convolution's weight and bias gradient, dW = sum_n sum_p g[n, :, p] x_cols[n, :, p]^T
  (oneDNN gives each thread part of the batch);
- the forward pass of a convolution with very few output channels (a critic's 1 x 1
  head: oneDNN then splits the sum over input channels instead of the outputs);
- a linear layer's weight gradient when it has very few outputs (a discriminator's
  logit: a matrix-vector product over the batch, which MKL splits by thread even in
  its strict mode);
- layer norm's scale and shift gradients, group norm's and batch norm's gradients, an
  embedding's gradient (sums over tokens, positions or the batch);
- batch norm's forward in training (its batch mean and variance).

Under :func:`serial_reductions` those sums run on one thread: a convolution computes its input gradient (the expensive half, a convolution of its
own) at the current count and only its weight and bias gradient on one thread (and its
forward too when it has at most four output channels, where that costs nothing); the
norms, the embedding and those linear layers run their whole backward node on one
thread, and batch norm its forward too (they are cheap).
Everything else is untouched (same kernels, same bits). A training step taken under it gives the same numbers at
1, 2 or n threads, so :class:`cs231n_gen.threads.LoadFollower` may move a
convolutional autoencoder or a GAN to fewer threads mid-run when the machine gets busy.

:func:`for_modules` says whether a run needs it: only when one of its modules holds such
a layer (a 2D MLP or a DiT without affine norms pays nothing). The engine applies it on the CPU to every step of those runs, whatever the
count, so a run's numbers never depend on the load it met. The engine's bit-for-bit
check before a switch still guards everything this module does not cover.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from ._validate import check_device, check_module

_SERIAL_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                  nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.Embedding)
_FEW_CHANNELS = 4  # with this few output channels oneDNN splits a forward's input-channel sum between threads


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Convolution(torch.autograd.Function):
    """``torch.convolution`` whose weight and bias gradients are summed on one thread."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
        ctx.save_for_backward(x, weight)
        ctx.settings = (stride, padding, dilation, transposed, output_padding, groups)
        ctx.has_bias = bias is not None
        out_channels = weight.shape[1] * groups if transposed else weight.shape[0]
        with _one_thread() if out_channels <= _FEW_CHANNELS else contextlib.nullcontext():
            return torch.convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:  # dL/dx is itself a convolution: every output element is one thread's sum
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, *ctx.settings,
                                                         [True, False, False])[0]
        if need_w or need_b:
            with _one_thread():  # dL/dW and dL/db sum over the batch and positions
                bias_sizes = [weight.shape[1] * ctx.settings[5] if ctx.settings[3] else weight.shape[0]]
                _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                    grad, x, weight, bias_sizes if ctx.has_bias else None, *ctx.settings,
                    [False, need_w, need_b and ctx.has_bias])
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


class _NodeOnOneThread:
    """Pre- and post-hooks that run one autograd node on one thread."""

    def __init__(self):
        self.saved: list[int] = []

    def before(self, grad_outputs):
        self.saved.append(torch.get_num_threads())
        torch.set_num_threads(1)

    def after(self, grad_inputs, grad_outputs):
        torch.set_num_threads(self.saved.pop())


def _serial_forward(module: nn.Module):
    """A convolution's forward whose backward sums dW and db on one thread (no grad: the plain one)."""
    plain = type(module).forward.__get__(module)
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)

    def forward(x, output_size=None):
        if not torch.is_grad_enabled() or output_size is not None or (
                not transposed and (module.padding_mode != "zeros" or isinstance(module.padding, str))):
            return plain(x) if output_size is None else plain(x, output_size)
        output_padding = module.output_padding if transposed else (0,) * len(module.stride)
        return _Convolution.apply(x, module.weight, module.bias, list(module.stride), list(module.padding),
                                  list(module.dilation), transposed, list(output_padding), module.groups)

    return forward


def _on_one_thread(forward):
    """``forward`` run on one thread (batch norm's batch statistics are sums over the batch)."""
    def serial(*args, **kwargs):
        with _one_thread():
            return forward(*args, **kwargs)

    return serial


def _needs(module: nn.Module) -> bool:
    if isinstance(module, nn.LayerNorm):
        return module.elementwise_affine
    if isinstance(module, nn.Linear):  # few outputs: dW is a matrix-vector product, which MKL splits by thread
        return module.out_features <= _FEW_CHANNELS
    return isinstance(module, _SERIAL_LAYERS)


def _modules(modules) -> list[nn.Module]:
    if isinstance(modules, nn.Module):
        return [modules]
    if isinstance(modules, (str, bytes, dict)) or not hasattr(modules, "__iter__"):
        raise ValueError(f"modules must be an nn.Module or an iterable of them, got {type(modules).__name__}")
    modules = list(modules)
    for k, module in enumerate(modules):
        check_module(f"modules[{k}]", module)
    return modules


def serial_reductions(modules) -> contextlib.AbstractContextManager:
    """A context within which the sums listed in the module docstring run on one thread.

    ``modules``: an ``nn.Module`` or an iterable of them. Their convolutions and batch
    norms get an instance ``forward`` (removed on exit) that computes the same output, a
    convolution's through a function whose backward sums dW and db on one thread; their
    norms, embeddings and few-output linear layers get a forward hook that runs each
    backward node they create on one thread.
    """
    return _serial_reductions(_modules(modules))


@contextlib.contextmanager
def _serial_reductions(modules: list[nn.Module]):
    node_hooks = _NodeOnOneThread()

    def on_one_thread(_module, _inputs, out):
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            out.grad_fn.register_prehook(node_hooks.before)
            out.grad_fn.register_hook(node_hooks.after)

    patched, handles = [], []
    try:
        for sub in {id(s): s for m in modules for s in m.modules()}.values():
            if not _needs(sub):
                continue
            if isinstance(sub, nn.modules.conv._ConvNd):
                sub.forward = _serial_forward(sub)
                patched.append(sub)
            elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.forward = _on_one_thread(type(sub).forward.__get__(sub))
                patched.append(sub)
                handles.append(sub.register_forward_hook(on_one_thread))
            else:
                handles.append(sub.register_forward_hook(on_one_thread))
        yield
    finally:
        for sub in patched:
            del sub.forward
        for handle in handles:
            handle.remove()


def for_modules(modules, device) -> contextlib.AbstractContextManager:
    """The context a training run of ``modules`` runs in on ``device``.

    :func:`serial_reductions` on the CPU when any of ``modules`` holds a convolution, a
    norm with learned scale or an embedding; a context that does nothing otherwise (and
    on CUDA, where the thread count plays no part).
    """
    modules = _modules(modules)
    device = check_device("device", device)
    if device is None:
        raise ValueError("device must be a device such as 'cpu' or 'cuda', got None")
    if device.type == "cpu" and any(_needs(s) for m in modules for s in m.modules()):
        return _serial_reductions(modules)
    return contextlib.nullcontext()
