r"""Sample-quality metrics for point clouds, and the excess loss over the oracle.

- :func:`wasserstein2`: exact W2 between two empirical distributions (optimal
  transport via POT's network simplex). Finite samples put a floor under it, so
  lectures report :func:`wasserstein2_ratio`: W2(samples, data) / W2(fresh data, data),
  which is about 1 for a perfect sampler. Its baseline W2(fresh, data) is remembered by
  the sets' contents, so scoring many samplers on the same sets solves it once.
- :func:`evaluation_sets`: the sets of the course's W2 protocol (ten sets of 1000
  points), including a "real" draw whose ratio is printed next to every model's.
- :func:`sliced_wasserstein`: the average 1D W2 over random projections; cheap.
- :func:`mmd`: squared maximum mean discrepancy with a sum of RBF kernels.
- :func:`excess_loss`: how far a velocity model is above the best possible loss.
- :func:`mode_coverage`: modes hit and the fraction of samples on a mode.
- :func:`class_conditional_scores`: class-conditional samples of a labelled mixture
  against the exact classifier and the true p(x | y) (accuracy, W2, spread).
- :func:`branch_errors`: both branches of a classifier-free-guidance model against the
  exact conditional and unconditional fields.
- :func:`path_straightness`: how far sampling paths bend away from their chords.
- :func:`interpolation_smoothness`: the steps of walks through a latent space, against
  the distance between their ends.
- :func:`nearest_neighbor_distances` and :func:`memorization`: how close samples come to
  the training set, against held-out real data.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from ._validate import (as_point_sets, as_time, check_callable, check_generator, check_int, check_items, check_labels,
                        check_points, check_points_sequence, check_real)
from .data.toy2d import check_labelled_mixture, check_mixture
from .fingerprint import fingerprint
from .runtime import device_of


def _pair(a, b, names=("a", "b")):
    a = check_points(names[0], a)
    b = check_points(names[1], b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    return a, b


def wasserstein2(a: torch.Tensor, b: torch.Tensor) -> float:
    r"""Exact W2 between the uniform empirical measures on ``a`` (n, d) and ``b`` (m, d).

    :math:`W_2 = \big(\min_\gamma \sum_{ij} \gamma_{ij} \|a_i - b_j\|^2\big)^{1/2}`,
    solved exactly (POT ``emd2``); cost O(n m) memory, about 0.5 s for 2000 x 2000.
    """
    import ot

    a, b = _pair(a, b)
    a_np = a.detach().to("cpu", torch.float64).numpy()
    b_np = b.detach().to("cpu", torch.float64).numpy()
    cost = ot.dist(a_np, b_np, metric="sqeuclidean")
    wa = np.full(len(a_np), 1.0 / len(a_np))
    wb = np.full(len(b_np), 1.0 / len(b_np))
    value = ot.emd2(wa, wb, cost, numItermax=10_000_000)
    return float(np.sqrt(max(float(value), 0.0)))


W2_SETS = 10       # the course's W2 protocol: ten independent sets ...
W2_POINTS = 1000   # ... of 1000 points each (fewer sets in quick mode)


def evaluation_sets(data, n_sets: int = W2_SETS, n_points: int = W2_POINTS,
                    generator: torch.Generator | None = None) -> dict:
    """Point sets for the course's W2 protocol, drawn once so every sampler is compared on the same ones.

    ``data`` is a distribution with ``.sample(n, generator=...)`` and ``.dim`` (a
    :class:`~cs231n_gen.data.GaussianMixture`). Returns ``n_sets`` sets of ``n_points``
    each, on the data's device: ``noise`` (standard normal starting points for the
    samplers), ``data`` (the reference draws), ``fresh`` (the baseline of
    :func:`wasserstein2_ratio`) and ``real`` (a third independent draw: its ratio is
    what real data scores, the row to print next to every model's ratio, since the
    ratio of a perfect sampler is 1 only on average).
    """
    if not (hasattr(data, "sample") and hasattr(data, "dim")):
        raise ValueError(f"data must be a distribution with .sample(n, generator=...) and .dim, "
                         f"got {type(data).__name__}")
    n_sets = check_int("n_sets", n_sets, minimum=1)
    n_points = check_int("n_points", n_points, minimum=2)
    device = device_of(data) if isinstance(data, torch.nn.Module) else getattr(data, "device", torch.device("cpu"))
    check_generator("generator", generator, device)
    out = {"noise": [torch.randn(n_points, data.dim, generator=generator, device=device) for _ in range(n_sets)]}
    for key in ("data", "fresh", "real"):
        out[key] = [data.sample(n_points, generator=generator) for _ in range(n_sets)]
    return out


def wasserstein2_ratio(samples, data, fresh) -> float:
    r"""W2(samples, data) / W2(fresh, data): about 1 means "as close as new real data".

    Finite samples put a floor under W2: two independent draws of 2000 points from
    the same 8-mode mixture are about 0.2 apart, mostly because the modes receive
    slightly different counts. That floor is itself noisy (a single ratio of a perfect
    sampler spreads by about +-30%), so each argument may be R point sets, given as an
    (R, n, d) tensor or a list, and the ratio is taken of the means over the R pairs:
    mean_r W2(samples_r, data_r) / mean_r W2(fresh_r, data_r). ``data`` may also be a
    single (n, d) set shared by all pairs.
    """
    s_sets = as_point_sets("samples", samples)
    f_sets = as_point_sets("fresh", fresh)
    d_sets = as_point_sets("data", data)
    if len(s_sets) != len(f_sets):
        raise ValueError(
            f"samples and fresh must hold the same number of sets, got {len(s_sets)} and {len(f_sets)}"
        )
    if len(d_sets) not in (1, len(s_sets)):
        raise ValueError(f"data must hold 1 or {len(s_sets)} sets, got {len(d_sets)}")
    if len(d_sets) == 1:
        d_sets = d_sets * len(s_sets)
    for s, f, d in zip(s_sets, f_sets, d_sets):
        _pair(s, d, ("samples", "data"))
        _pair(f, d, ("fresh", "data"))
    num = sum(wasserstein2(s, d) for s, d in zip(s_sets, d_sets))
    den = _baseline_w2(f_sets, d_sets)
    if den <= 0:
        raise ValueError("fresh and data are identical point sets: the W2 baseline is 0")
    return num / den


_BASELINES: OrderedDict = OrderedDict()  # sum_r W2(fresh_r, data_r), keyed by the sets' contents
_BASELINES_KEPT = 64


def _baseline_w2(f_sets, d_sets) -> float:
    """sum_r W2(fresh_r, data_r), solved once per content of the sets.

    A lecture scores every sampler against the same evaluation sets, and the baseline
    half of :func:`wasserstein2_ratio` is then the same each time; exact optimal
    transport is deterministic, so the remembered value is the one a new solve would
    give. The key is the sets' content fingerprint (values, dtypes and shapes), so a set
    changed in place is solved again.
    """
    key = fingerprint((list(f_sets), list(d_sets)))
    if key in _BASELINES:
        _BASELINES.move_to_end(key)
    else:
        _BASELINES[key] = sum(wasserstein2(f, d) for f, d in zip(f_sets, d_sets))
        while len(_BASELINES) > _BASELINES_KEPT:
            _BASELINES.popitem(last=False)
    return _BASELINES[key]


def sliced_wasserstein(
    a: torch.Tensor,
    b: torch.Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced W2: sqrt of the mean over random unit directions of the 1D squared W2.

    Unequal sample sizes are compared through 256 matched quantiles.
    """
    a, b = _pair(a, b)
    n_projections = check_int("n_projections", n_projections, minimum=1)
    check_generator("generator", generator, "cpu")
    a = a.detach().float().cpu()
    b = b.detach().float().cpu()
    dirs = torch.randn(a.shape[1], n_projections, generator=generator)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, pb = (a @ dirs).sort(0).values, (b @ dirs).sort(0).values
    if pa.shape[0] != pb.shape[0]:
        q = torch.linspace(0, 1, 256)
        pa, pb = torch.quantile(pa, q, dim=0), torch.quantile(pb, q, dim=0)
    return float((pa - pb).square().mean().sqrt())


def mmd(a: torch.Tensor, b: torch.Tensor, bandwidths=(0.1, 0.3, 1.0, 3.0)) -> float:
    r"""Squared MMD (biased V-statistic) with k(x, y) = sum_h exp(-|x - y|^2 / (2 h^2))."""
    a, b = _pair(a, b)
    if not isinstance(bandwidths, (list, tuple, torch.Tensor)):
        raise ValueError(f"bandwidths must be a list of positive numbers, got {bandwidths!r}")
    hs = [check_real("bandwidths", h, minimum=0.0, strict_min=True) for h in bandwidths]
    if not hs:
        raise ValueError("bandwidths must hold at least one value")
    a = a.detach().double().cpu()
    b = b.detach().double().cpu()

    def k(u, v):
        d2 = torch.cdist(u, v).square()
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    return float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())


@torch.no_grad()
def excess_loss(
    model,
    mixture,
    n: int = 16384,
    t=None,
    generator: torch.Generator | None = None,
    batch_size: int = 8192,
) -> dict:
    r"""How much a velocity model's training loss exceeds the oracle's.

    The loss splits exactly as
    E||f - (z - x)||^2 = E||f - v*||^2 + E tr Var(z - x | x_t), where v* is the oracle
    velocity. The second term is the irreducible loss; the first, the *excess*, is
    estimated here directly (low variance) over t ~ U[0, 1] (or the given t).

    Returns a dict with ``excess``, ``oracle`` (irreducible loss) and ``ratio``
    (excess / oracle).
    """
    from . import oracle as _oracle


    check_callable("model", model, "a velocity model called as model(x_t, t)")
    mixture = check_mixture("mixture", mixture)
    n = check_int("n", n, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    device = device_of(model)
    check_generator("generator", generator, device)
    mix = mixture.to(device)
    excess = torch.zeros((), device=device, dtype=torch.float64)
    irreducible = torch.zeros((), device=device, dtype=torch.float64)
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        x = mix.sample(m, generator=generator)
        z = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        if t is None:
            tt = torch.rand(m, generator=generator, device=device, dtype=x.dtype)
        else:
            tt = as_time("t", t, m, x)
        xt = (1 - tt)[:, None] * x + tt[:, None] * z
        f = model(xt, tt)
        excess += (f - _oracle.velocity(mix, xt, tt)).square().sum(1).double().sum()
        irreducible += _oracle.conditional_variance(mix, xt, tt).double().sum()
        done += m
    excess, irreducible = float(excess) / n, float(irreducible) / n
    return {"excess": excess, "oracle": irreducible, "ratio": excess / irreducible}


def mode_coverage(samples: torch.Tensor, means, std: float, radius: float = 3.0) -> dict:
    """The standard mode-coverage protocol for mixtures of narrow Gaussians.

    A mode is *covered* when at least one sample lies within ``radius`` standard
    deviations of its mean; a sample is *high quality* when it lies within ``radius``
    standard deviations of its nearest mode (the usual protocol draws 2500 samples).

    Returns a dict with ``covered`` (number of modes), ``n_modes``, ``high_quality``
    (fraction of samples), ``counts`` (high-quality samples per mode) and
    ``within_std`` (the root-mean-square offset per coordinate of the high-quality
    samples from their mode: about ``std`` for a faithful sampler, less for one that
    shrinks the modes, a bias W2 does not penalise).
    """
    samples = check_points("samples", samples)
    if not isinstance(means, torch.Tensor):
        try:
            means = torch.as_tensor(means, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"means must be a (K, d) tensor of mode centres, got {means!r}") from None
    means = check_points("means", means)
    if means.shape[1] != samples.shape[1]:
        raise ValueError(f"means and samples must have the same dimension, got {means.shape[1]} and "
                         f"{samples.shape[1]}")
    means = means.to(samples)
    std = check_real("std", std, minimum=0.0, strict_min=True)
    radius = check_real("radius", radius, minimum=0.0, strict_min=True)
    dist = torch.cdist(samples, means)  # (n, K)
    nearest_dist, nearest = dist.min(1)
    good = nearest_dist <= radius * std
    counts = torch.bincount(nearest[good], minlength=means.shape[0])
    offsets = (samples - means[nearest])[good]
    within = float(offsets.square().mean().sqrt()) if offsets.numel() else float("nan")
    return {
        "covered": int((counts > 0).sum()),
        "n_modes": means.shape[0],
        "high_quality": float(good.float().mean()),
        "counts": counts.cpu().tolist(),
        "within_std": within,
    }


def class_conditional_scores(labelled, samples: torch.Tensor, labels, generator: torch.Generator | None = None) -> dict:
    r"""How well samples asked to be of class y match p(x | y), for a labelled mixture.

    - ``accuracy``: the fraction the exact (Bayes) classifier assigns to the asked-for
      class, argmax_c p(c | x) = y. Real class samples score the Bayes accuracy, below
      1 when the classes overlap.
    - ``confidence``: the mean p(y | x) of the asked-for class.
    - ``w2``: the mean over classes of W2(samples of class y, a fresh draw of the same
      size from p(x | y)); ``w2_real`` the same for real class samples (the
      finite-sample floor) and ``w2_ratio`` their ratio (about 1 = "as close as real").
    - ``spread``: the mean over classes of tr Cov(samples of y) / tr Cov(p(x | y)), the
      diversity left (1 = as spread out as the class, < 1 = sharpened or collapsed).

    ``labels`` are the classes the samples were asked to be (an int or (n,) tensor);
    every class present needs at least 2 samples.
    """
    labelled = check_labelled_mixture(labelled)
    samples = check_points("samples", samples, labelled.dim).detach()
    n = samples.shape[0]
    labels = check_labels("labels", labels, n, labelled.n_classes, samples.device, rows_of="samples")
    check_generator("generator", generator, "cpu")
    post = labelled.to(samples.device).class_posterior(samples)
    accuracy = float((post.argmax(1) == labels).float().mean())
    confidence = float(post.gather(1, labels[:, None]).mean())
    w2, w2_real, spread = [], [], []
    for c in torch.unique(labels).tolist():
        rows = samples[labels == c].cpu()
        if rows.shape[0] < 2:
            raise ValueError(f"labels must give every class present at least 2 samples, class {c} has 1")
        cls = labelled.class_mixture(c).to("cpu")
        reference = cls.sample(rows.shape[0], generator=generator)
        fresh = cls.sample(rows.shape[0], generator=generator)
        w2.append(wasserstein2(rows, reference))
        w2_real.append(wasserstein2(fresh, reference))
        spread.append(float(rows.var(0).sum() / cls.total_variance))
    w2_mean, real_mean = float(np.mean(w2)), float(np.mean(w2_real))
    return {"accuracy": accuracy, "confidence": confidence, "w2": w2_mean, "w2_real": real_mean,
            "w2_ratio": w2_mean / real_mean, "spread": float(np.mean(spread))}


@torch.no_grad()
def branch_errors(model, labelled, n: int = 16384, generator: torch.Generator | None = None,
                  batch_size: int = 8192) -> dict:
    r"""Excess loss of both branches of a classifier-free-guidance model over the oracle.

    For (x, y) ~ p(x, y), z ~ N(0, I), t ~ U[0, 1]:

    - ``conditional``: E||f(x_t, t, y) - v*(x_t, t | y)||^2 (the class-conditional field),
    - ``unconditional``: E||f(x_t, t, null) - v*(x_t, t)||^2 (the field for p(x)),

    with ``model(x_t, t, y)`` and its ``null_label``. Training with label dropout p
    minimises p (unconditional excess) + (1 - p) (conditional excess) + a constant, so p
    decides how the network's capacity and updates are shared between the two.
    ``oracle_conditional`` and ``oracle_unconditional`` are the irreducible losses the
    exact fields pay, for scale.
    """
    from . import oracle as _oracle

    labelled = check_labelled_mixture(labelled)
    n = check_int("n", n, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    null_label = getattr(model, "null_label", None)
    if not isinstance(null_label, int) or isinstance(null_label, bool):
        raise ValueError(f"model must have an integer .null_label (a conditional model), got {null_label!r}")
    device = device_of(model)
    check_generator("generator", generator, device)
    lab = labelled.to(device)
    sums = torch.zeros(4, device=device, dtype=torch.float64)
    done = 0
    while done < n:
        m = min(batch_size, n - done)
        x, y = lab.sample(m, generator=generator)
        z = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        t = torch.rand(m, generator=generator, device=device, dtype=x.dtype)
        xt = (1 - t)[:, None] * x + t[:, None] * z
        v_cond = _oracle.class_velocity(lab, xt, t, y)
        v_all = _oracle.velocity(lab.mixture, xt, t)
        f_cond = model(xt, t, y)
        f_null = model(xt, t, torch.full_like(y, null_label))
        irreducible_cond = _oracle.class_conditional_variance(lab, xt, t, y)
        sums += torch.stack([(f_cond - v_cond).square().sum(1).sum(), (f_null - v_all).square().sum(1).sum(),
                             irreducible_cond.sum(), _oracle.conditional_variance(lab.mixture, xt, t).sum()]).double()
        done += m
    cond, uncond, oracle_cond, oracle_uncond = (float(v) / n for v in sums)
    return {"conditional": cond, "unconditional": uncond,
            "oracle_conditional": oracle_cond, "oracle_unconditional": oracle_uncond}


def path_straightness(trajectory: torch.Tensor) -> dict:
    r"""How far sampling paths bend away from straight lines.

    ``trajectory`` is (K + 1, n, d): n particles, each followed through K steps (what
    the samplers return with ``return_trajectory=True``). Each path's **chord** runs
    from its first point to its last. Per path,

    * deviation = max_k dist(x^(k), chord) / |chord|: 0 for a straight path;
    * length ratio = (sum_k |x^(k+1) - x^(k)|) / |chord|: 1 for a straight path.

    Both divide by the chord, so a path that ends near where it started (a short chord)
    gets a huge ratio from a small wiggle; the summaries are robust to those: the
    **medians** over paths (``deviation``, ``length_ratio``), and the largest deviation
    (``max_deviation``) and its path's index (``most_bent``) among the paths whose chord
    is at least the median chord length. Paths whose ends coincide are left out.
    """
    traj = check_points_sequence("trajectory", trajectory)
    start, end = traj[0], traj[-1]
    chord = end - start
    length = chord.norm(dim=1)
    keep = length > 1e-8
    if not bool(keep.any()):
        raise ValueError("trajectory must hold at least one path whose ends differ")
    # distance of every point from its path's chord segment
    safe = length.clamp_min(1e-8)
    rel = traj - start
    along = ((rel * chord).sum(-1) / safe**2).clamp(0.0, 1.0)
    off = (rel - along[..., None] * chord).norm(dim=-1)
    deviation = off.max(dim=0).values / safe
    walked = (traj[1:] - traj[:-1]).norm(dim=-1).sum(0) / safe
    long = keep & (length >= length[keep].quantile(0.5))
    candidates = torch.where(long, deviation, torch.full_like(deviation, -1.0))
    worst = int(candidates.argmax())
    return {"deviation": float(deviation[keep].quantile(0.5)), "length_ratio": float(walked[keep].quantile(0.5)),
            "max_deviation": float(deviation[worst]), "most_bent": worst}


def interpolation_smoothness(frames: torch.Tensor) -> dict:
    r"""Is a walk through a latent space smooth? ``frames`` is (T, n, ...): n walks of T frames.

    Distances are Euclidean over all of a frame's numbers (pixels). Per walk, its
    largest step between neighbouring frames is divided by the distance between its
    first and last frame (two unrelated samples): about 1 / (T - 1) for an even walk,
    1 for a walk that jumps from one end to the other in a single step. Returns

    * ``max_step_ratio``: the median of that ratio over the walks;
    * ``worst_ratio``: its largest value (the most abrupt walk);
    * ``step`` and ``ends``: the mean step and the mean distance between the ends.
    """
    frames = check_points_sequence("frames", frames, flatten=True)
    if frames.shape[0] < 3:
        raise ValueError(f"frames must hold at least 3 frames per walk, got {frames.shape[0]}")
    steps = (frames[1:] - frames[:-1]).norm(dim=-1)  # (T - 1, n)
    ends = (frames[-1] - frames[0]).norm(dim=-1)  # (n,)
    moving = ends > 0
    if not bool(moving.any()):
        raise ValueError("frames must walk somewhere: every walk's first and last frames are equal")
    ratio = steps.max(dim=0).values[moving] / ends[moving]
    return {"max_step_ratio": float(ratio.quantile(0.5)), "worst_ratio": float(ratio.max()),
            "step": float(steps.mean()), "ends": float(ends.mean())}


_EXACT = "donot_use_mm_for_euclid_dist"  # differences, not |a|^2 - 2ab + |b|^2: near-copies measure ~0, not ~1e-3


def nearest_neighbor_distances(items: torch.Tensor, reference: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Euclidean distance from each of ``items`` (n, ...) to its nearest row of ``reference``
    (m, ...), over all numbers of an item (pixels); returns (n,) on ``items``' device."""
    reference = check_items("reference", reference)
    items = check_items("items", items, dim=reference.shape[1], like="reference").to(reference.device)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return _nearest(items, reference, batch_size)[0]


def _nearest(items, reference, batch_size=1024):
    """(distance, index) of each item's nearest reference row, ``batch_size`` items at a time."""
    parts = [torch.cdist(items[i:i + batch_size], reference, compute_mode=_EXACT).min(dim=1)
             for i in range(0, items.shape[0], batch_size)]
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def memorization(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor,
                 copy_threshold: float = 1 / 3) -> dict:
    r"""Do ``samples`` copy the training set? Measured against real data the model never saw.

    For each sample, d = distance to its nearest training item; the same for each
    ``held_out`` item gives the yardstick: how close a *new* real item comes to the
    training set by chance. Returns

    * ``ratio``: median d of the samples over median d of the held-out items. About 1
      (or more) for a model that makes new items; near 0 for one that copies;
    * ``copies``: the fraction of samples closer to a training item than
      ``copy_threshold`` times the held-out median (a near-duplicate);
    * ``held_out_copies``: the same fraction for the held-out items (near-duplicates
      that occur in real data by chance: the floor for ``copies``);
    * ``distances``, ``held_out_distances``: the per-item distances (for histograms);
    * ``nearest``: the index of each sample's nearest training item.
    """
    train = check_items("train", train)
    samples = check_items("samples", samples, dim=train.shape[1], like="train").to(train.device)
    held_out = check_items("held_out", held_out, dim=train.shape[1], like="train").to(train.device)
    copy_threshold = check_real("copy_threshold", copy_threshold, minimum=0.0, strict_min=True, maximum=1.0)
    d, nearest = _nearest(samples, train)
    d_held = _nearest(held_out, train)[0]
    scale = float(d_held.median())
    if scale <= 0:
        raise ValueError("held_out must not repeat the training set: its median distance to it is 0")
    return {"ratio": float(d.median()) / scale, "copies": float((d < copy_threshold * scale).float().mean()),
            "held_out_copies": float((d_held < copy_threshold * scale).float().mean()),
            "distances": d, "held_out_distances": d_held, "nearest": nearest}
