"""Lecture 07 (text-to-image and video): the contrastive loss, and cross-attention with a padding mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._harness import call_student, close, exercise, fail, name_the_mistake


def _logits(image_emb, text_emb, temperature, *, normalise=True, scale=True):
    if normalise:
        image_emb, text_emb = F.normalize(image_emb, dim=1), F.normalize(text_emb, dim=1)
    logits = image_emb @ text_emb.T
    return logits / temperature if scale else logits


def _loss(logits, sides=(True, True)):
    target = torch.arange(logits.shape[0])
    parts = [F.cross_entropy(m, target) for m, keep in zip((logits, logits.T), sides) if keep]
    return sum(parts) / len(parts)


@exercise("clip_loss", references=('cs231n_gen.contrastive.clip_loss',))
def check_clip_loss(student_fn, probe):
    """Check ``clip_loss(image_emb, text_emb, temperature) -> (logits, loss)``: the (images x texts)
    logits of normalised embeddings over the temperature, and CLIP's symmetric cross-entropy."""
    g = probe.generator()
    b, d = 5, 7
    image_emb = torch.randn(b, d, generator=g) * 3
    text_emb = image_emb + torch.randn(b, d, generator=g) * 2  # pairs related, so both directions differ
    text_emb = text_emb * torch.rand(b, 1, generator=g).add(0.5)  # lengths differ: normalising matters
    temperature = probe.uniform(0.05, 0.2)
    got = call_student("clip_loss", student_fn, image_emb.clone(), text_emb.clone(), temperature)
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(v, torch.Tensor) for v in got)):
        fail(f"clip_loss must return a tuple (logits, loss) of two tensors, got {type(got).__name__}")
    logits, loss = (v.detach() for v in got)
    want = _logits(image_emb, text_emb, temperature)
    if logits.shape != (b, b):
        fail(f"logits must be ({b}, {b}) for a batch of {b} pairs (rows: images, columns: texts), got "
             f"{tuple(logits.shape)}")
    if not close(logits, want, 1e-4):
        hints = [
            (want.T, "the logits are transposed: entry [i, j] compares image i with text j, so rows are images "
                     "(image_emb @ text_emb.T)."),
            (_logits(image_emb, text_emb, temperature, scale=False), "the temperature is missing: divide the cosine "
                                                                    "similarities by it (a small temperature "
                                                                    "sharpens the softmax)."),
            (_logits(image_emb, text_emb, temperature) * temperature ** 2, "the similarities are multiplied by the "
                                                                           "temperature; divide by it."),
            (_logits(image_emb, text_emb, temperature, normalise=False), "the embeddings are not normalised: CLIP "
                                                                        "compares directions, so scale each row to "
                                                                        "unit length first (cosine similarity)."),
        ]
        name_the_mistake(logits, hints, 1e-4)
        fail(f"logits do not match cos(image_i, text_j) / temperature (largest difference "
             f"{float((logits - want).abs().max()):.3g}).")
    if loss.numel() != 1:
        fail(f"loss must be a single number (the mean over the batch), got shape {tuple(loss.shape)}")
    if close(loss, _loss(want), 1e-4):
        return ("clip_loss is correct: cosine similarities over the temperature, and the cross-entropy towards the "
                "diagonal in both directions, averaged.")
    if close(loss, _loss(want, (True, False)), 1e-4) or close(loss, _loss(want, (False, True)), 1e-4):
        fail("only one direction is there: CLIP averages the image-to-text loss (rows) and the text-to-image "
             "loss (columns, i.e. the transposed logits).")
    if close(loss, 2 * _loss(want), 1e-4):
        fail("the two directions are summed; CLIP averages them (divide by 2).")
    fail(f"the loss does not match (CE(logits, diag) + CE(logits.T, diag)) / 2 = {float(_loss(want)):.4f}, "
         f"got {float(loss):.4f}.")


def _cross(x, context, mask, wq, wk, wv, *, use_mask=True, invert=False, scale=True, axis=-1):
    q, k, v = x @ wq, context @ wk, context @ wv
    scores = q @ k.transpose(-1, -2)
    if scale:
        scores = scores / q.shape[-1] ** 0.5
    if use_mask:
        keep = ~mask if invert else mask
        scores = scores.masked_fill(~keep[:, None, :], float("-inf"))
    return scores.softmax(axis) @ v


@exercise("masked_cross_attention",
          references=('cs231n_gen.nn.layers.attend', 'cs231n_gen.nn.layers.attention_weights'))
def check_masked_cross_attention(student_fn, probe):
    """Check ``masked_cross_attention(x, context, mask, wq, wk, wv)``: one head of cross-attention
    from tokens x (B, N, D) to context (B, L, E), padded context tokens (mask False) never attended."""
    g = probe.generator()
    b, n, length, d, e, h = 3, 4, 5, 6, 7, 8
    x = torch.randn(b, n, d, generator=g)
    context = torch.randn(b, length, e, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, 3:], mask[1, 4:], mask[2, 1:] = False, False, False  # padded captions (one keeps a single token)
    context[~mask] = torch.randn(int((~mask).sum()), e, generator=g) * 4  # padding that would matter if read
    wq, wk, wv = (torch.randn(a, h, generator=g) / a ** 0.5 for a in (d, e, e))
    got = call_student("masked_cross_attention", student_fn, x.clone(), context.clone(), mask.clone(), wq.clone(),
                       wk.clone(), wv.clone())
    want = _cross(x, context, mask, wq, wk, wv)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        fail(f"masked_cross_attention must return one output per token of x, shape {tuple(want.shape)} (B, N, "
             f"value size), got {tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    got = got.detach()
    if close(got, want, 1e-4):
        return ("masked_cross_attention is correct: queries from the tokens, keys and values from the context, "
                "scores over sqrt(d), padded tokens set to -inf before the softmax over the context.")
    hints = [
        (_cross(x, context, mask, wq, wk, wv, use_mask=False), "the padding is attended to: set the scores of "
                                                              "tokens whose mask is False to -inf before the "
                                                              "softmax (scores.masked_fill(~mask[:, None, :], "
                                                              "float('-inf')))."),
        (_cross(x, context, mask, wq, wk, wv, invert=True), "the mask is inverted: True marks a real token to keep, "
                                                           "False a pad to hide."),
        (_cross(x, context, mask, wq, wk, wv, scale=False), "the scores are not scaled: divide q k^T by the square "
                                                           "root of the query size."),
        (_cross(x, context, mask, wq, wk, wv, axis=-2), "the softmax runs over the wrong axis: each query's "
                                                       "weights over the context tokens (the last axis) sum to 1."),
    ]
    name_the_mistake(got, hints, 1e-4)
    fail(f"masked_cross_attention does not match softmax(mask(q k^T / sqrt(d))) v (largest difference "
         f"{float((got - want).abs().max()):.3g}).")
