r"""Judging generated digits with a classifier trained on the real ones.

For small images there is no Inception network to lean on, so the course trains its
own judge: a small CNN on the scikit-learn digits (train split), cached on disk after
the first fit (about 20 s on a CPU) and checked on the held-out test split. From it:

- **class confidence**: the mean of max_y p(y | x) over generated images (sharp,
  recognisable digits score near 1, smudges lower);
- **class coverage**: how many of the 10 classes receive at least ``min_fraction`` of
  the generated images (confidently classified); mode collapse shows up here;
- **accuracy** for class-conditional samples: does the judge read the asked-for label;
- **Frechet distance** in the judge's 128-d feature space (the FID recipe, with our
  own features): fit a Gaussian to each set of features and compute

  .. math::  d^2 = \lVert \mu_a - \mu_b \rVert^2
                   + \mathrm{tr}\big(\Sigma_a + \Sigma_b - 2 (\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2})^{1/2}\big).

  The number means little alone, so it is always reported next to the same distance
  for real held-out digits (``frechet_real``), computed from the same number of images.

Shape images (:func:`cs231n_gen.data.shapes`) need no learned judge: :func:`shape_attributes`
reads their shape, colour, size and position back from the pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import cache
from ._validate import check_bool, check_device, check_int, check_labels, check_model_input, check_real, check_tensor
from .cache import CACHE_ENV, cache_dir  # noqa: F401 (where the judge's cache lives)
from .data.images import N_CLASSES, digits
from .runtime import get_device
from .train import fit

CLASSIFIER_VERSION = 2
ACCURACY_TOLERANCE = 0.01  # a cached judge must re-measure within this of its stored test accuracy


class DigitClassifier(nn.Module):
    """A small CNN: two conv stages (32, 64 channels), 128 features, 10 logits."""

    feature_dim = 128

    def __init__(self, size: int = 16):
        super().__init__()
        self.size = check_int("size", size, minimum=8)
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(64 * 4, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, N_CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_model_input("x", x, (None, 1, self.size, self.size))
        if x.shape[0] < 1:
            raise ValueError(f"x must hold at least one image, got shape {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _translate(x: torch.Tensor, generator: torch.Generator, max_pixels: int) -> torch.Tensor:
    """Random translations by up to ``max_pixels`` pixels (background fill -1)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_pixels,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_pixels + 1, (n,), generator=generator, device=x.device)
    dy = torch.randint(0, 2 * max_pixels + 1, (n,), generator=generator, device=x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded[idx, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """Fraction of ``images`` (n, C, H, W) that ``model`` labels correctly (``labels``: n class indices)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    images = check_tensor("images", images, ndim=4)
    if images.shape[0] < 1:
        raise ValueError(f"images must hold at least one image, got shape {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a ({images.shape[0]},) tensor, one label per row of images, got {got}")
    labels = check_labels("labels", labels, images.shape[0], N_CLASSES, "cpu", rows_of="images")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, images.shape[0], batch_size):
        try:
            logits = model(images[i:i + batch_size].to(device))
        except ValueError as err:
            raise ValueError(f"model rejected images: {err}") from err
        correct += int((logits.argmax(1).cpu() == labels[i:i + batch_size]).sum())
    return correct / images.shape[0]


def train_digit_classifier(size: int = 16, epochs: int = 30, seed: int = 0, device=None,
                           progress: bool = True) -> DigitClassifier:
    """Fit :class:`DigitClassifier` on the train split (with small random shifts).

    The caller's global random state is left as it was (the judge is trained or loaded
    from the cache depending on the machine, and a lecture's numbers must not depend on
    which)."""
    size = check_int("size", size, minimum=8)
    epochs = check_int("epochs", epochs, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    progress = check_bool("progress", progress)
    device = check_device("device", device) or get_device()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return _fit_digit_classifier(size, epochs, seed, device, progress)


def _fit_digit_classifier(size, epochs, seed, device, progress) -> DigitClassifier:
    model = DigitClassifier(size)
    x, y = (v.to(device) for v in digits(size, "train"))
    max_pixels = max(1, size // 8)

    def draw(n, generator):  # a minibatch of randomly shifted digits and their labels
        idx = torch.randint(0, x.shape[0], (n,), generator=generator, device=device)
        return _translate(x[idx], generator, max_pixels), y[idx]

    def loss_fn(net, batch, generator):
        images, labels = batch
        return F.cross_entropy(net(images), labels)

    batch = 64
    steps = epochs * ((x.shape[0] + batch - 1) // batch)
    fit(model, loss_fn, draw, steps=steps, batch_size=batch, lr=2e-3, lr_schedule="cosine",
        warmup=steps // 10, seed=seed, device=device, progress=progress,
        desc="digit classifier (once, then cached)")
    return model


def digit_classifier(size: int = 16, device=None, retrain: bool = False, progress: bool = True) -> DigitClassifier:
    """The judge for ``size`` x ``size`` digits: loaded from the cache, or trained once and cached.

    The returned model carries ``test_accuracy``, measured on the held-out split each
    time it is loaded. The cache (:mod:`cs231n_gen.cache`, in :func:`cache_dir`) is
    keyed by the classifier's configuration and the library version; a file that is
    unreadable, damaged, or whose weights no longer score the accuracy stored with them
    is retrained over with a printed reason.
    """
    size = check_int("size", size, minimum=8)
    retrain = check_bool("retrain", retrain)
    progress = check_bool("progress", progress)
    device = check_device("device", device) or get_device()
    config = {"size": size, "version": CLASSIFIER_VERSION, "epochs": 30, "seed": 0}
    x_test, y_test = digits(size, "test")
    model = DigitClassifier(size)

    def verify(payload):
        """Why the cached weights cannot be trusted, or None (and the re-measured accuracy set)."""
        try:
            model.load_state_dict(payload["model"])
            stored = float(payload["test_accuracy"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            return f"does not fit the classifier ({type(err).__name__})"
        if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
            return "holds NaN or infinite weights"
        model.to(device)
        measured = accuracy(model, x_test, y_test)
        if abs(measured - stored) > ACCURACY_TOLERANCE:
            return f"claims test accuracy {stored:.3f} but its weights score {measured:.3f}"
        model.test_accuracy = measured
        return None

    if not retrain and cache.load("digit_classifier", config, verify) is not None:
        return model.to(device).eval()
    model = train_digit_classifier(size, epochs=config["epochs"], seed=config["seed"], device=device,
                                   progress=progress)
    model.test_accuracy = accuracy(model, x_test, y_test)
    cache.store("digit_classifier", config, {"model": {k: v.cpu() for k, v in model.state_dict().items()},
                                             "test_accuracy": model.test_accuracy})
    return model


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature sets (float64)."""
    a = check_tensor("features_a", features_a, ndim=2).double().cpu()
    b = check_tensor("features_b", features_b, ndim=2).double().cpu()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_b must have {a.shape[1]} columns like features_a, got {b.shape[1]}")
    for name, f in (("features_a", a), ("features_b", b)):
        if f.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 rows, got {f.shape[0]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)

    def sqrtm_psd(m):
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp(min=0).sqrt()) @ v.T

    root_a = sqrtm_psd(cov_a)
    cross = sqrtm_psd(root_a @ cov_b @ root_a)
    d2 = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * torch.trace(cross)
    return float(d2.clamp(min=0))


class DigitJudge:
    """Scores generated digits against the real ones (see the module docstring).

    ``judge = DigitJudge(size=16)`` loads (or trains once) the classifier;
    ``judge.evaluate(images, labels=None)`` returns a dict of numbers.
    """

    def __init__(self, size: int = 16, device=None, progress: bool = True):
        self.size = check_int("size", size, minimum=8)
        self.device = check_device("device", device) or get_device()
        progress = check_bool("progress", progress)
        self.classifier = digit_classifier(self.size, device=self.device, progress=progress)
        self.test_accuracy = self.classifier.test_accuracy
        x_train, _ = digits(self.size, "train")
        self.x_test, self.y_test = digits(self.size, "test")
        self._ref_features = self.features(x_train)
        self._test_features = self.features(self.x_test)

    @torch.no_grad()
    def _run(self, images: torch.Tensor, batch_size: int = 512):
        feats, probs = [], []
        for i in range(0, images.shape[0], batch_size):
            f = self.classifier.features(images[i:i + batch_size].to(self.device))
            feats.append(f.cpu())
            probs.append(torch.softmax(self.classifier.head(f), dim=1).cpu())
        return torch.cat(feats), torch.cat(probs)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(self._check_images(images))[0]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The digit the judge reads in each image, shape (n,) on the CPU."""
        return self._run(self._check_images(images))[1].argmax(dim=1)

    def _check_images(self, images) -> torch.Tensor:
        images = check_tensor("images", images)
        if images.ndim != 4 or images.shape[1:] != (1, self.size, self.size):
            raise ValueError(f"images must have shape (n, 1, {self.size}, {self.size}), got {tuple(images.shape)}")
        if images.shape[0] < 2:
            raise ValueError(f"images needs at least 2 images, got {images.shape[0]}")
        return images.detach().float()

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 min_fraction: float = 0.02, confidence: float = 0.5) -> dict:
        """Scores for a batch of generated images (values in [-1, 1] like the data).

        Returns a dict with ``n``, ``confidence`` (mean max class probability),
        ``class_counts`` (confident predictions per class), ``classes_covered``
        (classes with at least ``min_fraction`` of the images, confidently),
        ``accuracy`` (when ``labels`` are given, else None), ``frechet`` (features of
        ``n_ref`` of the images, a fixed random subset, vs the real train split) and
        ``frechet_real`` (the held-out real test split vs the same reference, same
        ``n_ref`` images). ``n_ref`` is the smaller of n and the test split's size.
        """
        images = self._check_images(images)
        min_fraction = check_real("min_fraction", min_fraction, minimum=0.0, maximum=1.0)
        confidence = check_real("confidence", confidence, minimum=0.0, maximum=1.0)
        if labels is not None:
            labels = check_labels("labels", labels, images.shape[0], N_CLASSES, "cpu", rows_of="images")
        feats, probs = self._run(images)
        top, pred = probs.max(dim=1)
        sure = top >= confidence
        counts = torch.bincount(pred[sure], minlength=N_CLASSES)
        n = images.shape[0]
        n_ref = min(n, self._test_features.shape[0])
        # A fixed random subset, so the order of the images (sorted by class, say) does not matter.
        subset = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:n_ref]
        return {
            "n": n,
            "confidence": float(top.mean()),
            "class_counts": counts.tolist(),
            "classes_covered": int((counts >= max(1, min_fraction * n)).sum()),
            "accuracy": float((pred == labels).float().mean()) if labels is not None else None,
            "frechet": frechet_distance(feats[subset], self._ref_features),
            "frechet_real": frechet_distance(self._test_features[:n_ref], self._ref_features),
            "n_ref": n_ref,
        }


# ---------------------------------------------------------------- judging shape images
def _blur3(x: torch.Tensor, passes: int) -> torch.Tensor:
    """``passes`` rounds of the 3 x 3 binomial blur on (n, H, W) maps (edges replicated)."""
    k = torch.tensor([0.25, 0.5, 0.25])
    k = torch.outer(k, k).view(1, 1, 3, 3)
    x = x.unsqueeze(1)
    for _ in range(passes):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    return x.squeeze(1)


def shape_attributes(images: torch.Tensor) -> dict:
    r"""Read shape, color, size and position back from shape images, with no learning.

    ``images`` are (n, 3, S, S) in [-1, 1], one object each on a plain background, as
    :func:`cs231n_gen.data.shapes` draws them (and as a model trained on them should).
    For each image:

    1. the background is the median of the border pixels; the object's *core* is where
       the colour differs most from it (at least 60% of the largest difference);
    2. **color**: the palette entry nearest to the core's mean colour;
    3. the coverage :math:`\alpha \in [0, 1]` of every pixel is its projection on the
       segment from the background to that colour (pixels far from the core, or below
       0.1, count as background: noise elsewhere is ignored);
    4. **position**: the grid cell nearest to the centroid of :math:`\alpha`;
    5. **shape**: for each shape, the half-extent that gives :math:`\sum \alpha` its area,
       a template drawn by the data's own renderer at that size and centroid (sharp, and
       blurred once and twice), and the squared difference to :math:`\alpha`; the best fit wins;
    6. **size**: small or large, from the fitted half-extent (the threshold is the
       geometric mean of the two).

    Returns a dict of LongTensors (n,) with the label names of
    :func:`~cs231n_gen.data.shapes` (``shape``, ``color``, ``size``, ``position``), plus
    ``found`` (bool): the object stands out from the background (a blank or washed-out
    image gets False, and its other readings mean little).

    Held-out images at 32 x 32 (``benchmarks/shape_judge.py``, 4000 images): shape 99.9%,
    colour, size and position 100%; after a 3 x 3 binomial blur, shape 98.8% and the rest
    100%; with Gaussian noise of std 0.1 added, 100%; at 64 x 64, 100% in all three cases
    (``tests/test_shapes.py`` asserts bounds on these). At 16 x 16 small shapes are a few
    pixels wide and shape accuracy drops to about 90%.
    """
    readings = _read_shapes(images)
    return {key: readings[key] for key in ("shape", "color", "size", "position", "found")}


def shape_features(images: torch.Tensor) -> torch.Tensor:
    """The judge's continuous readings of shape images, (n, 14): what Frechet distances compare.

    Per image: background and object colour (RGB each), the object's centroid (x, y as
    fractions of the side), its size (sqrt of its area over the side), the fit error of
    each of the four shape templates (relative to the object's area), and the contrast
    of the object against the background. Real shapes make a tight cloud in this space;
    smudges, two objects or washed-out colours fall outside it.
    """
    return _read_shapes(images)["features"]


def clip_attributes(videos: torch.Tensor) -> dict:
    r"""Read clips of one moving shape: :func:`shape_attributes` on every frame, and the motion.

    ``videos`` (n, T, 3, S, S) in [-1, 1], as :func:`cs231n_gen.data.moving_shapes` draws
    them. Returns LongTensors ``shape``, ``color``, ``size`` and bool ``found``, each
    (n, T), one reading per frame; ``centroid`` (n, T, 2), the object's centroid (x, y as
    fractions of the side, y down); ``displacement`` (n, 2), the least-squares slope of the
    centroid over the frames times (T - 1), i.e. how far the object travelled; and
    ``direction`` (n,), the index into ``DIRECTIONS`` ("left", "right", "up", "down") of
    the largest component of that displacement (0, "left", for a one-frame clip).
    """
    videos = check_tensor("videos", videos, ndim=5)
    n, frames = videos.shape[:2]
    if n < 1 or frames < 1 or videos.shape[2] != 3 or videos.shape[3] != videos.shape[4] or videos.shape[3] < 16:
        raise ValueError(f"videos must be RGB clips (n, T, 3, S, S) with n, T >= 1 and S >= 16, got shape "
                         f"{tuple(videos.shape)}")
    readings = _read_shapes(videos.flatten(0, 1))
    centroid = readings["features"][:, 6:8].reshape(n, frames, 2)
    f = torch.arange(frames, dtype=centroid.dtype, device=centroid.device)
    f = (f - f.mean())[None, :, None]
    slope = (f * (centroid - centroid.mean(1, keepdim=True))).sum(1) / f.square().sum().clamp_min(1e-12)
    displacement = slope * (frames - 1)
    scores = torch.stack([-displacement[:, 0], displacement[:, 0], -displacement[:, 1], displacement[:, 1]], 1)
    # (columns in the order of DIRECTIONS: left, right, up, down)
    out = {key: readings[key].reshape(n, frames) for key in ("shape", "color", "size", "found")}
    return {**out, "centroid": centroid, "displacement": displacement, "direction": scores.argmax(1)}


def _read_shapes(images: torch.Tensor) -> dict:
    """shape_attributes' work: the label readings plus the continuous features."""
    from .data import captioned_shapes as S

    images = check_tensor("images", images, ndim=4)
    if images.shape[1] != 3 or images.shape[2] != images.shape[3] or images.shape[2] < 16:
        raise ValueError(f"images must be RGB squares (n, 3, S, S) with S >= 16, got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image, got an empty batch")
    largest = float(images.detach().abs().max())
    if not largest <= 2.0:  # a sampler's overshoot is clamped; pixels in [0, 255] are a different scale
        raise ValueError(f"images must lie in [-1, 1] (a little outside is clamped), got values up to {largest:.4g}: "
                         "images in [0, 255] or [0, 1] need x / 127.5 - 1 or 2 x - 1 first")
    device = images.device
    rgb = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    n, side = rgb.shape[0], rgb.shape[-1]

    # 1. background and core
    border = torch.cat([rgb[:, :, 0, :], rgb[:, :, -1, :], rgb[:, :, :, 0], rgb[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values  # (n, 3)
    difference = (rgb - background.view(n, 3, 1, 1)).norm(dim=1)  # (n, S, S)
    peak = difference.flatten(1).amax(1)
    core = difference >= 0.6 * peak.clamp_min(1e-6).view(n, 1, 1)

    # 2. colour
    core_rgb = (rgb * core.unsqueeze(1)).sum((2, 3)) / core.sum((1, 2)).clamp_min(1).unsqueeze(1)
    color = torch.cdist(core_rgb, S.PALETTE).argmin(1)

    # 3. coverage
    span = S.PALETTE[color] - background  # (n, 3)
    alpha = ((rgb - background.view(n, 3, 1, 1)) * span.view(n, 3, 1, 1)).sum(1)
    alpha = (alpha / span.square().sum(1).clamp_min(1e-6).view(n, 1, 1)).clamp(0, 1)
    near = F.max_pool2d(core.float().unsqueeze(1), 5, stride=1, padding=2).squeeze(1) > 0
    alpha = torch.where((alpha > 0.1) & near, alpha, torch.zeros_like(alpha))
    area = alpha.sum((1, 2)).clamp_min(1e-6)

    # 4. position
    ticks = torch.arange(side, dtype=torch.float32) + 0.5
    cx = (alpha.sum(1) * ticks).sum(1) / area
    cy = (alpha.sum(2) * ticks).sum(1) / area
    centers = torch.tensor(S.CENTERS) * side
    position = 3 * (cy[:, None] - centers).abs().argmin(1) + (cx[:, None] - centers).abs().argmin(1)

    # 5. shape: the best-fitting template
    errors, radii = [], []
    for k, name in enumerate(S.SHAPES):
        r = (area / S.AREA[name]).sqrt()
        template = S.coverage(torch.full((n,), k), cx, cy - S.CENTROID_DROP[name] * r, r, side, supersample=2)
        errors.append(torch.stack([(_blur3(template, b) - alpha).square().sum((1, 2)) for b in (0, 1, 2)]).amin(0))
        radii.append(r)
    shape = torch.stack(errors, 1).argmin(1)

    # 6. size
    r = torch.stack(radii, 1).gather(1, shape[:, None]).squeeze(1) / side
    size = (r > (S.RADIUS[0] * S.RADIUS[1]) ** 0.5).long()
    found = peak > 0.25
    fit = torch.stack(errors, 1) / area.clamp_min(1.0)[:, None]
    features = torch.cat([background, core_rgb, torch.stack([cx / side, cy / side, area.sqrt() / side], 1), fit,
                          peak[:, None]], dim=1)
    out = {"shape": shape, "color": color, "size": size, "position": position, "found": found, "features": features}
    return {key: value.to(device) for key, value in out.items()}


# ---------------------------------------------------------------------------- sharpness
def sharpness(images: torch.Tensor) -> torch.Tensor:
    r"""The variance of the Laplacian of each image's brightness, (n,): large for crisp edges.

    The brightness is the mean of the channels in [0, 1]; the Laplacian is the 3 x 3
    stencil [[0, 1, 0], [1, -4, 1], [0, 1, 0]] on the interior pixels. Blurring an image
    lowers it (one 3 x 3 binomial blur divides it by about 6 on shape images); compare a
    model's images with real ones by the ratio of the means.
    """
    images = check_tensor("images", images, ndim=4)
    if images.shape[0] < 1 or images.shape[2] < 3 or images.shape[3] < 3:
        raise ValueError(f"images must be shaped (n, C, H, W) with n >= 1 and H, W >= 3, got {tuple(images.shape)}")
    grey = ((images.detach().float() + 1) / 2).mean(1, keepdim=True)
    stencil = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=grey.device).view(1, 1, 3, 3)
    return F.conv2d(grey, stencil).flatten(1).var(1)
