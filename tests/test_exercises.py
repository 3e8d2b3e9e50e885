import copy

import pytest
import torch
import torch.nn.functional as F

from cs231n_gen.exercises import check_euler_sampler, check_rf_loss


def make_loss(sign=1, swap_time=False, reduce="mean", model_time=lambda t: t):
    def rf_loss(model, x, z, t):
        tt = t[:, None]
        xt = tt * x + (1 - tt) * z if swap_time else (1 - tt) * x + tt * z
        err = (sign * (z - x) - model(xt, model_time(t))).square()
        return {"mean": err.sum(1).mean(), "sum": err.sum(), "all": err.mean()}[reduce]

    return rf_loss


def test_correct_loss_passes(capsys):
    check_rf_loss(make_loss())
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (make_loss(sign=-1), "wrong sign"),
        (make_loss(swap_time=True), "time runs the wrong way"),
        (make_loss(reduce="sum"), "summed over the batch"),
        (make_loss(reduce="all"), "averaged over coordinates"),
        (make_loss(model_time=lambda t: 1 - t), "1 - t"),
        (lambda model, x, z, t: 3.0, "scalar tensor"),
    ],
)
def test_loss_mistakes_are_named(fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check_rf_loss(fn)


def make_sampler(grid="right", sign=-1, scale=None):
    def sample(model, z, n):
        x = z
        if grid == "slide":
            ts = torch.linspace(1, 0, n).tolist()
        elif grid == "forward":
            ts = [i / n for i in range(n)]
        elif grid == "end":
            ts = [1 - (i + 1) / n for i in range(n)]
        else:
            ts = [1 - i / n for i in range(n)]
        for t in ts:
            x = x + sign * model(x, torch.full((x.shape[0],), t)) * (scale if scale is not None else 1 / n)
        return x

    return sample


def test_correct_sampler_passes(capsys):
    check_euler_sampler(make_sampler())
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (make_sampler(grid="slide"), "linspace"),
        (make_sampler(grid="forward"), "walks time forwards"),
        (make_sampler(grid="end"), "end of each step"),
        (make_sampler(sign=+1), "steps the wrong way"),
        (lambda model, z, n: z, "called the model 0 times"),
        (make_sampler(scale=1.0), "whole velocity"),
    ],
)
def test_sampler_mistakes_are_named(fn, hint):
    with pytest.raises(AssertionError, match=hint):
        check_euler_sampler(fn)


def test_gan_exercises_pass_and_name_mistakes(capsys):
    import torch.nn.functional as F

    from cs231n_gen.exercises import check_nonsaturating_loss, check_optimal_discriminator

    check_nonsaturating_loss(lambda logits: F.softplus(-logits).mean())
    check_optimal_discriminator(lambda p, q: p / (p + q))
    assert "correct" in capsys.readouterr().out
    mistakes = [
        (lambda logits: -F.softplus(logits).mean(), "minimax"),
        (lambda logits: -torch.log(torch.sigmoid(logits)).mean(), "underflows"),
        (lambda logits: F.softplus(-logits).sum(), "mean"),
        (lambda logits: F.softplus(logits).mean(), "D\\(G\\(z\\)\\) -> 1"),
        (lambda logits: F.softplus(-logits).mean().detach(), "gradient"),
        (lambda logits: -torch.log(torch.sigmoid(logits) + 1e-8).mean(), "epsilon"),
        (lambda logits: -torch.log(torch.sigmoid(logits) + 1e-6).mean(), "epsilon"),
    ]
    for fn, hint in mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_nonsaturating_loss(fn)
    for fn, hint in [(lambda p, q: q / (p + q), "REAL"), (lambda p, q: p / q.clamp(min=1e-12), "ratio"),
                     (lambda p, q: p / q, "ratio"),
                     (lambda p, q: p / (p + q) / 2, "1/2")]:
        with pytest.raises(AssertionError, match=hint):
            check_optimal_discriminator(fn)


def _batched_cfg(model, x, t, y, w, null_label):
    n = x.shape[0]
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_label)]))
    return (1 + w) * both[:n] - w * both[n:]


def _cfg_loss(model, x, y, z, t, u, p_uncond, null_label, drop=lambda u, p: u < p):
    y = torch.where(drop(u, p_uncond), torch.full_like(y, null_label), y)
    tt = t[:, None]
    return (model((1 - tt) * x + tt * z, t, y) - (z - x)).square().sum(1).mean()


def test_cfg_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_cfg_loss, check_cfg_velocity

    check_cfg_velocity(_batched_cfg)
    check_cfg_loss(_cfg_loss)
    assert capsys.readouterr().out.count("correct") == 2

    def two_calls(model, x, t, y, w, null_label):
        return (1 + w) * model(x, t, y) - w * model(x, t, torch.full_like(y, null_label))

    def swapped(model, x, t, y, w, null_label):
        n = x.shape[0]
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_label)]))
        return (1 + w) * both[n:] - w * both[:n]

    velocity_mistakes = [
        (two_calls, "ONE call"),
        (swapped, "swapped"),
        (lambda m, x, t, y, w, nl: w * m(x, t, y) + (1 - w) * m(x, t, torch.full_like(y, nl)), "other convention"),
        (lambda m, x, t, y, w, nl: (1 + w) * m(x, t, y) + w * m(x, t, torch.full_like(y, nl)), "subtracted"),
    ]
    for fn, hint in velocity_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_cfg_velocity(fn)

    def in_place(model, x, y, z, t, u, p, nl):
        y[u < p] = nl
        return _cfg_loss(model, x, y, z, t, u, 0.0, nl)

    loss_mistakes = [
        (lambda *a: _cfg_loss(*a, drop=lambda u, p: u >= p), "probability 1 - p_uncond"),
        (lambda *a: _cfg_loss(*a, drop=lambda u, p: u < 0), "no label was dropped"),
        (in_place, "in place"),
        (lambda m, x, y, z, t, u, p, nl: _cfg_loss(m, x, y, z, t, u, p, nl) * 2, "expected"),
        (lambda m, x, y, z, t, u, p, nl: _cfg_loss(m, x, y, z, t, u, p, 0), "real class"),
        (lambda m, x, y, z, t, u, p, nl: _cfg_loss(m, x, y, z, t, u, p, nl, drop=lambda u, p: (u[:1] < p).expand_as(u)),
         "one coin"),
    ]
    for fn, hint in loss_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_cfg_loss(fn)


def test_schedule_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_logit_normal_sampler, check_shift

    check_logit_normal_sampler(lambda n, m, s, g: torch.sigmoid(m + s * torch.randn(n, generator=g)))
    check_shift(lambda t, s: s * t / (1 + (s - 1) * t))
    assert capsys.readouterr().out.count("correct") == 2
    sampler_mistakes = [
        (lambda n, m, s, g: m + s * torch.randn(n, generator=g), "sigmoid"),
        (lambda n, m, s, g: torch.sigmoid(m + s * s * torch.randn(n, generator=g)), "s\\^2"),
        (lambda n, m, s, g: torch.rand(n, generator=g), "uniform"),
        (lambda n, m, s, g: torch.sigmoid(-m + s * torch.randn(n, generator=g)), "wrong sign"),
        (lambda n, m, s, g: torch.sigmoid(m + s * torch.randn(n // 2, generator=g)), "shape"),
        (lambda n, m, s, g: torch.sigmoid(m + s * torch.rand(n, generator=g)), "torch.randn"),
        (lambda n, m, s, g: torch.sigmoid(m + s * torch.randn(n)), "generator=generator"),
    ]
    for fn, hint in sampler_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_logit_normal_sampler(fn)
    shift_mistakes = [
        (lambda t, s: t / (s - (s - 1) * t), "inverse"),
        (lambda t, s: s * t / (1 + s * t), "denominator"),
        (lambda t, s: (s * t).clamp(max=1.0), "clipping"),
        (lambda t, s: t, "expected"),
    ]
    for fn, hint in shift_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_shift(fn)


def test_generalized_diffusion_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_ddpm_step, check_eps_conversions

    def good_conv(eps, x_t, a, b, da, db):
        x_hat = (x_t - b * eps) / a
        return x_hat, da * x_hat + db * eps

    def good_step(x_t, x_hat, a_t, b_t, a_s, b_s, noise):
        a_ts = a_t / a_s
        b_ts2 = b_t**2 - a_ts**2 * b_s**2
        return a_s * b_ts2 / b_t**2 * x_hat + a_ts * b_s**2 / b_t**2 * x_t + (b_ts2 * b_s**2 / b_t**2).sqrt() * noise

    check_eps_conversions(good_conv)
    check_ddpm_step(good_step)
    assert capsys.readouterr().out.count("correct") == 2
    conv_mistakes = [
        (lambda e, x, a, b, da, db: ((x + b * e) / a, da * (x + b * e) / a + db * e), "subtracted"),
        (lambda e, x, a, b, da, db: (x - b * e, da * (x - b * e) + db * e), "divide by a"),
        (lambda e, x, a, b, da, db: ((x - b * e) / a, e - (x - b * e) / a), "rectified flow"),
        (lambda e, x, a, b, da, db: ((x - b * e) / a, x), "x_t itself"),
    ]
    for fn, hint in conv_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_eps_conversions(fn)

    def mean_only(x_t, x_hat, a_t, b_t, a_s, b_s, noise):
        return good_step(x_t, x_hat, a_t, b_t, a_s, b_s, 0 * noise)

    def scaled_noise(scale):
        def step(x_t, x_hat, a_t, b_t, a_s, b_s, noise):
            a_ts = a_t / a_s
            b_ts2 = b_t**2 - a_ts**2 * b_s**2
            mean = good_step(x_t, x_hat, a_t, b_t, a_s, b_s, 0 * noise)
            return mean + scale(b_ts2, b_s, b_t) * noise
        return step

    def swapped_weights(x_t, x_hat, a_t, b_t, a_s, b_s, noise):
        a_ts = a_t / a_s
        b_ts2 = b_t**2 - a_ts**2 * b_s**2
        return a_ts * b_s**2 / b_t**2 * x_hat + a_s * b_ts2 / b_t**2 * x_t + (b_ts2 * b_s**2 / b_t**2).sqrt() * noise

    step_mistakes = [
        (mean_only, "The mean is right; the noise is not: you add no noise"),
        (lambda x_t, x_hat, a_t, b_t, a_s, b_s, noise: a_s * x_hat + b_s * noise, "re-noises"),
        (lambda x_t, x_hat, a_t, b_t, a_s, b_s, noise: a_s * x_hat + b_s * (x_t - a_t * x_hat) / b_t, "DDIM"),
        (lambda x_t, x_hat, a_t, b_t, a_s, b_s, noise: x_t, "returns x_t unchanged"),
        (swapped_weights, "swapped"),
        (scaled_noise(lambda b_ts2, b_s, b_t: b_ts2 * b_s**2 / b_t**2), "variance"),
        (scaled_noise(lambda b_ts2, b_s, b_t: b_s), "b_s, the spread"),
        (scaled_noise(lambda b_ts2, b_s, b_t: b_ts2.sqrt()), "forward step"),
        (scaled_noise(lambda b_ts2, b_s, b_t: 0.5 * b_s), "std = sqrt"),
    ]
    for fn, hint in step_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_ddpm_step(fn)


def _kl(mean, log_var):
    return 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).flatten(1).sum(1)


def _latent_loss(model, vae, x, y, scale, p_uncond, generator, *, grad=False, use_scale=True, sample=False):
    from cs231n_gen.guidance import conditional_rf_loss

    with torch.set_grad_enabled(grad):
        mean, log_var = vae.encode(x)
        z = vae.sample(mean, log_var, generator) if sample else mean
    return conditional_rf_loss(model, ((scale if use_scale else 1.0) * z).flatten(1), y, p_uncond, generator)


def test_latent_diffusion_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_kl_divergence, check_latent_rf_loss

    check_kl_divergence(_kl)
    check_latent_rf_loss(_latent_loss)
    assert capsys.readouterr().out.count("correct") == 2
    kl_mistakes = [
        (lambda m, lv: 2 * _kl(m, lv), "factor 1/2"),
        (lambda m, lv: 0.5 * (m ** 2 + lv.exp() - 1 - lv).flatten(1).mean(1), "averaged"),
        (lambda m, lv: _kl(m, lv).sum(), "one number for the whole batch"),
        (lambda m, lv: 0.5 * (m ** 2 + lv.exp() - 1 + lv).flatten(1).sum(1), "sign of the log term"),
        (lambda m, lv: 0.5 * (m ** 2 + (lv / 2).exp() - 1 - lv / 2).flatten(1).sum(1), "VARIANCE"),
        (lambda m, lv: 0.5 * (m ** 2 + lv.exp() - 1).flatten(1).sum(1), "- log sigma\\^2 term is missing"),
        (lambda m, lv: 0.5 * (m ** 2 + lv ** 2 - 1 - (lv ** 2).log()).flatten(1).sum(1), "standard deviation"),
    ]
    for fn, hint in kl_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_kl_divergence(fn)
    latent_mistakes = [
        (lambda *a: _latent_loss(*a, grad=True), "reaches the encoder"),
        (lambda *a: _latent_loss(*a, use_scale=False), "not scaled"),
        (lambda *a: _latent_loss(*a, sample=True), "posterior MEAN"),
        (lambda m, v, x, y, s, p, g: _latent_loss(m, v, x, y, 1 / s, p, g), "divided by scale"),
        (lambda m, v, x, y, s, p, g: _latent_loss(m, v, x, y, s, p, g).detach(), "no gradient"),
    ]
    for fn, hint in latent_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_latent_rf_loss(fn)


# ---------------------------------------------------------------- lecture 06: diffusion transformers
def _patchify(x, p, order=(0, 2, 4, 3, 5, 1)):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(*order).reshape(b, (h // p) * (w // p), -1)


def _adaln_zero_block(x, c, modulation, attn, mlp, one_plus=True, gates=True, silu=True, swap=False, half=False):
    chunks = modulation(F.silu(c) if silu else c)[:, None, :].chunk(6, dim=-1)
    shift1, scale1, gate1, shift2, scale2, gate2 = chunks
    if swap:
        shift1, scale1, shift2, scale2 = scale1, shift1, scale2, shift2
    norm = lambda h: F.layer_norm(h, h.shape[-1:], eps=1e-6)  # noqa: E731
    one = 1 if one_plus else 0
    x = x + (gate1 if gates else 1) * attn(norm(x) * (one + scale1) + shift1)
    if half:
        return x
    return x + (gate2 if gates else 1) * mlp(norm(x) * (one + scale2) + shift2)


def _zero_modulation(width, weight=True, bias=True, gates_only=False):
    layer = torch.nn.Linear(width, 6 * width)
    with torch.no_grad():
        if weight:
            layer.weight.zero_()
        if bias:
            layer.bias.zero_()
        if gates_only:
            layer.weight[2 * width:3 * width] = 0
            layer.weight[5 * width:] = 0
            layer.bias[2 * width:3 * width] = 0
            layer.bias[5 * width:] = 0
    return layer


def test_transformer_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_adaln_zero_block, check_patchify, check_zero_modulation
    from cs231n_gen.exercises import ExerciseFailed
    from cs231n_gen.nn import patchify

    x = torch.randn(2, 3, 8, 4)
    assert torch.equal(patchify(x, 2), _patchify(x, 2))  # the library's layout is the one the check asks for
    with pytest.raises(ExerciseFailed, match="own solution .cs231n_gen.nn.dit.patchify"):
        check_patchify(patchify)  # ...and handing it in is refused: it is the exercise's reference
    check_patchify(lambda x, p: _patchify(x, p))
    check_adaln_zero_block(_adaln_zero_block)
    check_zero_modulation(_zero_modulation)
    assert "patchify is correct" in capsys.readouterr().out
    patch_mistakes = [
        (lambda x, p: _patchify(x, p, (0, 2, 4, 5, 3, 1)), "patches are transposed"),
        (lambda x, p: _patchify(x, p, (0, 4, 2, 3, 5, 1)), "column order"),
        (lambda x, p: _patchify(x, p, (0, 2, 4, 1, 3, 5)), "(channel, row, column)"),
        (lambda x, p: x.reshape(x.shape[0], (x.shape[2] // p) * (x.shape[3] // p), -1), "plain reshape"),
        (lambda x, p: _patchify(x, p)[:, :-1], "must have shape"),
    ]
    for fn, hint in patch_mistakes:
        with pytest.raises(ExerciseFailed, match=hint):
            check_patchify(fn)
    block_mistakes = [
        (dict(one_plus=False), "1 \\+ scale"),
        (dict(gates=False), "gates are missing"),
        (dict(silu=False), "SiLU"),
        (dict(swap=True), "shift and scale are swapped"),
        (dict(half=True), "only the attention half"),
    ]
    for kwargs, hint in block_mistakes:
        with pytest.raises(ExerciseFailed, match=hint):
            check_adaln_zero_block(lambda *a, kwargs=kwargs: _adaln_zero_block(*a, **kwargs))
    init_mistakes = [
        (lambda w: torch.nn.Linear(w, 6 * w), "gates do not start at zero"),
        (lambda w: _zero_modulation(w, bias=False), "gates do not start at zero"),
        (lambda w: _zero_modulation(w, weight=False, bias=False, gates_only=True), "shifts and scales do not"),
        (lambda w: torch.nn.Linear(w, 4 * w), "Linear\\("),
        (lambda w: torch.nn.Linear(w, 6 * w, bias=False), "keep the bias"),
    ]
    for fn, hint in init_mistakes:
        with pytest.raises(ExerciseFailed, match=hint):
            check_zero_modulation(fn)


# ---------------------------------------------------------------- seeds and structured results
def _clip_loss(image_emb, text_emb, temperature, *, transpose=False, scale=True, sides=2, norm=True):
    import torch.nn.functional as F

    u, v = (F.normalize(image_emb, dim=1), F.normalize(text_emb, dim=1)) if norm else (image_emb, text_emb)
    logits = u @ v.T / (temperature if scale else 1.0)
    logits = logits.T if transpose else logits
    target = torch.arange(len(logits))
    parts = [F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)][:sides]
    return logits, sum(parts) / len(parts)


def _masked_cross_attention(x, context, mask, wq, wk, wv, *, use_mask=True, invert=False, scale=True):
    q, k, v = x @ wq, context @ wk, context @ wv
    scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5 if scale else 1.0)
    if use_mask:
        scores = scores.masked_fill((mask if invert else ~mask)[:, None, :], float("-inf"))
    return scores.softmax(-1) @ v


def test_text_to_image_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_clip_loss, check_masked_cross_attention

    check_clip_loss(_clip_loss)
    check_masked_cross_attention(_masked_cross_attention)
    assert capsys.readouterr().out.count("correct") == 2
    clip_mistakes = [
        (lambda i, t, tau: _clip_loss(i, t, tau, transpose=True), "transposed"),
        (lambda i, t, tau: _clip_loss(i, t, tau, scale=False), "temperature is missing"),
        (lambda i, t, tau: _clip_loss(i, t, tau, norm=False), "not normalised"),
        (lambda i, t, tau: _clip_loss(i, t, tau, sides=1), "one direction"),
        (lambda i, t, tau: (_clip_loss(i, t, tau)[0], 2 * _clip_loss(i, t, tau)[1]), "summed"),
        (lambda i, t, tau: _clip_loss(i, t, tau)[1], "tuple"),
    ]
    for fn, hint in clip_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_clip_loss(fn)
    attention_mistakes = [
        (lambda *a: _masked_cross_attention(*a, use_mask=False), "padding is attended"),
        (lambda *a: _masked_cross_attention(*a, invert=True), "inverted"),
        (lambda *a: _masked_cross_attention(*a, scale=False), "not scaled"),
        (lambda x, c, m, wq, wk, wv: _masked_cross_attention(x, c, m, wq, wk, wv)[:, :1], "shape"),
    ]
    for fn, hint in attention_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_masked_cross_attention(fn)


def _reflow_pairs(model, z, steps, *, swap=False, fresh=False, sign=1.0, grid_up=False):
    x = z
    for k in range(steps):
        t, t_next = (k / steps, (k + 1) / steps) if grid_up else (1 - k / steps, 1 - (k + 1) / steps)
        x = x - sign * (t - t_next) * model(x, torch.full((x.shape[0],), t))
    noise = torch.randn(z.shape) if fresh else z
    return (noise, x) if swap else (x, noise)


def _linspace_sampler(model, z, steps):
    x = z
    for t in torch.linspace(1, 0, steps):
        x = x - model(x, torch.full((x.shape[0],), float(t))) / steps
    return x


def _two_step_target(teacher, x_t, t, dt, *, mid="half", out="velocity", divide=None):
    h = dt / 2
    x_mid = x_t - h * teacher(x_t, t)
    t_mid = {"half": t - h, "full": t - dt, "start": t}[mid]
    x_end = x_mid - h * teacher(x_mid, t_mid)
    if out == "landing":
        return x_end
    return (x_t - x_end) / (divide or dt)


def test_distillation_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_reflow_pairs, check_two_step_target

    check_reflow_pairs(_reflow_pairs)
    check_two_step_target(_two_step_target)
    assert capsys.readouterr().out.count("correct") == 2
    reflow_mistakes = [
        (lambda m, z, n: _reflow_pairs(m, z, n, fresh=True), "ITS OWN z"),
        (lambda m, z, n: _reflow_pairs(m, z, n, swap=True), "wrong way round"),
        (lambda m, z, n: _reflow_pairs(m, z, n, sign=-1.0), "wrong sign"),
        (lambda m, z, n: _reflow_pairs(m, z, n, grid_up=True), "time runs the wrong way"),
        (lambda m, z, n: _reflow_pairs(m, z, n)[0], "must return a pair"),
        (lambda m, z, n: (_linspace_sampler(m, z, n), z), "off by one"),
    ]
    for fn, hint in reflow_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_reflow_pairs(fn)
    target_mistakes = [
        (lambda *a: _two_step_target(*a, mid="full"), "evaluated at t - dt"),
        (lambda *a: _two_step_target(*a, mid="start"), "evaluated at the starting time"),
        (lambda m, x, t, dt: m(x, t), "velocity at x_t alone"),
        (lambda *a: _two_step_target(*a, out="landing"), "where the two teacher steps land"),
        (lambda *a: -_two_step_target(*a), "sign is flipped"),
        (lambda m, x, t, dt: _two_step_target(m, x, t, dt, divide=dt / 2), "whole step dt"),
    ]
    for fn, hint in target_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_two_step_target(fn)


def _quantize(z, codebook, beta, *, straight=True, weight_on="commit", stop=True, nearest="distance"):
    if nearest == "distance":
        codes = torch.cdist(z, codebook).argmin(1)
    else:
        codes = (z @ codebook.T).argmax(1)
    e = codebook[codes]
    z_q = z + (e - z).detach() if straight else e
    sg = (lambda v: v.detach()) if stop else (lambda v: v)
    codebook_term, commit_term = (sg(z) - e).square().mean(), (z - sg(e)).square().mean()
    if weight_on == "commit":
        loss = codebook_term + beta * commit_term
    else:
        loss = beta * codebook_term + commit_term
    return z_q, codes, loss


def _sample_next(logits, temperature, top_k, generator, *, extra=0, multiply=False, cut=True):
    if top_k is not None and cut:
        kth = logits.topk(top_k + extra, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    scaled = logits * temperature if multiply else logits / temperature
    return torch.multinomial(torch.softmax(scaled, 1), 1, generator=generator).squeeze(1)


def test_autoregressive_exercises_pass_and_name_mistakes(capsys):
    from cs231n_gen.exercises import check_sample_next, check_straight_through

    check_straight_through(_quantize)
    check_sample_next(_sample_next)
    assert capsys.readouterr().out.count("correct") == 2
    quantize_mistakes = [
        (lambda z, c, b: _quantize(z, c, b, straight=False), "no gradient flows"),
        (lambda z, c, b: _quantize(z, c, b, weight_on="codebook"), "beta weighs the codebook term"),
        (lambda z, c, b: _quantize(z, c, b, stop=False), "no stop-gradients"),
        (lambda z, c, b: _quantize(z, c, b, nearest="dot"), "dot product"),
        (lambda z, c, b: _quantize(z, c, b)[:2], "three tensors"),
    ]
    for fn, hint in quantize_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_straight_through(fn)
    sample_mistakes = [
        (lambda *a: _sample_next(*a, extra=1), "k \\+ 1 tokens"),
        (lambda *a: _sample_next(*a, multiply=True), "multiplied by the temperature"),
        (lambda *a: _sample_next(*a, cut=False), "outside the k largest"),
        (lambda lg, t, k, g: _sample_next(lg, t, k, None), "identically seeded"),
        (lambda lg, t, k, g: lg.argmax(1), "temperature"),
    ]
    for fn, hint in sample_mistakes:
        with pytest.raises(AssertionError, match=hint):
            check_sample_next(fn)


def _solutions():
    import torch.nn.functional as F

    from cs231n_gen import exercises as ex

    def rf_loss(model, x, z, t):
        tt = t[:, None]
        return (model((1 - tt) * x + tt * z, t) - (z - x)).square().sum(1).mean()

    def euler(model, z, n):
        x = z
        for i in range(n):
            x = x - model(x, torch.full((x.shape[0],), 1 - i / n)) / n
        return x

    def guided(model, x, t, y, w, null):
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)]))
        return (1 + w) * both[: len(x)] - w * both[len(x):]

    def cfg_loss(model, x, y, z, t, u, p, null):
        y = torch.where(u < p, torch.full_like(y, null), y)
        tt = t[:, None]
        return (model((1 - tt) * x + tt * z, t, y) - (z - x)).square().sum(1).mean()

    def ddpm(x_t, x_hat, a_t, b_t, a_s, b_s, noise):
        a_ts = a_t / a_s
        b_ts2 = b_t**2 - a_ts**2 * b_s**2
        return (a_s * b_ts2 / b_t**2 * x_hat + a_ts * b_s**2 / b_t**2 * x_t
                + (b_ts2 * b_s**2 / b_t**2).sqrt() * noise)

    return {
        ex.check_nonsaturating_loss: lambda logits: F.softplus(-logits).mean(),
        ex.check_optimal_discriminator: lambda p, q: p / (p + q),
        ex.check_rf_loss: rf_loss,
        ex.check_euler_sampler: euler,
        ex.check_cfg_velocity: guided,
        ex.check_cfg_loss: cfg_loss,
        ex.check_logit_normal_sampler: lambda n, m, s, g: torch.sigmoid(m + s * torch.randn(n, generator=g)),
        ex.check_shift: lambda t, k: k * t / (1 + (k - 1) * t),
        ex.check_eps_conversions: lambda eps, x_t, a, b, da, db: ((x_t - b * eps) / a,
                                                                  da * (x_t - b * eps) / a + db * eps),
        ex.check_ddpm_step: ddpm,
        ex.check_kl_divergence: _kl,
        ex.check_latent_rf_loss: _latent_loss,
        ex.check_patchify: _patchify,
        ex.check_adaln_zero_block: _adaln_zero_block,
        ex.check_zero_modulation: _zero_modulation,
        ex.check_clip_loss: _clip_loss,
        ex.check_masked_cross_attention: _masked_cross_attention,
        ex.check_reflow_pairs: _reflow_pairs,
        ex.check_two_step_target: _two_step_target,
        ex.check_straight_through: _quantize,
        ex.check_sample_next: _sample_next,
    }


def test_every_check_has_a_solution_here():
    from cs231n_gen.exercises import CHECKS

    assert set(_solutions()) == set(CHECKS.values())


@pytest.mark.parametrize("seed", [None, 1, 123456789])
def test_solutions_pass_for_any_seed(seed):
    for check, solution in _solutions().items():
        result = check(solution, seed=seed, raise_on_fail=False)
        assert result.passed and result.exercise == check.exercise, (check.__name__, result)


def test_a_memorised_answer_fails_with_another_seed():
    """Record every output of the solution on the default probes and replay them: that may pass at the
    default seed (unless the check also watches calls or gradients), never at another."""
    fooled_at_default = 0
    for check, solution in _solutions().items():
        tape = []

        def record(*args, solution=solution):
            out = solution(*args)
            tape.append(out.detach().clone() if isinstance(out, torch.Tensor) else copy.deepcopy(out)
                        if isinstance(out, torch.nn.Module) else tuple(o.detach().clone() for o in out))
            return out

        assert check(record, raise_on_fail=False).passed
        replay = iter(list(tape))

        def memorised(*args):
            return next(replay)

        fooled_at_default += check(memorised, raise_on_fail=False).passed
        replay = iter(list(tape))
        result = check(memorised, seed=7, raise_on_fail=False)
        assert not result.passed, f"{check.__name__} passes a memorised answer under a new seed"
    assert fooled_at_default >= 6  # so the replay is faithful, and the seed is what catches it


def test_results_are_structured(capsys):
    from cs231n_gen.exercises import CheckResult, ExerciseFailed, check_shift

    ok = check_shift(lambda t, k: k * t / (1 + (k - 1) * t))
    assert ok == CheckResult("shift", True, ok.message) and "correct" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed) as info:
        check_shift(lambda t, k: t)
    assert info.value.result.exercise == "shift" and not info.value.result.passed
    quiet = check_shift(lambda t, k: t, raise_on_fail=False)
    assert quiet == info.value.result and capsys.readouterr().out == ""
    assert check_shift(lambda t, k: 1 / 0, raise_on_fail=False).message.startswith("shift raised ZeroDivisionError")
    not_written = check_shift(lambda t, k: (_ for _ in ()).throw(NotImplementedError()), raise_on_fail=False)
    assert "not written yet" in not_written.message
    for bad in ({"seed": -1}, {"seed": 2.5}, {"raise_on_fail": 1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            check_shift(lambda t, k: t, **bad)


def test_a_function_that_changes_its_probes_in_place_cannot_make_the_reference_agree():
    from cs231n_gen.exercises import check_adaln_zero_block, check_masked_cross_attention

    def zero_the_block(x, c, modulation, attn, mlp):  # with zero gates the block is the identity
        with torch.no_grad():
            modulation.weight.zero_()
            modulation.bias.zero_()
        return x

    def zero_the_weights(x, context, mask, wq, wk, wv):
        for w in (wq, wk, wv):
            w.zero_()
        return torch.zeros(x.shape[0], x.shape[1], wv.shape[1])

    assert not check_adaln_zero_block(zero_the_block, raise_on_fail=False).passed
    assert not check_masked_cross_attention(zero_the_weights, raise_on_fail=False).passed
