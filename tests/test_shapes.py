"""Procedural captioned shapes and the judge that reads them back."""
import pytest
import torch
import torch.nn.functional as F

from cs231n_gen.data import captioned_shapes as cs
from cs231n_gen.data import parse_caption, shapes
from cs231n_gen.image_metrics import shape_attributes

ATTRS = cs.ATTRIBUTES


def _g(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def held_out():
    return shapes(2000, generator=_g(123))


def test_same_seed_same_data_and_draws_differ():
    a, b, c = shapes(64, generator=_g(1)), shapes(64, generator=_g(1)), shapes(64, generator=_g(2))
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert all(torch.equal(a.labels[k], b.labels[k]) for k in ATTRS)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (64, 3, 32, 32) and a.images.dtype == torch.float32
    assert float(a.images.min()) >= -1 and float(a.images.max()) <= 1
    assert all(a.labels[k].dtype == torch.long and a.labels[k].shape == (64,) for k in ATTRS)
    assert shapes(3, size=48, generator=_g(0)).images.shape == (3, 3, 48, 48)


def test_two_draws_of_the_same_description_differ(held_out):
    key = torch.stack([held_out.labels[k] for k in ATTRS], 1)
    for i in range(len(key)):
        same = (key == key[i]).all(1).nonzero().flatten()
        if len(same) > 1:
            j = int(same[same != i][0])
            assert held_out.captions[i] == held_out.captions[j]
            assert (held_out.images[i] - held_out.images[j]).abs().max() > 0.05  # jitter
            return
    pytest.fail("no two images share a description")


def test_every_label_value_occurs(held_out):
    for k, names in (("shape", cs.SHAPES), ("color", cs.COLORS), ("size", cs.SIZES), ("position", cs.POSITIONS)):
        counts = torch.bincount(held_out.labels[k], minlength=len(names))
        assert len(counts) == len(names) and int(counts.min()) > 0.5 * len(held_out.captions) / len(names)


def test_captions_parse_back_to_their_labels(held_out):
    for i, text in enumerate(held_out.captions[:500]):
        assert parse_caption(text) == {k: int(held_out.labels[k][i]) for k in ATTRS}, text
    assert held_out.captions[0].startswith("a ") and ("at the" in held_out.captions[0]
                                                      or "in the center" in held_out.captions[0])


def test_parser_paraphrases_partial_captions_and_bad_words():
    full = parse_caption("a small red circle at the top left")
    assert full == {"size": 0, "color": 0, "shape": 0, "position": 0}
    assert parse_caption("Red circle, small, top-left.") == full
    assert parse_caption("a blue square") == {"color": 4, "shape": 1}
    assert parse_caption("a cross on the right") == {"shape": 3, "position": 5}
    assert parse_caption("in the middle") == {"position": 4}
    assert parse_caption("a large yellow triangle at the bottom") == {"size": 1, "color": 1, "shape": 2,
                                                                      "position": 7}
    with pytest.raises(ValueError, match="'purple'"):
        parse_caption("a purple circle")
    with pytest.raises(ValueError, match="two colors"):
        parse_caption("a red blue circle")
    with pytest.raises(ValueError, match="text must be a str"):
        parse_caption(3)


def test_renderer_areas_match_the_geometry():
    r = torch.full((4,), 12.0)
    cover = cs.coverage(torch.arange(4), torch.full((4,), 32.0), torch.full((4,), 32.0), r, 64)
    for k, name in enumerate(cs.SHAPES):
        assert float(cover[k].sum()) == pytest.approx(cs.AREA[name] * 144, rel=0.02), name
    with pytest.raises(ValueError, match="shape"):
        cs.coverage(torch.tensor([0.5]), torch.ones(1), torch.ones(1), torch.ones(1), 8)
    with pytest.raises(ValueError, match="cx"):
        cs.coverage(torch.tensor([0]), torch.ones(2), torch.ones(1), torch.ones(1), 8)


def _accuracy(images, labels):
    got = shape_attributes(images)
    return {k: float((got[k] == labels[k]).float().mean()) for k in ATTRS}, got


def test_judge_reads_held_out_images(held_out):
    acc, got = _accuracy(held_out.images, held_out.labels)
    print("clean", acc)
    assert all(a >= 0.995 for a in acc.values()), acc
    assert bool(got["found"].all())


def test_judge_reads_blurred_and_noisy_images(held_out):
    k = torch.tensor([0.25, 0.5, 0.25])
    k = torch.outer(k, k).expand(3, 1, 3, 3).contiguous()
    blurred = F.conv2d(F.pad(held_out.images, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    acc, _ = _accuracy(blurred, held_out.labels)
    print("blurred", acc)
    assert acc["shape"] >= 0.97 and min(acc[a] for a in ("color", "size", "position")) >= 0.99, acc
    noisy = held_out.images + 0.1 * torch.randn(held_out.images.shape, generator=_g(5))
    acc, _ = _accuracy(noisy, held_out.labels)
    print("noise 0.1", acc)
    assert all(a >= 0.98 for a in acc.values()), acc


def test_judge_flags_blank_images_and_rejects_bad_input():
    blank = torch.full((2, 3, 32, 32), -0.8)
    assert not bool(shape_attributes(blank)["found"].any())
    for bad, what in ((torch.zeros(2, 1, 32, 32), "RGB"), (torch.zeros(2, 3, 32, 30), "RGB"),
                      (torch.zeros(0, 3, 32, 32), "at least one"), (torch.full((1, 3, 32, 32), float("nan")), "NaN")):
        with pytest.raises(ValueError, match=what):
            shape_attributes(bad)
    with pytest.raises(ValueError, match="n must be"):
        shapes(0)
    with pytest.raises(ValueError, match="generator"):
        shapes(4, generator=3)
