"""Training steps whose numbers do not depend on the CPU thread count."""
import contextlib
import os

import pytest
import torch

from cs231n_gen import thread_invariance
from cs231n_gen.nn.autoencoder import VAE, PatchDiscriminator
from cs231n_gen.nn.dcgan import DCDiscriminator, DCGenerator
from cs231n_gen.nn.gpt import GPT
from cs231n_gen.nn.vq import VQVAE

needs_two = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")


def _model(kind):
    torch.manual_seed(0)
    if kind == "vae and critic":  # convolutions, group norm, a 1 x 1 head with one output channel
        vae, critic = VAE(latent_channels=4, width=8, downsample=4), PatchDiscriminator(width=8)
        x = torch.randn(8, 3, 32, 32)
        return [vae, critic], lambda: vae(x)[0].square().mean() + critic(x).square().mean()
    if kind == "dcgan":  # transposed convolutions, batch norm
        G, D = DCGenerator(z_dim=16, size=16, width=16), DCDiscriminator(size=16, width=16)
        z = torch.randn(32, 16)
        return [G, D], lambda: D(G(z)).square().mean()
    if kind == "gpt":  # embeddings, layer norm with a learned scale
        gpt = GPT(vocab_size=32, block_size=16, width=32, depth=2, heads=4, num_classes=4)
        tokens, labels = torch.randint(0, 32, (64, 15)), torch.randint(0, 4, (64,))
        return [gpt], lambda: gpt(tokens, labels).logsumexp(-1).mean()
    vq = VQVAE(channels=1, size=16, grid=4, num_codes=16, code_dim=8, width=16)
    x = torch.randn(32, 1, 16, 16)
    return [vq], lambda: sum(o.square().mean() for o in vq(x) if torch.is_tensor(o) and o.requires_grad)


def _grads(kind, threads, serial=True):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        modules, loss = _model(kind)
        context = thread_invariance.for_modules(modules, "cpu") if serial else torch.enable_grad()
        with context:
            loss().backward()
        return [p.grad.clone() for m in modules for p in m.parameters() if p.grad is not None]
    finally:
        torch.set_num_threads(before)


@needs_two
@pytest.mark.parametrize("kind", ["vae and critic", "dcgan", "gpt", "vq"])
def test_a_step_gives_the_same_gradients_at_one_and_two_threads(kind):
    one, two = _grads(kind, 1), _grads(kind, 2)
    assert len(one) == len(two) > 0
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    # and they are the plain one-thread numbers: at one thread the context changes nothing
    assert all(torch.equal(a, b) for a, b in zip(one, _grads(kind, 1, serial=False)))


@needs_two
def test_without_it_a_convolution_weight_gradient_depends_on_the_count():
    """The reason the module exists; if torch ever sums by a fixed split this fails, and the module can go."""
    one, two = _grads("vae and critic", 1, serial=False), _grads("vae and critic", 2, serial=False)
    assert not all(torch.equal(a, b) for a, b in zip(one, two))


def test_the_context_leaves_no_trace_and_restores_the_count_on_errors():
    modules, loss = _model("vae and critic")
    convs = [m for net in modules for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with pytest.raises(RuntimeError, match="boom"):
        with thread_invariance.for_modules(modules, "cpu"):
            assert all("forward" in vars(c) for c in convs)
            loss().backward()
            raise RuntimeError("boom")
    assert not any("forward" in vars(c) for c in convs)
    assert all(not m._forward_hooks for net in modules for m in net.modules())
    threads = torch.get_num_threads()
    with thread_invariance.for_modules(modules, "cpu"):
        loss().backward()
    assert torch.get_num_threads() == threads


def test_forward_outputs_and_higher_order_gradients_are_unchanged():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)

    def r1():  # a gradient penalty: the gradient of a gradient through the convolution
        (g,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        return g.square().sum()

    plain_out, plain_r1 = conv(x), r1()
    (plain_dw,) = torch.autograd.grad(plain_r1, conv.weight)
    with thread_invariance.for_modules([conv], "cpu"):
        out, penalty = conv(x), r1()
        (dw,) = torch.autograd.grad(penalty, conv.weight)
    assert torch.equal(out, plain_out) and torch.equal(penalty, plain_r1)
    assert torch.allclose(dw, plain_dw, rtol=1e-5, atol=1e-6)


def test_runs_that_need_nothing_get_nothing():
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.LayerNorm(8, elementwise_affine=False))
    assert isinstance(thread_invariance.for_modules([mlp], "cpu"), contextlib.nullcontext)
    conv = torch.nn.Conv2d(1, 1, 1)
    assert isinstance(thread_invariance.for_modules([conv], "cuda"), contextlib.nullcontext)
