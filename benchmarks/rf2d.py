"""Rectified flow on 8 gaussians: speed and quality figures, printed as JSON.

    python benchmarks/rf2d.py            # full budget (6000 steps), about 1.5 minutes
    python benchmarks/rf2d.py --steps 1500 --repeats 2   # quick look

Reports
- training speed of ``fit`` (median of 3 timed runs) and, as a baseline measured in the
  same process, of a bare six-line training loop: their ratio is fit's overhead;
- the learned model's excess loss over the oracle (and as a fraction of the oracle's
  irreducible loss);
- W2 ratios (W2(samples, data) / W2(fresh data, data)) under the course's protocol
  (``metrics.evaluation_sets``: ``--repeats`` independent sets of 1000 points, 10 by
  default) of the learned model and of the exact velocity at 1, 2, 5, 10 and 50 Euler
  steps, next to the ratio of a third draw of real data (the protocol's own noise).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from cs231n_gen import get_device, metrics, oracle, seed_everything
from cs231n_gen.data import eight_gaussians
from cs231n_gen.nn import TimeMLP
from cs231n_gen.paths import rectified_flow_loss
from cs231n_gen.sampling import euler
from cs231n_gen.train import fit

STEP_COUNTS = (1, 2, 5, 10, 50)


def bare_loop_steps_per_second(data, steps, batch, device):
    model = TimeMLP().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    data = data.to(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = data.sample(batch)
        loss = rectified_flow_loss(model, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000, help="training steps for the quality figures")
    parser.add_argument("--repeats", type=int, default=metrics.W2_SETS,
                        help=f"independent {metrics.W2_POINTS}-point sets per W2 ratio")
    parser.add_argument("--speed-steps", type=int, default=300, help="steps per timed speed run")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.speed_steps < 1:
        parser.error("--steps, --repeats and --speed-steps must be >= 1")
    device = get_device(args.device)
    seed_everything(0)
    data = eight_gaussians()

    fit_speed, bare_speed = [], []
    for _ in range(3):
        h = fit(TimeMLP(), rectified_flow_loss, data, steps=args.speed_steps, lr=2e-3, device=device, progress=False)
        fit_speed.append(h.steps_per_second)
        bare_speed.append(bare_loop_steps_per_second(data, args.speed_steps, 512, device))

    model = TimeMLP()
    history = fit(model, rectified_flow_loss, data, steps=args.steps, lr=2e-3, device=device, progress=False)
    gen = torch.Generator(device=device).manual_seed(1)
    excess = metrics.excess_loss(model, data, n=65536, generator=gen)

    dev_data = data.to(device)
    sets = metrics.evaluation_sets(dev_data, n_sets=args.repeats, generator=gen)
    noise, ref, fresh = sets["noise"], sets["data"], sets["fresh"]
    exact = oracle.VelocityOracle(dev_data)
    w2 = {"learned": {}, "oracle": {}, "real_data": round(metrics.wasserstein2_ratio(sets["real"], ref, fresh), 4)}
    for steps in STEP_COUNTS:
        for name, field in (("learned", model), ("oracle", exact)):
            outs = [euler(field, z, steps) for z in noise]
            w2[name][str(steps)] = round(metrics.wasserstein2_ratio(outs, ref, fresh), 4)

    report = {
        "benchmark": "rf2d",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "train_steps": args.steps,
        "batch_size": 512,
        "fit_steps_per_s_median": round(statistics.median(fit_speed), 1),
        "bare_loop_steps_per_s_median": round(statistics.median(bare_speed), 1),
        "fit_over_bare_speed_ratio": round(statistics.median(fit_speed) / statistics.median(bare_speed), 3),
        "train_seconds": round(history.seconds, 2),
        "excess_loss": round(excess["excess"], 5),
        "oracle_loss": round(excess["oracle"], 4),
        "excess_over_oracle": round(excess["ratio"], 5),
        "w2_repeats": args.repeats,
        "w2_ratio": w2,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
