"""Lecture 03 (classifier-free guidance): the guided velocity and label dropout."""
from __future__ import annotations

import torch

from ._harness import call_student, close, exercise, fail, name_the_mistake


class _ProbeConditional(torch.nn.Module):
    """A fixed field v(x, t, y) with labels 0..2 and null label 3; records each call's batch size."""

    null_label = 3

    def __init__(self, generator: torch.Generator):
        super().__init__()
        state = generator.get_state()  # every instance from one generator state is the same field
        self.A = torch.randn(2, 2, generator=generator) * 0.5
        self.emb = torch.randn(4, 2, generator=generator)
        generator.set_state(state)
        self.calls: list[int] = []

    def forward(self, x, t, y):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        self.calls.append(int(x.shape[0]))
        return x @ self.A.T + torch.cos(2 * t)[:, None] * self.emb[y] + t[:, None]


@exercise("guided_velocity", references=('cs231n_gen.guidance.cfg_velocity',
                                  'cs231n_gen.guidance._combine',
                                  'cs231n_gen.guidance.Guided.forward'))
def check_cfg_velocity(student_fn, probe):
    """Check ``guided_velocity(model, x, t, y, w, null_label)``: (1 + w) v_y - w v_null, one batched call."""
    g = probe.generator()
    x = torch.randn(16, 2, generator=g)
    t = torch.rand(16, generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    field = probe.generator(1)
    for w in (2.0, 0.5, 0.0):
        model = _ProbeConditional(field)
        got = call_student("guided_velocity", student_fn, model, x.clone(), t.clone(), y.clone(), w, 3)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            fail(f"guided_velocity must return a tensor of shape {tuple(x.shape)}, got {got!r}")
        with torch.no_grad():
            reference = _ProbeConditional(field)  # the same field; keeps model.calls the student's alone
            v_y, v_null = reference(x, t, y), reference(x, t, torch.full_like(y, 3))
        got = got.detach()
        want = (1 + w) * v_y - w * v_null
        if not close(got, want, 1e-4):
            hints = [
                ((1 + w) * v_null - w * v_y, "the two predictions are swapped: weight (1 + w) goes to the "
                                             "conditional v_y and -w to the unconditional v_null."),
                (w * v_y + (1 - w) * v_null, "that is the other convention, v_null + w (v_y - v_null), in which "
                                             "w = 1 means no guidance. The lecture's w is one less: use "
                                             "(1 + w) v_y - w v_null, so w = 0 is the plain conditional model."),
                ((1 + w) * v_y + w * v_null, "the unconditional prediction must be subtracted: -w v_null."),
                (v_y + w * v_null, "guidance extrapolates from v_null through v_y: (1 + w) v_y - w v_null."),
            ]
            name_the_mistake(got, hints, 1e-4, prefix=f"with w = {w}: ")
            fail(f"with w = {w} guided_velocity does not match (1 + w) v_y - w v_null "
                 f"(largest difference {float((got - want).abs().max()):.4g}).")
        if w > 0 and model.calls != [2 * x.shape[0]]:
            fail(f"the values are right, but the model was called with batches of {model.calls} rows. "
                 f"Evaluate both predictions in ONE call of {2 * x.shape[0]} rows: stack x with itself "
                 "(torch.cat) and the labels y with a batch of null labels, then split the output in two.")
    return "guided_velocity is correct: (1 + w) v_y - w v_null from one batched forward pass."


@exercise("cfg_loss", references=('cs231n_gen.guidance.conditional_rf_loss',))
def check_cfg_loss(student_fn, probe):
    """Check ``cfg_loss(model, x, y, z, t, u, p_uncond, null_label)``: the RF loss with labels dropped where u < p."""
    g = probe.generator()
    n = 64
    x = torch.randn(n, 2, generator=g) * 2
    y = torch.randint(0, 3, (n,), generator=g)
    z = torch.randn(n, 2, generator=g)
    t = torch.rand(n, generator=g)
    u = torch.rand(n, generator=g)
    field = probe.generator(1)

    def loss(labels):
        model = _ProbeConditional(field)
        tt = t[:, None]
        return (model((1 - tt) * x + tt * z, t, labels) - (z - x)).square().sum(1).mean()

    def student(labels, coins, p):
        got = call_student("cfg_loss", student_fn, _ProbeConditional(field), x.clone(), labels, z.clone(), t.clone(),
                           coins, p, 3)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            fail(f"cfg_loss must return a scalar tensor, got {got!r}")
        return got.detach().reshape(())

    null = torch.full_like(y, 3)
    for p in (0.5, 0.2, 0.0, 1.0):
        y_in = y.clone()
        got = student(y_in, u.clone(), p)
        if not torch.equal(y_in, y):
            fail("cfg_loss changed the labels it was given (in place): the caller's y must stay intact. "
                 "Build the dropped labels with torch.where(...) instead of assigning into y.")
        want = loss(torch.where(u < p, null, y))
        if close(got, want, 1e-5):
            continue
        hints = [
            (loss(torch.where(u >= p, null, y)), "labels are dropped where u >= p_uncond, i.e. with probability "
                                                 "1 - p_uncond. Drop them where u < p_uncond."),
            (loss(y), "no label was dropped: replace y by null_label where u < p_uncond."),
            (loss(null), "every label was dropped: only those with u < p_uncond become null_label."),
            (loss(torch.where(u < p, torch.zeros_like(y), y)), "dropped labels became 0, which is a real class: "
                                                               "use null_label, the extra label the model keeps "
                                                               "for 'no condition'."),
        ]
        all_or_none = close(got, loss(y), 1e-5) or close(got, loss(null), 1e-5)
        if all_or_none and 0 < p < 1:  # one coin for the whole batch? flip the first coin and see
            u_flip = u.clone()
            u_flip[0] = p / 2 if float(u[0]) >= p else (1 + p) / 2
            if not close(student(y.clone(), u_flip, p), got, 1e-5):
                fail(f"with p_uncond = {p}: one coin decides for the whole batch (changing u[0] alone dropped "
                     "or kept every label): each example needs its own coin, drop label i where u[i] < p_uncond.")
        name_the_mistake(got, hints, 1e-5, prefix=f"with p_uncond = {p}: ")
        fail(f"with p_uncond = {p}: expected {float(want):.5f}, got {float(got):.5f}. Check x_t = (1 - t) x + t z, "
             "the target z - x, and the reduction (sum over coordinates, mean over the batch).")
    return "cfg_loss is correct: labels dropped exactly where u < p_uncond, for p_uncond = 0, 0.2, 0.5 and 1."
