"""GPU-hours of each job of the `paper` preset: what to ask a cluster for before a run that takes days.

One number is measured: an epoch of the main CIFAR-100 MSDNet on one H100 (fp32, batch 64, 40,000 training images
plus a validation pass of 10,000: 32.7 s, `benchmarks/cuda_check.py`, docs/performance.md). Every other job is
scaled from it by the work it does: training images × epochs × the network's forward multiply-adds per image
(counted here with torch.utils.flop_counter on the lab's own models), plus one forward pass over the validation
split per epoch (a third of a training step's cost). So these are FLOP-ratio estimates, not measurements. The MSDNet
is launch-bound on an H100 (its 42,664 img/s eval is far from the GPU's peak), so a network of more work per image
(the 64 px Max-Min M, the ResNet-34 policy) runs closer to the GPU's peak than this ratio assumes: those rows are
upper bounds.

Usage: python benchmarks/gpu_hours.py [--json out.json]   (CPU only; seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overthink_lib.config import get_preset
from overthink_lib.jobs.estimate import (
    ANCHOR_SECONDS,
    ANCHOR_TRAIN,
    ANCHOR_VAL,
    CLASSES,
    SHAPE,
    TRAIN,
    VAL,
    forward_macs,
)

# the anchor, the split sizes and the MAC counts are the library's (overthink_lib/jobs/estimate.py, which also gives
# `reproduce --dry-run` its hours per job); this script prints them per kind of job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    p = get_preset("paper")
    anchor_macs = forward_macs("msdnet_cifar", SHAPE["cifar100"], num_classes=100)
    # seconds per (image × forward multiply-add) of training, with a validation pass per epoch at a third of it
    rate = ANCHOR_SECONDS / (anchor_macs * (ANCHOR_TRAIN + ANCHOR_VAL / 3))
    canvas = (1, p.maxmin.canvas, p.maxmin.canvas)
    mm_macs = forward_macs("msdnet_cifar", canvas, num_classes=10)
    pol_mm = forward_macs("policy_resnet", canvas, depth=p.policy.depth, width=p.policy.width, num_classes=5)
    rows = []

    def job(name: str, macs: float, train: int, val: int, epochs: int, runs: int = 1, basis: str = "FLOP ratio"):
        hours = runs * epochs * rate * macs * (train + val / 3) / 3600
        rows.append({"job": name, "runs": runs, "epochs": epochs, "images": train, "gmacs": macs / 1e9, "hours": hours})
        rows[-1]["basis"] = basis

    for d in p.datasets:
        m = forward_macs("msdnet_cifar", SHAPE[d], num_classes=CLASSES[d])
        basis = "measured" if d == "cifar100" else "FLOP ratio"
        job(f"main MSDNet ({d})", m, TRAIN[d], VAL[d], p.training.epochs, basis=basis)
        e = p.imta.epochs
        job(f"IMTA 2E + E ISC+OFA ({d})", m, TRAIN[d], VAL[d], 3 * e)  # the 2E run, then E epochs of fine-tuning
        # on a fixed subset of the training split (all of it on paper), without a validation split
        job(f"IMTA over {p.imta.seeds} seeds ({d})", m, TRAIN[d], 0, 3 * e, runs=p.imta.seeds)
        pol = forward_macs("policy_resnet", SHAPE[d], depth=p.policy.depth, width=p.policy.width, num_classes=2)
        job(f"binary policy + control ({d})", pol, VAL[d], 0, p.policy.epochs, runs=2)
    job("Max-Min M", mm_macs, p.maxmin.sizes.train, p.maxmin.sizes.val, p.maxmin.epochs)
    job("Max-Min long M", mm_macs, p.maxmin.sizes.train, p.maxmin.sizes.val, p.maxmin.long_epochs)
    job("Max-Min policy + control", pol_mm, p.maxmin.sizes.val, 0, p.policy.epochs, runs=2)
    k, main = p.stochasticity.runs, p.datasets[0]
    runs = 3 * k - 2  # init, data and both factors share run (0, 0)
    m = forward_macs("msdnet_cifar", SHAPE[main], num_classes=CLASSES[main])
    r20 = forward_macs("sdn_resnet20", SHAPE[main], num_classes=CLASSES[main])
    job(f"09 MSDNet runs ({main})", m, p.stochasticity.train, 0, p.stochasticity.epochs, runs=runs)
    job(f"09 ResNet-20 runs ({main})", r20, p.stochasticity.train, 0, p.stochasticity.epochs, runs=runs)

    print("| job | runs × epochs | images | GMACs/img | GPU-hours (H100) | basis |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['job']} | {r['runs']} × {r['epochs']} | {r['images']:,} | {r['gmacs']:.3f} | {r['hours']:.1f} "
            f"| {r['basis']} |"
        )
    total = sum(r["hours"] for r in rows)
    longest = max(rows, key=lambda r: r["hours"] / r["runs"])
    print(
        f"\ntotal ≈ {total:.0f} GPU-hours; the longest single run: {longest['job']}, "
        f"{longest['hours'] / longest['runs']:.1f} h"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
