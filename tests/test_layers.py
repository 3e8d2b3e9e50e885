"""The shared layers: the torch layer's numbers, and the same bits at any thread count."""
import pytest
import torch
from torch import nn

from cs231n_gen.nn.layers import BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, GroupNorm, LayerNorm


def _grads_at(threads, layer, x, grad_out):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layer.zero_grad()
        x = x.clone().requires_grad_(True)
        y = layer(x)
        y.backward(grad_out)
        return [y.detach(), x.grad, *(p.grad.clone() for p in layer.parameters())]
    finally:
        torch.set_num_threads(before)


def test_layer_norm_matches_torch_and_keeps_its_state_dict():
    torch.manual_seed(0)
    ours, theirs = LayerNorm(64, eps=1e-6), nn.LayerNorm(64, eps=1e-6)
    with torch.no_grad():
        theirs.weight.normal_(), theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(32, 10, 64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert LayerNorm(8, elementwise_affine=False)(x[..., :8]).shape == (32, 10, 8)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("kw", [dict(stride=2, padding=1), dict(stride=1, padding=0, bias=False),
                                dict(stride=1, padding=2, dilation=2), dict(stride=(2, 1), padding=(1, 0)),
                                dict(kernel_size=1), dict(kernel_size=1, bias=False)])
def test_convolutions_match_torch_values_and_gradients(kw, transposed):
    torch.manual_seed(0)
    kw = dict(kw)
    k = kw.pop("kernel_size", 4 if kw.get("stride") == 2 else 3)
    ours = (ConvTranspose2d if transposed else Conv2d)(6, 8, k, **kw)
    theirs = (nn.ConvTranspose2d if transposed else nn.Conv2d)(6, 8, k, **kw)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 6, 9, 8)
    grad_out = torch.randn_like(theirs(x))
    got, want = _grads_at(2, ours, x, grad_out), _grads_at(2, theirs, x, grad_out)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2d(4, 4, 0)
    with pytest.raises(ValueError, match="padding"):
        ConvTranspose2d(4, 4, 3, padding="same")
    with pytest.raises(ValueError, match="stride"):
        Conv2d(4, 4, 3, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(8, eps=0.0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(8, momentum=1.5)
    with pytest.raises(ValueError, match="features"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match="divisible by groups=8"):
        GroupNorm(8, 12)
    with pytest.raises(ValueError, match="x must be shaped"):
        GroupNorm(2, 4)(torch.zeros(3, 5, 2, 2))


@pytest.mark.parametrize("affine, shape", [(True, (6, 16, 7, 5)), (False, (3, 8, 10)), (True, (1, 4, 3, 3))])
def test_group_norm_matches_torch_values_and_gradients(affine, shape):
    torch.manual_seed(0)
    groups = shape[1] // 4
    ours, theirs = GroupNorm(groups, shape[1], affine=affine), nn.GroupNorm(groups, shape[1], affine=affine)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(*shape) * 3 + 1
    grad_out = torch.randn(*shape)
    for a, b in zip(_grads_at(2, ours, x, grad_out), _grads_at(2, theirs, x, grad_out), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make, ref, shape", [(lambda: BatchNorm2d(8), lambda: nn.BatchNorm2d(8), (16, 8, 5, 5)),
                                              (lambda: BatchNorm1d(8, momentum=None),
                                               lambda: nn.BatchNorm1d(8, momentum=None), (16, 8))])
def test_batch_norm_matches_torch_in_training_and_evaluation(make, ref, shape):
    torch.manual_seed(0)
    mine, theirs = make(), ref()
    assert mine.state_dict().keys() == theirs.state_dict().keys()
    with torch.no_grad():
        mine.weight.normal_()
        mine.bias.normal_()
    theirs.load_state_dict(mine.state_dict())
    for _ in range(3):  # the running statistics follow the same updates
        x = torch.randn(*shape) * 3 + 1
        assert torch.allclose(mine(x), theirs(x), atol=1e-5)
    for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), atol=1e-5)
    mine.eval()
    theirs.eval()
    x = torch.randn(*shape)
    assert torch.allclose(mine(x), theirs(x), atol=1e-5)


@pytest.mark.parametrize("make, shape", [(lambda: LayerNorm(64), (128, 16, 64)),
                                         (lambda: Conv2d(32, 64, 4, stride=2, padding=1), (128, 32, 16, 16)),
                                         (lambda: Conv2d(32, 1, 3, padding=1), (128, 32, 16, 16)),
                                         (lambda: Conv2d(64, 1, 1), (8, 64, 4, 4)),  # torch's 1x1 kernel: not so
                                         (lambda: Conv2d(64, 16, 1), (32, 64, 8, 8)),
                                         (lambda: ConvTranspose2d(32, 32, 4, stride=2, padding=1), (128, 32, 8, 8)),
                                         (lambda: BatchNorm2d(64), (128, 64, 8, 8)),
                                         (lambda: BatchNorm1d(2048), (128, 2048)),
                                         (lambda: GroupNorm(8, 32), (16, 32, 16, 16))])
def test_the_same_bits_at_one_and_two_threads(make, shape):
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    x = torch.randn(shape)
    grad_out = torch.randn_like(layer(x))
    one, two = _grads_at(1, layer, x, grad_out), _grads_at(2, layer, x, grad_out)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


def test_a_dcgan_step_has_the_same_bits_at_one_and_two_threads():
    """Lecture 01's DCGAN: batch norm and transposed convolutions in G, convolutions in D."""
    from cs231n_gen.nn import DCDiscriminator, DCGenerator

    def run(threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            torch.manual_seed(0)
            G, D = DCGenerator(32, 16, 64), DCDiscriminator(16, 64)
            x = G(torch.randn(64, 32))
            (D(x).square().mean() + x.square().mean()).backward()
            return [x.detach(), *(p.grad for p in [*G.parameters(), *D.parameters()]), *G.buffers()]
        finally:
            torch.set_num_threads(before)

    assert all(torch.equal(a, b) for a, b in zip(run(1), run(2), strict=True))


def test_autoencoder_steps_have_the_same_bits_at_one_and_two_threads():
    """Lecture 05's VAE: two Adam steps (the second from weights the first moved, where torch's
    fused group norm summed its input's gradient by thread)."""
    from cs231n_gen.nn import VAE

    def run(threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            torch.manual_seed(0)
            vae = VAE(in_channels=3, latent_channels=4, width=16, downsample=4)
            optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
            x = torch.rand(8, 3, 32, 32) * 2 - 1
            for _ in range(2):
                mean, _ = vae.encoder(x)
                loss = (vae.decoder(mean) - x).square().mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            return list(vae.parameters())
        finally:
            torch.set_num_threads(before)

    assert all(torch.equal(a, b) for a, b in zip(run(1), run(2), strict=True))
