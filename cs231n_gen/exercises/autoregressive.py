"""Lecture 10 (autoregressive models over VQ latents): the straight-through quantiser, one sampling step."""
from __future__ import annotations

import torch

from ._harness import call_student, close, exercise, fail


@exercise("straight_through", references=('cs231n_gen.nn.vq.VectorQuantizer.forward',))
def check_straight_through(student_fn, probe):
    """Check ``quantize(z, codebook, beta) -> (z_q, codes, loss)`` on (N, D) vectors and a (K, D) codebook."""
    g = probe.generator()
    n, d, k = 48, 4, 8
    beta = probe.uniform(0.1, 0.5)
    z = torch.randn(n, d, generator=g).requires_grad_()
    codebook = (torch.randn(k, d, generator=g) * 0.8).requires_grad_()
    got = call_student("quantize", student_fn, z, codebook, beta)
    if not (isinstance(got, (tuple, list)) and len(got) == 3 and all(isinstance(v, torch.Tensor) for v in got)):
        fail(f"quantize must return three tensors (z_q, codes, loss), got {got!r:.120}")
    z_q, codes, loss = got
    if z_q.shape != z.shape or codes.shape != (n,) or loss.numel() != 1:
        fail(f"shapes: z_q must be {tuple(z.shape)} (got {tuple(z_q.shape)}), codes ({n},) (got "
             f"{tuple(codes.shape)}), loss a scalar (got {tuple(loss.shape)})")
    # 1. The nearest code, and its value.
    want_codes = torch.cdist(z.detach(), codebook.detach()).argmin(1)
    if codes.is_floating_point() or not torch.equal(codes.long(), want_codes):
        if not codes.is_floating_point() and torch.equal(codes.long(),
                                                         torch.cdist(z.detach(), codebook.detach()).argmax(1)):
            fail("codes picks the farthest code (argmax of the distance): take the argmin.")
        if not codes.is_floating_point() and torch.equal(codes.long(), (z.detach() @ codebook.detach().T).argmax(1)):
            fail("codes picks the code with the largest dot product, which is not the nearest unless every code "
                 "has the same length: use the squared distance ||z - e_j||^2.")
        fail("codes is not the index of the nearest code (smallest squared distance ||z - e_j||^2) for every row.")
    e = codebook.detach()[want_codes]
    if not close(z_q.detach(), e, 1e-5):
        fail("z_q's value must be the nearest code e_k itself (the straight-through trick changes the gradient, "
             "not the value).")
    # 2. Straight-through: the gradient reaching z through z_q is the identity, and none reaches the codebook.
    upstream = torch.randn(n, d, generator=g)
    grad_z, grad_codebook = torch.autograd.grad(z_q, (z, codebook), upstream, retain_graph=True, allow_unused=True)
    if grad_z is None or not close(grad_z, upstream, 1e-5):
        fail("no gradient flows from z_q back to z: z_q = codebook[codes] has none (argmin cuts the graph). The "
             "straight-through estimator is a stop-gradient: z_q = z + (e - z).detach(), whose value is e and "
             "whose gradient with respect to z is the identity.")
    if grad_codebook is not None and float(grad_codebook.abs().max()) > 0:
        fail("z_q also sends the decoder's gradient into the codebook: with z_q = z + (e - z).detach() only the "
             "encoder gets it; the codebook learns from its own loss term.")
    # 3. The two loss terms, each with its stop-gradient, and beta on the commitment term.
    grad_z, grad_codebook = torch.autograd.grad(loss, (z, codebook), allow_unused=True)
    zero = torch.zeros(1)
    grad_z = zero if grad_z is None else grad_z
    grad_codebook = zero if grad_codebook is None else grad_codebook
    pull = 2 * (z.detach() - e) / (n * d)  # the gradient of mean((z - e)^2) with respect to z
    on_codes = lambda per_row: torch.zeros(k, d).index_add_(0, want_codes, per_row)  # noqa: E731
    want_z, want_codebook = beta * pull, on_codes(-pull)
    if close(grad_z, want_z, 1e-5) and close(grad_codebook, want_codebook, 1e-5):
        return "quantize is correct: nearest codes, straight-through gradient, and beta on the commitment term."
    hints = [
        (pull, on_codes(-beta * pull), "beta weighs the codebook term: it belongs on the commitment term "
                                       "||z - sg[e]||^2, the one that trains the encoder."),
        ((1 + beta) * pull, on_codes(-(1 + beta) * pull),
         "the loss terms have no stop-gradients: write mean((z.detach() - e)^2) + beta * mean((z - e.detach())^2)."),
        (zero, want_codebook, "the commitment term beta * mean((z - sg[e])^2) is missing: nothing keeps the encoder "
                              "near its codes."),
        (want_z, zero, "the codebook term mean((sg[z] - e)^2) is missing: the codes never move."),
        (-want_z, -want_codebook, "the loss has the wrong sign: it is a squared distance to minimise."),
        (n * want_z, n * want_codebook, "the losses are summed over rows: use the mean over all entries."),
        (d * want_z, d * want_codebook, "the losses are averaged per row but summed over dimensions: use the mean "
                                        "over all entries (like F.mse_loss)."),
    ]
    for hint_z, hint_codebook, hint in hints:
        if close(grad_z, hint_z, 1e-5) and close(grad_codebook, hint_codebook, 1e-5):
            fail(hint)
    fail("the loss's gradients do not match mean((sg[z] - e)^2) + beta * mean((z - sg[e])^2).")


def _frequencies(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=vocab).double() / tokens.numel()


@exercise("sample_next", references=('cs231n_gen.autoregressive.sample_next',))
def check_sample_next(student_fn, probe):
    """Check ``sample_next(logits, temperature, top_k, generator) -> tokens`` on rows of identical logits."""
    vocab, rows = 10, 8000
    row = torch.randn(vocab, generator=probe.generator()) * 1.2
    logits = row.expand(rows, vocab).clone()
    for temperature, top_k in ((1.0, None), (0.5, 3), (2.0, 5), (1.0, 1)):
        draws = []
        for _ in range(2):
            got = call_student("sample_next", student_fn, logits.clone(), temperature, top_k,
                               torch.Generator().manual_seed(probe.seed + 17))
            if not isinstance(got, torch.Tensor) or got.shape != (rows,) or got.is_floating_point():
                fail(f"sample_next must return one integer token per row, shaped ({rows},), got {got!r:.100}")
            draws.append(got.long())
        if not torch.equal(draws[0], draws[1]):
            fail("two calls with identically seeded generators drew different tokens: draw with "
                 "torch.multinomial(..., generator=generator).")
        tokens = draws[0]
        if bool(((tokens < 0) | (tokens >= vocab)).any()):
            fail(f"tokens must be ids in 0..{vocab - 1}")
        order = row.argsort(descending=True)
        setting = f"with temperature = {temperature}, top_k = {top_k}"
        if top_k is not None:
            outside = set(tokens.unique().tolist()) - set(order[:top_k].tolist())
            if outside == {int(order[top_k])}:
                fail(f"{setting}: k + 1 tokens can be drawn (the (k+1)-th largest logit survives: an off-by-one in "
                     f"the cut, such as keeping logits >= the (k+1)-th largest value). Keep exactly the k largest.")
            if outside:
                fail(f"{setting}: tokens outside the k largest logits were drawn: set every other logit to -inf "
                     f"before the softmax.")
        kept = row.clone()
        if top_k is not None:
            kept[order[top_k:]] = float("-inf")
        freq = _frequencies(tokens, vocab)
        if close(freq, torch.softmax(kept / temperature, 0), 0.025):
            continue
        if close(freq, torch.softmax(kept * temperature, 0), 0.025):
            fail(f"{setting}: the logits are multiplied by the temperature: divide them (tau < 1 sharpens).")
        if close(freq, torch.softmax(kept, 0), 0.025):
            fail(f"{setting}: the temperature is ignored: draw from softmax(logits / temperature).")
        if top_k is not None and close(freq, torch.softmax(row / temperature, 0), 0.025):
            fail(f"{setting}: top-k is ignored.")
        fail(f"{setting}: the frequencies of the drawn tokens do not match softmax(top-k logits / temperature) "
             f"(largest gap {float((freq - torch.softmax(kept / temperature, 0)).abs().max()):.3f}).")
    return "sample_next is correct: exactly k tokens survive the cut, and the temperature divides the logits."
