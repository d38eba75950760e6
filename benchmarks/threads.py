"""How training scales over CPU threads, and what two one-thread trainings at once get done (why the suite's jobs
run as they do, :mod:`overthink_lib.jobs`).

    .venv/bin/python benchmarks/threads.py [--steps 40] [--rounds 3]

Times a training step (SGD, all exits) of the ``cpu`` preset's MSDNet on Fashion-MNIST-shaped batches (64×1×28×28)
in fresh processes, ``--rounds`` interleaved rounds of: one process on all cores' threads, one on 1 thread, and as
many one-thread processes at once as there are cores. Reports the median img/s of each, the speed-up of all threads
over one, and the aggregate throughput of the parallel one-thread processes over the single all-thread process.
Results go to ``runs/benchmarks/threads.json`` with the CPU, torch version and code version.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import sys, time, torch, torch.nn.functional as F
from types import SimpleNamespace
torch.set_num_threads(int(sys.argv[1]))
from overthink_lib.experiments.runs import model_spec
from overthink_lib.models import model_from_spec
torch.manual_seed(0)
m = model_from_spec(model_spec(SimpleNamespace(num_classes=10, channels=1))).train()
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
x = torch.randn(64, 1, 28, 28); y = torch.randint(0, 10, (64,))
ts = []
for i in range(int(sys.argv[2]) + 3):
    t = time.perf_counter()
    loss = sum(F.cross_entropy(o, y) for o in m(x))
    opt.zero_grad(); loss.backward(); opt.step()
    ts.append(time.perf_counter() - t)
print(64 / sorted(ts[3:])[len(ts[3:]) // 2])
"""


def run(threads: int, steps: int, copies: int = 1) -> list[float]:
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(threads), str(steps)], stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    from overthink_lib.config import ROOT, code_version
    from overthink_lib.io import atomic_write_bytes
    from overthink_lib.speed import cpu_info

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = {"all": [], "one": [], "parallel": []}
    for r in range(args.rounds):
        rows["all"].append(run(cores, args.steps)[0])
        rows["one"].append(run(1, args.steps)[0])
        rows["parallel"].append(sum(run(1, args.steps, cores)))
        print(
            f"round {r + 1}: {cores} threads {rows['all'][-1]:.1f} img/s, 1 thread {rows['one'][-1]:.1f}, "
            f"{cores} × 1 thread at once {rows['parallel'][-1]:.1f} in all",
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in rows.items()}
    import torch

    out = {
        "cpu": cpu_info().describe(),
        "cores": cores,
        "torch": torch.__version__,
        "code_version": code_version(),
        "img_s": med,
        "threads_speedup": med["all"] / med["one"],
        "parallel_over_threads": med["parallel"] / med["all"],
        "rounds": rows,
    }
    print(
        f"median: {cores} threads {med['all']:.1f} img/s = {out['threads_speedup']:.2f}× one thread; {cores} one-thread "
        f"processes at once {med['parallel']:.1f} img/s = {out['parallel_over_threads']:.2f}× the {cores}-thread process"
    )
    path = ROOT / "runs" / "benchmarks" / "threads.json"
    atomic_write_bytes(path, json.dumps(out, indent=1).encode())
    print(f"wrote {path}")


if __name__ == "__main__":
    from overthink_lib.malloc import apply_process_settings

    apply_process_settings()  # the lab's process settings, as its entry points apply them
    main()
