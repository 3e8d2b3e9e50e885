r"""Judging generated digits with a classifier trained on the real ones.

For small images there is no Inception network to lean on, so the course trains its
own judge: a small CNN on the scikit-learn digits (train split), cached on disk after
the first fit (about 20 s on a CPU) and checked on the held-out test split. From it:

- **class confidence**: the mean of max_y p(y | x) over generated images (sharp,
  recognisable digits score near 1, smudges lower);
- **class coverage**: how many of the 10 classes receive at least ``min_fraction`` of
  the generated images (confidently classified); mode collapse shows up here;
- **accuracy** for class-conditional samples: does the judge read the asked-for label;
- **Frechet distance** in the judge's 128-d feature space
  (:func:`cs231n_gen.image_metrics.frechet_distance`, the FID recipe with our own
  features). The number means little alone, so it is always reported next to the same
  distance for real held-out digits (``frechet_real``), computed from the same number of images.
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
from .image_metrics import frechet_distance

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
