"""The diffusion transformer: patch tokens, adaLN-Zero, the four ways to condition."""
import pytest
import torch

from cs231n_gen.nn.dit import CONDITIONINGS, DiT, DiTBlock, patchify, sincos_position_embedding, unpatchify


@pytest.mark.parametrize("shape,p", [((2, 4, 8, 8), 2), ((3, 3, 12, 6), 3), ((1, 1, 4, 4), 1), ((2, 4, 8, 8), 8)])
def test_patchify_round_trip(shape, p):
    x = torch.randn(shape)
    tokens = patchify(x, p)
    b, c, h, w = shape
    assert tokens.shape == (b, (h // p) * (w // p), p * p * c)
    assert torch.equal(unpatchify(tokens, p, h, w), x)


def test_patchify_token_order_is_row_major_and_holds_one_patch():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    tokens = patchify(x, 2)
    # Token 1 is the top-right patch; its numbers are (row, column, channel) within the patch.
    patch = x[0, :, 0:2, 2:4]  # (C, 2, 2)
    assert torch.equal(tokens[0, 1], patch.permute(1, 2, 0).flatten())
    assert torch.equal(tokens[0, 2], x[0, :, 2:4, 0:2].permute(1, 2, 0).flatten())


def test_patchify_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="divisible by p"):
        patchify(torch.randn(1, 4, 6, 6), 4)
    with pytest.raises(ValueError, match="p must"):
        patchify(torch.randn(1, 4, 8, 8), 0)
    with pytest.raises(ValueError, match="tokens must be shaped"):
        unpatchify(torch.randn(1, 15, 16), 2, 8, 8)
    with pytest.raises(ValueError, match="x must"):
        patchify(torch.randn(4, 8, 8), 2)


def test_position_embeddings_are_distinct_and_fixed():
    pos = sincos_position_embedding(32, 4, 4)
    assert pos.shape == (16, 32)
    assert torch.cdist(pos, pos).add(torch.eye(16)).min() > 0.1
    assert torch.equal(pos, sincos_position_embedding(32, 4, 4))
    with pytest.raises(ValueError, match="dim must be divisible by 4"):
        sincos_position_embedding(30, 4, 4)


def _model(conditioning, **kw):
    torch.manual_seed(0)
    args = dict(input_size=8, in_channels=4, patch_size=2, width=32, depth=2, heads=4, conditioning=conditioning)
    args.update(kw)
    return DiT(**args)


def _randomise_zero_layers(model):
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_zero_output_at_initialisation_under_any_condition(conditioning):
    model = _model(conditioning, num_classes=4)
    x = torch.randn(5, 4, 8, 8)
    for y in (torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 4, 4, 4, 4])):
        out = model(x, torch.rand(5), y)
        assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_every_block_is_the_identity_at_initialisation(conditioning):
    block = DiTBlock(32, 4, kind="cross" if conditioning == "cross" else
                     "joint" if conditioning == "joint" else "adaln")
    x, c = torch.randn(3, 16, 32), torch.randn(3, 32)
    ctx, mask = torch.randn(3, 5, 32), torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    out = block(x, c, ctx, mask)
    out = out[0] if isinstance(out, tuple) else out
    assert torch.equal(out, x)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_one_optimiser_step_makes_the_output_depend_on_the_label(conditioning):
    model = _model(conditioning, num_classes=4)
    x, t, y = torch.randn(16, 4, 8, 8), torch.rand(16), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):  # the first step moves the zero layers, the second the layers behind them
        loss = (model(x, t, y) - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = model(x, t, y)
    assert out.abs().max() > 0
    other = model(x, t, (y + 1) % 4)
    assert not torch.allclose(out, other)


def test_modulation_parameter_count_is_6h2_plus_6h_per_block():
    for width in (32, 64):
        model = DiT(width=width, depth=3, heads=4, num_classes=4)
        for block in model.blocks:
            assert sum(p.numel() for p in block.modulation.parameters()) == 6 * width ** 2 + 6 * width


def _text_model_and_inputs(conditioning):
    """A context-conditioned DiT with every layer random (none at zero), latents, times and a 5-token context."""
    model = _model(conditioning, context_dim=6)
    _randomise_zero_layers(model)
    return model, torch.randn(2, 4, 8, 8), torch.rand(2), torch.randn(2, 5, 6)


@pytest.mark.parametrize("conditioning", ["cross", "joint", "in_context", "adaln"])
def test_padded_context_positions_are_ignored(conditioning):
    model, x, t, ctx = _text_model_and_inputs(conditioning)
    mask = torch.tensor([[True, True, True, False, False], [True, True, False, False, False]])
    changed = ctx.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 6) * 10
    a = model(x, t, context=ctx, context_mask=mask)
    b = model(x, t, context=changed, context_mask=mask)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, model(x, t, context=changed))  # the pads matter once unmasked


@pytest.mark.parametrize("conditioning", ["joint", "cross", "in_context"])
def test_reordering_context_tokens_with_their_mask_leaves_the_image_unchanged(conditioning):
    model, x, t, ctx = _text_model_and_inputs(conditioning)
    mask = torch.tensor([[True, True, True, False, False], [True, False, True, True, False]])
    order = torch.tensor([4, 2, 0, 3, 1])
    a = model(x, t, context=ctx, context_mask=mask)
    b = model(x, t, context=ctx[:, order], context_mask=mask[:, order])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_guidance_acts_on_every_output_channel():
    from cs231n_gen.guidance import Guided

    model = _model("adaln", num_classes=4)
    _randomise_zero_layers(model)
    x, t, y = torch.randn(3, 4, 8, 8), torch.full((3,), 0.5), torch.tensor([0, 1, 2])
    cond, uncond = model(x, t, y), model(x, t, torch.full((3,), 4))
    guided = Guided(model, y, 2.0)(x, t)
    torch.testing.assert_close(guided, 3.0 * cond - 2.0 * uncond, atol=1e-5, rtol=1e-5)
    difference = (guided - cond).abs().amax(dim=(0, 2, 3))
    assert (difference > 0).all(), difference  # all four channels are guided, not three


def test_unconditional_and_context_nulls():
    plain = _model("adaln")
    assert plain(torch.randn(2, 4, 8, 8), torch.rand(2)).shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="unconditional"):
        plain(torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 1]))
    text = _model("cross", context_dim=6)
    _randomise_zero_layers(text)
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    assert not torch.allclose(text(x, t), text(x, t, context=torch.randn(2, 3, 6)))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="conditioning"):
        DiT(conditioning="film")
    with pytest.raises(ValueError, match="patch_size"):
        DiT(input_size=8, patch_size=3)
    with pytest.raises(ValueError, match="width"):
        DiT(width=30, heads=4)
    with pytest.raises(ValueError, match="not both"):
        DiT(num_classes=4, context_dim=8)
    model = _model("cross", num_classes=4)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(2, 3, 8, 8), torch.rand(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="y must lie"):
        model(torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 7]))
    text = _model("joint", context_dim=6)
    with pytest.raises(ValueError, match="context_mask must be a bool"):
        text(torch.randn(2, 4, 8, 8), torch.rand(2), context=torch.randn(2, 3, 6), context_mask=torch.ones(2, 3))
    # a row with no kept token is "no caption": the same as calling without context
    for p in text.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    with torch.no_grad():
        out = text(x, t, context=torch.randn(2, 3, 6), context_mask=torch.tensor([[True, False, False], [False] * 3]))
        assert torch.allclose(out[1:], text(x[1:], t[1:]), atol=1e-5)
        assert not torch.allclose(out[:1], text(x[:1], t[:1]))
