"""The cost of classifier-free guidance, printed as JSON.

    python benchmarks/cfg.py                 # 4096 samples, 50 Euler steps, 5 repeats
    python benchmarks/cfg.py --n 65536 --device cuda

Times one full sampling run (``--steps`` Euler steps of a class-conditional TimeMLP) three
ways, in the same process, alternating the order so drift hits all three alike:

- ``unguided``: w = 0, one forward pass of B rows per step (the baseline);
- ``batched``:  ``cfg_velocity``, one forward pass of 2B rows per step;
- ``two_calls``: the textbook version, conditional and unconditional passes of B rows.

Reports medians and the ratios to the unguided baseline. Guidance doubles the arithmetic,
so ~2x is the floor on a compute-bound device; batching saves the per-call overhead
(kernel launches on a GPU, Python and dispatch on a CPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from cs231n_gen import get_device, seed_everything
from cs231n_gen.guidance import Guided
from cs231n_gen.nn import TimeMLP
from cs231n_gen.sampling import euler


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--w", type=float, default=2.0)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    device = torch.device(args.device) if args.device else get_device()
    seed_everything(0)
    model = TimeMLP(dim=2, num_classes=3).to(device).eval()
    z = torch.randn(args.n, 2, device=device)
    y = torch.arange(args.n, device=device) % 3
    null = torch.full_like(y, 3)
    w = args.w

    samplers = {
        "unguided": lambda: euler(Guided(model, y, 0.0), z, args.steps),
        "batched": lambda: euler(Guided(model, y, w), z, args.steps),
        "two_calls": lambda: euler(lambda x, t: (1 + w) * model(x, t, y) - w * model(x, t, null), z, args.steps),
    }
    times = {name: [] for name in samplers}
    with torch.no_grad():
        for fn in samplers.values():  # warm-up
            fn()
        _sync(device)
        for r in range(args.repeats):
            order = list(samplers) if r % 2 == 0 else list(reversed(samplers))
            for name in order:
                t0 = time.perf_counter()
                samplers[name]()
                _sync(device)
                times[name].append(time.perf_counter() - t0)
        same = torch.allclose(samplers["batched"](), samplers["two_calls"](), atol=1e-4)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(json.dumps({
        "device": str(device), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "n": args.n, "steps": args.steps, "w": w, "repeats": args.repeats,
        "median_seconds": {k: round(v, 4) for k, v in med.items()},
        "ratio_to_unguided": {k: round(v / med["unguided"], 3) for k, v in med.items()},
        "batched_equals_two_calls": bool(same),
    }, indent=2))


if __name__ == "__main__":
    main()
