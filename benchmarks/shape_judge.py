"""Accuracy of ``image_metrics.shape_attributes`` per attribute on held-out shapes; prints JSON.

Clean images, images blurred once by the 3 x 3 binomial filter, and images with Gaussian
noise (std 0.1 on the [-1, 1] scale), at 32 x 32 and 64 x 64, plus the judge's speed.
"""
from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

from cs231n_gen.data import captioned_shapes, shapes
from cs231n_gen.image_metrics import shape_attributes


def _blur(images):
    k = torch.tensor([0.25, 0.5, 0.25])
    k = torch.outer(k, k).expand(3, 1, 3, 3).contiguous()
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), k, groups=3)


def main(n: int = 4000) -> None:
    report = {}
    for size in (32, 64):
        batch = shapes(n, size=size, generator=torch.Generator().manual_seed(2024))
        noise = 0.1 * torch.randn(batch.images.shape, generator=torch.Generator().manual_seed(7))
        for name, images in (("clean", batch.images), ("blurred", _blur(batch.images)),
                             ("noisy", batch.images + noise)):
            start = time.perf_counter()
            got = shape_attributes(images)
            seconds = time.perf_counter() - start
            report[f"{size}px {name}"] = {
                **{a: round(float((got[a] == batch.labels[a]).float().mean()), 4)
                   for a in captioned_shapes.ATTRIBUTES},
                "images_per_s": round(n / seconds)}
    print(json.dumps({"held_out_images": n, "accuracy": report}, indent=1))


if __name__ == "__main__":
    main()
