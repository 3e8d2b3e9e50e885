"""Text and video conditioning: tokenizer, CLIP pieces, caption guidance, clips, the video DiT."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from cs231n_gen.contrastive import clip_loss, freeze, retrieval_accuracy, similarity
from cs231n_gen.data import moving_shapes, parse_caption, shapes
from cs231n_gen.data.captioned_shapes import PHRASINGS, caption
from cs231n_gen.data.clips import DIRECTIONS
from cs231n_gen.guidance import GuidedByText, caption_rf_loss
from cs231n_gen.image_metrics import clip_attributes
from cs231n_gen.nn import CLIP, DiT, ImageEncoder, TextEncoder, VideoDiT, inflate
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.tokenizer import Tokenizer
from cs231n_gen.train import fit


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _randomise(model, seed=0):
    """Non-zero weights everywhere (the DiTs start as exactly zero functions)."""
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_padding_and_every_caption_phrasing():
    tok = Tokenizer()
    texts = [caption(s, c, z, p, k) for s, c, z, p, k in [(0, 0, 0, 0, 0), (3, 5, 1, 8, 1), (2, 4, 1, 4, 2)]]
    ids, mask = tok.encode(texts + ["a red circle"], length=10)
    assert ids.shape == mask.shape == (4, 10) and ids.dtype == torch.long and mask.dtype == torch.bool
    assert torch.equal(mask, ids != 0) and int(mask[3].sum()) == 3
    assert tok.decode(ids, mask) == [" ".join(t.replace(",", " ").split()) for t in texts] + ["a red circle"]
    for k in range(PHRASINGS):  # every phrasing names the same labels
        assert parse_caption(caption(1, 2, 0, 6, k)) == {"shape": 1, "color": 2, "size": 0, "position": 6}
    clip_captions = moving_shapes(5, 2, generator=_g()).captions
    assert tok.decode(*tok.encode(clip_captions)) == clip_captions


def test_tokenizer_names_unknown_words_and_bad_lengths():
    tok = Tokenizer()
    with pytest.raises(ValueError, match=r"'purple'.*known words: a, at"):
        tok.encode(["a red circle", "a purple circle"])
    assert tok.unknown("a Purple circle, zz") == ["purple", "zz"] and tok.unknown("A RED circle") == []
    with pytest.raises(ValueError, match="length must be at least"):
        tok.encode("a small red circle", length=2)
    with pytest.raises(ValueError, match="at least one word"):
        tok.encode(", .")
    with pytest.raises(ValueError, match="texts"):
        tok.encode([])
    with pytest.raises(ValueError, match="vocabulary"):
        Tokenizer(["red", "red"])
    with pytest.raises(ValueError, match="ids must lie"):
        tok.decode(torch.tensor([[1, 99]]))


# ---------------------------------------------------------------------- held-out pairs
def test_shapes_exclude_removes_pairs_deterministically_and_leaves_the_plain_stream_alone():
    hold = [(0, 4), (1, 0)]
    a = shapes(600, generator=_g(3), exclude=hold)
    b = shapes(600, generator=_g(3), exclude=hold)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    for s, c in hold:
        assert not bool(((a.labels["shape"] == s) & (a.labels["color"] == c)).any())
    plain, empty = shapes(50, generator=_g(4)), shapes(50, generator=_g(4), exclude=[])
    assert torch.equal(plain.images, empty.images)
    with pytest.raises(ValueError, match="every colour"):
        shapes(5, exclude=[(0, c) for c in range(6)])
    with pytest.raises(ValueError, match="exclude"):
        shapes(5, exclude=[(9, 0)])


# ---------------------------------------------------------------------- contrastive loss
def test_clip_loss_matches_a_direct_computation():
    img, txt = torch.randn(6, 5, generator=_g(1)), torch.randn(6, 5, generator=_g(2))
    tau = 0.3
    want = 0.0
    for i in range(6):  # image i against every text, and text i against every image
        cos_row = torch.stack([F.cosine_similarity(img[i], txt[j], dim=0) for j in range(6)]) / tau
        cos_col = torch.stack([F.cosine_similarity(img[j], txt[i], dim=0) for j in range(6)]) / tau
        want += -(cos_row.log_softmax(0)[i]) / 12 - (cos_col.log_softmax(0)[i]) / 12
    assert torch.allclose(clip_loss(img, txt, tau), want, atol=1e-5)
    assert torch.allclose(clip_loss(img, txt, torch.tensor(tau)), want, atol=1e-5)
    assert torch.allclose(similarity(img, txt)[2, 4], F.cosine_similarity(img[2], txt[4], dim=0))
    # matching pairs score low, a shuffled batch high
    assert clip_loss(img, img, 0.05) < 0.5 and clip_loss(img, img.roll(1, 0), 0.05) > 5
    with pytest.raises(ValueError, match="temperature"):
        clip_loss(img, txt, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        clip_loss(img, txt, torch.tensor(-1.0))
    with pytest.raises(ValueError, match="image_emb and text_emb"):
        clip_loss(img, txt[:5], 0.1)


def test_retrieval_accuracy_counts_same_group_texts_as_right():
    img = torch.eye(4)
    txt = torch.eye(4)[[0, 1, 3, 2]]  # texts 2 and 3 swapped
    assert retrieval_accuracy(img, txt) == 0.5
    assert retrieval_accuracy(img, txt, groups=torch.tensor([0, 1, 2, 2])) == 1.0
    with pytest.raises(ValueError, match="groups"):
        retrieval_accuracy(img, txt, groups=torch.tensor([0, 1]))


def test_clip_encoders_shapes_masking_and_a_short_training_run_lowers_the_loss():
    tok = Tokenizer()
    data = shapes(256, generator=_g(5))
    ids, mask = tok.encode(data.captions, length=10)
    torch.manual_seed(0)
    model = CLIP(TextEncoder(len(tok), 10, 32, 1, 4, 16), ImageEncoder(3, 32, 8, 16))
    tokens = model.text(ids[:3], mask[:3])
    assert tokens.shape == (3, 10, 32)
    # padding is invisible: changing a padded id changes nothing at the kept positions
    other = ids[:3].clone()
    other[~mask[:3]] = 5
    assert torch.allclose(model.text(other, mask[:3])[mask[:3]], tokens[mask[:3]], atol=1e-5)
    with torch.no_grad():
        before = float(clip_loss(*model(data.images, ids, mask), model.temperature))
    fit(model, lambda m, b, g: clip_loss(*m(b[0], b[1], b[2]), m.temperature), (data.images, ids, mask), steps=60,
        batch_size=64, lr=2e-3, progress=False, cache=False)
    with torch.no_grad():
        after = float(clip_loss(*model(data.images, ids, mask), model.temperature))
    assert after < 0.8 * before
    with pytest.raises(ValueError, match="ids must lie"):
        model.text(torch.tensor([[1, 99]]))
    with pytest.raises(ValueError, match="mask must keep"):
        model.text(ids[:1], torch.zeros_like(mask[:1]))


def test_a_frozen_text_encoder_gets_no_gradient_and_does_not_change_while_the_dit_trains():
    tok = Tokenizer()
    data = shapes(64, generator=_g(6))
    ids, mask = tok.encode(data.captions, length=10)
    text = freeze(TextEncoder(len(tok), 10, 16, 1, 2, 8))
    saved = copy.deepcopy(text.state_dict())
    assert not text.training and all(not p.requires_grad for p in text.parameters())

    class TextToImage(torch.nn.Module):  # the encoder inside the trained module, to prove it is left alone
        def __init__(self):
            super().__init__()
            self.text, self.dit = text, DiT(8, 3, 4, 16, 1, 2, context_dim=16, conditioning="cross")

        def forward(self, x, t, ids, mask):
            return self.dit(x, t, context=self.text(ids, mask), context_mask=mask)

    model = TextToImage()
    x = F.avg_pool2d(data.images, 4)
    fit(model, lambda m, b, g: rectified_flow_loss(lambda xt, t: m(xt, t, b[1], b[2]), b[0], g), (x, ids, mask),
        steps=5, batch_size=16, lr=1e-2, progress=False, cache=False)
    assert all(p.grad is None for p in text.parameters())
    assert all(torch.equal(v, saved[k]) for k, v in text.state_dict().items())
    assert any(p.abs().sum() > 0 for p in model.dit.final.parameters())  # the DiT did train


# ------------------------------------------------------------------ captions in the DiT
def _text_dit(**kw):
    return _randomise(DiT(8, 4, 2, 16, 2, 2, context_dim=6, conditioning="cross", **kw))


def test_an_all_false_mask_row_is_the_null_caption_and_guidance_uses_it():
    dit = _text_dit(pooled_context=True)
    x, t = torch.randn(3, 4, 8, 8, generator=_g(1)), torch.rand(3, generator=_g(2))
    ctx, mask = torch.randn(3, 5, 6, generator=_g(3)), torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    none = torch.zeros_like(mask)
    with torch.no_grad():
        assert torch.allclose(dit(x, t, context=ctx, context_mask=none), dit(x, t), atol=1e-5)
        cond, uncond = dit(x, t, context=ctx, context_mask=mask), dit(x, t)
        guided = GuidedByText(dit, ctx, mask, 2.5)(x, t)
        assert torch.allclose(guided, 3.5 * cond - 2.5 * uncond, atol=1e-4)
        assert torch.allclose(GuidedByText(dit, ctx, mask, 0.0)(x, t), cond, atol=1e-6)
        # padded tokens are invisible
        moved = ctx.clone()
        moved[1, 3:] = 100.0
        assert torch.allclose(dit(x, t, context=moved, context_mask=mask), cond, atol=1e-5)
    with pytest.raises(ValueError, match="captions"):
        GuidedByText(dit, ctx, mask, 1.0)(x[:2], t[:2])
    with pytest.raises(ValueError, match="pooled_context"):
        DiT(8, 4, 2, 16, 1, 2, num_classes=3, pooled_context=True)


def test_caption_dropout_drops_whole_captions_at_the_asked_rate():
    calls = []

    def model(x_t, t, context, context_mask):
        calls.append(context_mask.clone())
        return torch.zeros_like(x_t)

    x, ctx = torch.randn(4000, 2), torch.randn(4000, 3, 5)
    mask = torch.ones(4000, 3, dtype=torch.bool)
    caption_rf_loss(model, x, ctx, mask, 0.25, _g(0))
    dropped = ~calls[-1].any(1)
    assert abs(float(dropped.float().mean()) - 0.25) < 0.03
    assert torch.equal(calls[-1][~dropped], mask[~dropped])  # kept captions keep every token
    caption_rf_loss(model, x[:10], ctx[:10], None, 0.0, _g(0))
    assert bool(calls[-1].all())
    with pytest.raises(ValueError, match="context_mask"):
        caption_rf_loss(model, x, ctx, mask[:, :2], 0.1)


def test_cross_attention_maps_are_distributions_over_the_kept_tokens():
    dit = _text_dit()
    x, t = torch.randn(2, 4, 8, 8, generator=_g(1)), torch.rand(2, generator=_g(2))
    ctx, mask = torch.randn(2, 4, 6, generator=_g(3)), torch.tensor([[True] * 4, [True, True, False, False]])
    maps = dit.cross_attention_maps(x, t, ctx, mask)
    assert maps.shape == (2, 2, 16, 4)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 16), atol=1e-5)
    assert not maps[:, 1, :, 2:].any()
    assert all(b.cross.record is None for b in dit.blocks)
    with pytest.raises(ValueError, match="cross_attention_maps"):
        _randomise(DiT(8, 4, 2, 16, 1, 2, num_classes=3)).cross_attention_maps(x, t, ctx, mask)


# ----------------------------------------------------------------------------- clips
def test_moving_shapes_are_deterministic_and_move_the_way_the_caption_says():
    a, b = moving_shapes(24, 6, generator=_g(1)), moving_shapes(24, 6, generator=_g(1))
    assert a.videos.shape == (24, 6, 3, 32, 32) and torch.equal(a.videos, b.videos) and a.captions == b.captions
    assert not torch.equal(a.videos, moving_shapes(24, 6, generator=_g(2)).videos)
    assert a.videos.min() >= -1 and a.videos.max() <= 1
    read = clip_attributes(a.videos)
    assert torch.equal(read["direction"], a.labels["direction"])
    assert torch.equal(read["shape"], a.labels["shape"][:, None].expand(24, 6))
    assert torch.equal(read["color"], a.labels["color"][:, None].expand(24, 6))
    for i in range(24):
        word = DIRECTIONS[int(a.labels["direction"][i])]
        assert a.captions[i].endswith(f"moving {word}")
    middle = moving_shapes(8, 4, generator=_g(4), lane=1)
    assert bool((middle.labels["lane"] == 1).all())
    centre = clip_attributes(middle.videos)["centroid"]
    across = torch.where(middle.labels["direction"][:, None] < 2, centre[..., 1], centre[..., 0])
    assert bool(((across - 0.5).abs() < 0.05).all())  # the lane through the centre
    with pytest.raises(ValueError, match="lane"):
        moving_shapes(3, 2, lane=3)
    one = moving_shapes(4, 1, generator=_g(3)).videos
    assert one.shape == (4, 1, 3, 32, 32)
    with pytest.raises(ValueError, match="frames"):
        moving_shapes(3, 0)
    with pytest.raises(ValueError, match="videos"):
        clip_attributes(a.videos[0])


# ------------------------------------------------------------------------ video DiT
@pytest.mark.parametrize("attention", ["full", "factorised"])
def test_video_dit_shapes_zero_start_and_null_caption(attention):
    net = VideoDiT(frames=3, input_size=8, in_channels=4, patch_size=2, width=16, depth=2, heads=2, context_dim=6,
                   attention=attention)
    x, t = torch.randn(2, 3, 4, 8, 8, generator=_g(1)), torch.rand(2, generator=_g(2))
    ctx, mask = torch.randn(2, 5, 6, generator=_g(3)), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        assert not net(x, t, context=ctx, context_mask=mask).any()  # adaLN-Zero: exactly 0 at initialisation
        _randomise(net)
        out = net(x, t, context=ctx, context_mask=mask)
        assert out.shape == x.shape and bool(out.abs().sum() > 0)
        assert torch.allclose(net(x, t, context=ctx, context_mask=torch.zeros_like(mask)), net(x, t), atol=1e-5)
    assert net.sequence_length == 3 * 16
    with pytest.raises(ValueError, match="x must have shape"):
        net(x[:, :2], t)


def test_factorised_attention_attends_within_frames_then_along_time():
    net = _randomise(VideoDiT(frames=3, width=16, depth=1, heads=2, context_dim=6, attention="factorised"))
    block = net.blocks[0]
    spatial, temporal = [], []
    block.attn.record, block.attn_time.record = spatial, temporal
    with torch.no_grad():
        net(torch.randn(2, 3, 4, 8, 8, generator=_g(1)), torch.rand(2, generator=_g(2)))
    assert spatial[0].shape == (2 * 3, 16, 16)  # one sequence per frame, N tokens each
    assert temporal[0].shape == (2 * 16, 3, 3)  # one sequence per patch position, T tokens each
    full = _randomise(VideoDiT(frames=3, width=16, depth=1, heads=2, context_dim=6, attention="full"))
    records = []
    full.blocks[0].attn.record = records
    with torch.no_grad():
        full(torch.randn(2, 3, 4, 8, 8, generator=_g(1)), torch.rand(2, generator=_g(2)))
    assert records[0].shape == (2, 48, 48)  # one sequence of T N tokens
    with pytest.raises(ValueError, match="attention"):
        VideoDiT(frames=3, attention="axial")


def test_inflate_starts_the_video_model_as_the_image_model_on_every_frame():
    image = _randomise(DiT(8, 4, 2, 16, 2, 2, context_dim=6, conditioning="cross"))
    video = inflate(image, frames=3)
    x, t = torch.randn(2, 3, 4, 8, 8, generator=_g(1)), torch.rand(2, generator=_g(2))
    ctx, mask = torch.randn(2, 4, 6, generator=_g(3)), torch.tensor([[True] * 4, [True, True, False, False]])
    with torch.no_grad():
        out = video(x, t, context=ctx, context_mask=mask)
        per_frame = torch.stack([image(x[:, k], t, context=ctx, context_mask=mask) for k in range(3)], 1)
        assert torch.allclose(out, per_frame, atol=1e-5)
        # once the temporal gates open, frames influence each other
        for block in video.blocks:
            block.modulation[1].bias[5 * 16:6 * 16] = 1.0
        moved = x.clone()
        moved[:, 0] += 1.0
        assert not torch.allclose(video(moved, t, context=ctx, context_mask=mask)[:, 2], video(x, t, context=ctx,
                                  context_mask=mask)[:, 2], atol=1e-4)
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(image.parameters(), video.parameters()))
    with pytest.raises(ValueError, match="image_dit"):
        inflate(_randomise(DiT(8, 4, 2, 16, 1, 2, num_classes=3)), frames=3)
