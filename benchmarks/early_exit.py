"""Real early exit vs the simulated FLOPs saving, on the cpu preset's trained MSDNet (trained first if needed).

    .venv/bin/python benchmarks/early_exit.py [--preset cpu] [--batch 256] [--repeats 3]

For thresholds along the budgeted-batch curve (thesis Algorithm 1 on the validation record) it times real early-exit
inference over the test set (exited samples stop computing) against the full network (every exit computed: what the
simulated evaluation pays), and prints per point: expected FLOPs saving, measured wall-clock saving, and their ratio.
Then batch size 1: median latency of running the network up to each exit (anytime).
"""
from __future__ import annotations

import argparse

import torch

from overthink_lib import exits
from overthink_lib.config import get_preset
from overthink_lib.data import iterate
from overthink_lib.dynamic import early_exit, timed
from overthink_lib.experiment import main_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    P = get_preset(args.preset)
    exp = main_experiment(P, progress=True)
    model, test_set = exp["model"].eval(), exp["splits"]["test"]
    val, test = exp["records"]["val"], exp["records"]["test"]
    batches = [x for x, _, _ in iterate(test_set, args.batch)]
    full_flops = float(test.flops[-1])

    def full():
        with torch.no_grad():
            for x in batches:
                model(x)

    t_full = timed(full, args.repeats)
    curve = exits.budgeted_curve(val, test, ps=[1, 3, 5, 8, 10, 13, 17, 20, 25, 30])
    print(f"{len(test_set)} test images, batch {args.batch}, {torch.get_num_threads()} threads; full network "
          f"{t_full:.2f} s ({len(test_set) / t_full:.0f} img/s)")
    print(f"{'p':>3} {'acc %':>6} {'MFLOPs':>7} {'FLOPs saved':>11} {'time saved':>10} {'ratio':>6}")
    for row in curve.itertuples():
        t = row.thresholds[:-1]
        t_dyn = timed(lambda: [early_exit(model, x, t) for x in batches], args.repeats)
        flops_saved = 1 - row.test_flops / full_flops
        time_saved = 1 - t_dyn / t_full
        print(f"{row.p:>3} {row.test_acc * 100:6.2f} {row.test_flops / 1e6:7.2f} {flops_saved * 100:10.1f}% "
              f"{time_saved * 100:9.1f}% {time_saved / flops_saved if flops_saved > 0 else float('nan'):6.2f}")
    x1 = batches[0][:1]
    lat = []
    for k in range(1, model.num_exits + 1):
        with torch.no_grad():
            lat.append(timed(lambda: model(x1, upto=k), 50, 5))
    print("batch 1, latency up to exit k (ms): " + ", ".join(f"{k + 1}: {v * 1e3:.2f}" for k, v in enumerate(lat)) +
          "; FLOPs share: " + ", ".join(f"{f / full_flops * 100:.0f}%" for f in test.flops.tolist()))


if __name__ == "__main__":
    main()
