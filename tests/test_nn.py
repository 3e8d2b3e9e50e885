import pytest
import torch

from cs231n_gen.nn import FourierTimeEmbedding, TimeMLP


def test_time_mlp_accepts_every_time_shape():
    model = TimeMLP(hidden=16, depth=2)
    x = torch.randn(7, 2)
    ref = model(x, torch.full((7,), 0.3))
    assert ref.shape == (7, 2)
    for t in (0.3, torch.tensor(0.3), torch.full((7, 1), 0.3)):
        assert torch.allclose(model(x, t), ref)


def test_time_embedding_separates_nearby_times():
    emb = FourierTimeEmbedding(32)
    e = emb(torch.tensor([0.50, 0.51]))
    assert e.shape == (2, 32) and (e[0] - e[1]).norm() > 0.1


def test_labels_and_null_label():
    model = TimeMLP(hidden=16, depth=2, num_classes=3)
    x = torch.randn(4, 2)
    y = torch.tensor([0, 1, 2, 3])
    assert model(x, 0.5, y).shape == (4, 2)
    assert model.null_label == 3
    assert torch.allclose(model(x, 0.5), model(x, 0.5, torch.full((4,), 3)))
    with pytest.raises(ValueError, match="y"):
        TimeMLP(hidden=8)(x, 0.5, y)


def test_bad_inputs():
    model = TimeMLP(hidden=8)
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(4, 3), 0.5)
    with pytest.raises(ValueError, match="t"):
        model(torch.randn(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="hidden"):
        TimeMLP(hidden=0)
    with pytest.raises(ValueError, match="dim"):
        FourierTimeEmbedding(7)
