"""The vector quantiser, the VQ-VAE, the GPT and autoregressive likelihoods and sampling."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cs231n_gen import autoregressive as ar
from cs231n_gen.nn import GPT, VQVAE, VectorQuantizer, codebook_usage, vqvae_loss
from cs231n_gen.train import fit


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- quantiser
def _quantizer(**kw):
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 3, beta=0.25, init="uniform", restart_after=None, **kw)
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(8, 3, generator=_g(1)))
    return vq


def test_quantizer_picks_the_nearest_code_and_passes_the_gradient_straight_through():
    vq = _quantizer()
    z = torch.randn(2, 3, 4, 5, generator=_g(2), requires_grad=True)
    out = vq(z)
    flat = z.detach().movedim(1, -1).reshape(-1, 3)
    want = torch.cdist(flat, vq.codebook.detach()).argmin(1)
    assert torch.equal(out.codes.reshape(-1), want) and out.codes.shape == (2, 4, 5)
    assert torch.allclose(out.z_q.movedim(1, -1).reshape(-1, 3), vq.codebook.detach()[want])
    upstream = torch.randn(z.shape, generator=_g(3))
    grad_z, grad_codebook = torch.autograd.grad(out.z_q, (z, vq.codebook), upstream, allow_unused=True)
    assert torch.equal(grad_z, upstream)  # the identity, exactly
    assert grad_codebook is None  # the decoder's gradient never reaches the codebook


def test_codebook_loss_moves_codes_and_commitment_loss_moves_the_encoder():
    vq = _quantizer()
    z = torch.randn(16, 3, 2, 2, generator=_g(4), requires_grad=True)
    out = vq(z)
    e = out.z_q.detach()
    g_z, g_c = torch.autograd.grad(out.codebook_loss, (z, vq.codebook), allow_unused=True, retain_graph=True)
    assert g_z is None and g_c is not None and float(g_c.abs().sum()) > 0
    g_z, g_c = torch.autograd.grad(out.commitment_loss, (z, vq.codebook), allow_unused=True, retain_graph=True)
    assert g_c is None and torch.allclose(g_z, 2 * (z.detach() - e) / z.numel())
    assert torch.allclose(out.loss, out.codebook_loss + 0.25 * out.commitment_loss)
    # beta weighs the commitment (encoder) term: the encoder's gradient carries it, the codebook's does not.
    g_z, g_c = torch.autograd.grad(out.loss, (z, vq.codebook))
    assert torch.allclose(g_z, 0.25 * 2 * (z.detach() - e) / z.numel(), atol=1e-7)
    g_c_alone, = torch.autograd.grad(vq(z).codebook_loss, (vq.codebook,))
    assert torch.allclose(g_c, g_c_alone)


def test_kmeans_initialisation_and_restarts_keep_every_code_alive():
    torch.manual_seed(0)
    data = torch.randn(256, 3, generator=_g(5)) * 5 + 20  # far from the uniform(+-1/K) initial codes
    plain = VectorQuantizer(16, 3, init="uniform", restart_after=None).train()
    fixed = VectorQuantizer(16, 3, init="kmeans", restart_after=2).train()
    for _ in range(3):
        plain(data[:, :, None])
        fixed(data[:, :, None])
    assert codebook_usage(plain(data[:, :, None]).codes, 16)["active"] < 8  # the few codes nearest the data take all
    assert codebook_usage(fixed.eval()(data[:, :, None]).codes, 16)["active"] >= 15
    # A code pushed far away is restarted onto the data after restart_after unused batches.
    fixed.train()
    with torch.no_grad():
        fixed.codebook[0] = 1e3
    for _ in range(2):
        fixed(data[:, :, None])
    assert float(fixed.codebook[0].norm()) < 100 and int(fixed.restarts) >= 1


def test_codebook_usage_counts_and_perplexity():
    codes = torch.tensor([0, 1, 2, 3] * 5)
    u = codebook_usage(codes, 8)
    assert u["active"] == 4 and u["fraction_active"] == 0.5 and math.isclose(u["perplexity"], 4.0)
    assert u["counts"].tolist() == [5, 5, 5, 5, 0, 0, 0, 0]
    assert math.isclose(codebook_usage(torch.zeros(7, dtype=torch.long), 8)["perplexity"], 1.0)


def test_vqvae_round_trip_shapes_and_training():
    torch.manual_seed(0)
    model = VQVAE(channels=1, size=8, grid=2, num_codes=8, code_dim=3, width=8)
    x = torch.rand(32, 1, 8, 8, generator=_g(6)) * 2 - 1
    recon, q = model(x)
    assert recon.shape == x.shape and q.codes.shape == (32, 2, 2)
    codes = model.eval().encode(x, batch_size=5)
    assert codes.shape == (32, 2, 2) and codes.dtype == torch.long
    assert torch.equal(codes, model(x)[1].codes)
    assert torch.allclose(model.decode(codes, batch_size=7), model(x)[0], atol=1e-6)
    assert torch.allclose(model.decode(codes.reshape(32, 4)), model.decode(codes))
    history = fit(model, vqvae_loss, x, steps=30, batch_size=16, lr=3e-3, progress=False, device="cpu")
    assert history.loss[-1] < history.loss[0]


# ---------------------------------------------------------------------------------- GPT
def _gpt(**kw):
    torch.manual_seed(0)
    return GPT(vocab_size=7, block_size=6, width=16, depth=2, heads=2, **kw).eval()


def test_causal_mask_changing_token_k_never_changes_earlier_predictions():
    model = _gpt(num_classes=3)
    tokens = torch.randint(0, 7, (4, 5), generator=_g(7))
    y = torch.tensor([0, 1, 2, 3])
    base = model(tokens, y)
    assert base.shape == (4, 6, 7)
    for k in range(5):
        changed = tokens.clone()
        changed[:, k] = (changed[:, k] + 1) % 7
        out = model(changed, y)
        # Row i predicts token i + 1 from the prefix and tokens 1..i: rows 0..k never see token k.
        assert torch.equal(out[:, :k + 1], base[:, :k + 1])
        assert not torch.allclose(out[:, k + 1:], base[:, k + 1:])
    assert not torch.allclose(model(tokens, torch.tensor([1, 1, 1, 1])), base)  # the prefix matters


class _FixedLogits(torch.nn.Module):
    """A 'model' whose next-token logits depend only on the position: a known distribution."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)  # (block_size, vocab)
        self.vocab_size, self.block_size, self.num_classes = logits.shape[1], logits.shape[0], None

    def forward(self, tokens, y=None):
        return self.logits[: tokens.shape[1] + 1].expand(tokens.shape[0], -1, -1)


def test_likelihood_of_a_known_sequence():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]))
    model = _FixedLogits(logits)
    seq = torch.tensor([[0, 2, 1]])
    want = -(math.log2(0.5) + math.log2(0.8) + math.log2(1 / 3)) / 3
    assert math.isclose(ar.bits_per_token(model, seq), want, rel_tol=1e-6)
    assert torch.allclose(ar.token_log_probs(model, seq), torch.log(torch.tensor([[0.5, 0.8, 1 / 3]])))
    assert math.isclose(float(ar.ar_loss(model, seq)), want * math.log(2), rel_tol=1e-6)
    # A GPT whose output layer is zero knows nothing: log2(K) bits per token exactly.
    gpt = _gpt()
    torch.nn.init.zeros_(gpt.head.weight)
    assert math.isclose(ar.bits_per_token(gpt, torch.randint(0, 7, (5, 6), generator=_g(8))), math.log2(7),
                        rel_tol=1e-6)


def test_sample_next_temperature_and_top_k_edge_cases():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]]).expand(20000, 5)
    assert torch.equal(ar.sample_next(logits, temperature=0.0), torch.zeros(20000, dtype=torch.long))  # greedy
    assert torch.equal(ar.sample_next(logits, 5.0, top_k=1, generator=_g()), torch.zeros(20000, dtype=torch.long))
    # top-k keeps exactly k tokens, also when logits tie at the cut.
    ties = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(20000, 4)
    assert ar.sample_next(ties, 1.0, top_k=2, generator=_g()).unique().numel() == 2
    kept = ar.sample_next(logits, 1.0, top_k=3, generator=_g(1))
    assert set(kept.unique().tolist()) == {0, 1, 2}
    # k >= K keeps everything: the same draws as no cut.
    assert torch.equal(ar.sample_next(logits, 1.0, top_k=5, generator=_g(2)),
                       ar.sample_next(logits, 1.0, top_k=None, generator=_g(2)))
    # Frequencies follow softmax(logits / temperature) after the cut.
    for temperature in (0.5, 1.0, 2.0):
        freq = torch.bincount(ar.sample_next(logits, temperature, top_k=3, generator=_g(3)), minlength=5) / 20000
        cut = logits[0].clone()
        cut[3:] = float("-inf")
        assert torch.allclose(freq, F.softmax(cut / temperature, 0), atol=0.015), temperature


def test_sample_shapes_labels_and_reproducibility():
    model = _gpt(num_classes=3)
    a = ar.sample(model, 5, 6, y=2, generator=_g(4), top_k=3)
    b = ar.sample(model, 5, 6, y=torch.full((5,), 2), generator=_g(4), top_k=3)
    assert a.shape == (5, 6) and a.dtype == torch.long and torch.equal(a, b)
    assert ((a >= 0) & (a < 7)).all()
    assert ar.sample(model, 3, 2, generator=_g()).shape == (3, 2)  # unconditional: the null label
    greedy = ar.sample(model, 2, 6, y=1, temperature=0.0)
    assert torch.equal(greedy[0], greedy[1])
    assert not model.training


def test_marginal_codes_baseline():
    tokens = torch.tensor([[0, 1], [0, 2], [1, 1], [0, 1]])
    m = ar.MarginalCodes(tokens, vocab_size=3, smoothing=0.0)
    want = -(3 * math.log2(0.75) + math.log2(0.25) + 3 * math.log2(0.75) + math.log2(0.25)) / 8
    assert math.isclose(m.bits_per_token(tokens), want, rel_tol=1e-9)
    by_class = ar.MarginalCodes(tokens, 3, labels=torch.tensor([0, 0, 1, 1]), num_classes=2, smoothing=1.0)
    assert by_class.sample(6, y=1, generator=_g()).shape == (6, 2)
    assert math.isclose(ar.MarginalCodes(tokens, 3, smoothing=1e9).bits_per_token(tokens), math.log2(3), rel_tol=1e-6)
    draws = m.sample(20000, generator=_g(1))
    assert abs(float((draws[:, 0] == 0).float().mean()) - 0.75) < 0.015


def test_levels_round_trip():
    images = torch.randint(0, 17, (5, 1, 8, 8)).float() / 16 * 2 - 1
    tokens = ar.to_levels(images)
    assert tokens.shape == (5, 64) and tokens.max() <= 16
    assert torch.equal(ar.from_levels(tokens, 8), images)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("call, name", [
    (lambda: GPT(vocab_size=1, block_size=4), "vocab_size"),
    (lambda: GPT(vocab_size=5, block_size=4, width=10, heads=4), "width"),
    (lambda: _gpt()(torch.rand(2, 3)), "tokens"),
    (lambda: _gpt()(torch.full((2, 3), 7)), "tokens"),
    (lambda: _gpt()(torch.zeros(2, 6, dtype=torch.long)), "tokens"),
    (lambda: _gpt(num_classes=3)(torch.zeros(2, 3, dtype=torch.long)), "y"),
    (lambda: _gpt()(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long)), "y"),
    (lambda: ar.sample(_gpt(), 2, 7), "length"),
    (lambda: ar.sample_next(torch.randn(2, 3), temperature=-1.0), "temperature"),
    (lambda: ar.sample_next(torch.randn(2, 3), top_k=0), "top_k"),
    (lambda: ar.sample_next(torch.tensor([[float("nan"), 0.0]])), "logits"),
    (lambda: VectorQuantizer(8, 3, init="random"), "init"),
    (lambda: VectorQuantizer(8, 3)(torch.randn(2, 4, 5)), "z"),
    (lambda: codebook_usage(torch.tensor([0, 9]), 8), "codes"),
    (lambda: VQVAE(size=16, grid=3), "grid"),
    (lambda: VQVAE(size=8, grid=2, num_codes=4).decode(torch.full((1, 2, 2), 4)), "codes"),
    (lambda: vqvae_loss(VQVAE(size=8, grid=2), torch.rand(2, 1, 16, 16)), "batch"),
    (lambda: ar.ar_loss(_gpt(), (torch.zeros(2, 3, dtype=torch.long),)), "batch"),
    (lambda: ar.MarginalCodes(torch.zeros(2, 2, dtype=torch.long), 3).bits_per_token(torch.zeros(2, 3,
                                                                                              dtype=torch.long)),
     "tokens"),
    (lambda: ar.to_levels(torch.full((1, 1, 2, 2), 2.0)), "images"),
])
def test_bad_inputs_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
