"""GPU-hours of each job of the `paper` preset: what to ask a cluster for before a run that takes days.

One number is measured: an epoch of the main CIFAR-100 MSDNet on one H100 (fp32, batch 64, 40,000 training images
plus a validation pass of 10,000: 32.7 s, `benchmarks/cuda_check.py`, docs/performance.md). Every other job is
scaled from it by the work it does: training images × epochs × the network's forward multiply-adds per image
(counted with torch.utils.flop_counter on the lab's own models), plus one forward pass over the validation
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
from overthink_lib.jobs import JOBS, Task
from overthink_lib.jobs.estimate import critical_path, task_hours

# the anchor, the split sizes and the MAC counts are the library's (each job declares its cost next to what it runs,
# overthink_lib/experiments/; `reproduce --dry-run` prints the same hours): this script prints them per job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", help="the preset whose jobs to cost (default paper)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    p = get_preset(args.preset)
    tasks = [Task(j.name, d) for j in JOBS for d in (p.datasets if j.per_dataset else p.datasets[:1])]
    each = {t: task_hours(p, t) for t in tasks}
    rows = [{"job": t.job, "dataset": t.dataset, "hours": h} for t, h in each.items() if h]
    print("| job | dataset | GPU-hours (H100) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['job']} | {r['dataset']} | {r['hours']:.1f} |")
    length, chain = critical_path(p, tasks, each)
    print(
        f"\ntotal ≈ {sum(each.values()):.0f} GPU-hours; the longest chain ≈ {length:.1f} h: "
        + " → ".join(f"{t.job} ({t.dataset})" for t in chain)
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
