"""DCGAN players and AdaIN."""
import pytest
import torch

from cs231n_gen.nn.dcgan import AdaIN, DCDiscriminator, DCGenerator, adain


@pytest.mark.parametrize("size", [8, 16, 32])
def test_shapes_and_range(size):
    G, D = DCGenerator(z_dim=8, size=size, width=8), DCDiscriminator(size=size, width=8)
    x = G(torch.randn(5, 8))
    assert x.shape == (5, 1, size, size) and x.abs().max() <= 1
    assert D(x).shape == (5,)


def test_bad_shapes():
    with pytest.raises(ValueError, match="size"):
        DCGenerator(size=12)
    with pytest.raises(ValueError, match="z must"):
        DCGenerator(z_dim=8)(torch.randn(2, 7))
    with pytest.raises(ValueError, match="x must"):
        DCDiscriminator(size=16)(torch.randn(2, 1, 8, 8))


def test_adain_sets_channel_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, 6, generator=g) * 5 - 2
    w = torch.rand(3, 4, generator=g) + 0.2
    b = torch.randn(3, 4, generator=g)
    y = adain(x, w, b)
    assert torch.allclose(y.mean((2, 3)), b, atol=1e-5)
    assert torch.allclose(y.std((2, 3), unbiased=False), w, atol=1e-3)
    # The spatial pattern is kept: AdaIN is an increasing affine map of each channel.
    assert torch.equal(y[0, 0].flatten().argsort(), x[0, 0].flatten().argsort())
    # Idempotent on the statistics: restyling with the input's own statistics gives the input back.
    back = adain(x, x.std((2, 3), unbiased=False), x.mean((2, 3)), eps=1e-12)
    assert torch.allclose(back, x, atol=1e-4)


def test_adain_module_and_bad_inputs():
    layer = AdaIN(channels=4, style_dim=3)
    assert layer(torch.randn(2, 4, 5, 5), torch.randn(2, 3)).shape == (2, 4, 5, 5)
    with pytest.raises(ValueError, match="w must"):
        adain(torch.randn(2, 4, 5, 5), torch.ones(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="style"):
        layer(torch.randn(2, 4, 5, 5), torch.randn(2, 5))
    with pytest.raises(ValueError, match="x"):
        adain(torch.randn(2, 4, 5), torch.ones(2, 4), torch.zeros(2, 4))
