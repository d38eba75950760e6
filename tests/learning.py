"""A smoke-sized training that learns: the training regression across machines (tests/test_learning.py).

The smoke preset's networks do not learn (one epoch on 240 images: the final exit near chance), so their numbers
say nothing across CPU kinds: one kind moves them by 7 points. This network does learn, in seconds: a small MSDNet
(the lab's own ``msdnet_cifar``, narrow) trained with the lab's ``fit`` on 3,000 real Fashion-MNIST training images
for 3 epochs on one thread, evaluated on 1,000 test images. Its accuracy is checked against an interval measured
over seeds and CPU kinds (``python tests/learning.py --measure``, kept in ``tests/reference/learning.json``), and,
where the kernels are the same as on a recorded kind, its weights bit for bit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from overthink_lib.config import ROOT
from overthink_lib.io import atomic_write_bytes

REFERENCE = ROOT / "tests" / "reference" / "learning.json"
NET = dict(n_blocks=4, step_mode="even", step=1, base=1, channels=8, growth=4, head_channels=16)
N_TRAIN, N_TEST, EPOCHS, THREADS = 3000, 1000, 3, 1


def train(seed: int = 0, out_dir: Path | None = None) -> dict:
    """Train the network with ``seed`` (init and data order) and return its per-exit test accuracy, its final-exit
    accuracy and the hash of its weights."""
    import tempfile

    from overthink_lib.data import get_dataset
    from overthink_lib.recording import make_record
    from overthink_lib.train import TrainConfig, build_model, fit, state_hash

    train_set = get_dataset("fashion_mnist", "train").subset(torch.arange(N_TRAIN))
    test_set = get_dataset("fashion_mnist", "test").subset(torch.arange(N_TEST))
    spec = {"name": "msdnet_cifar", "kwargs": {"num_classes": 10, "in_channels": 1, **NET}}
    cfg = TrainConfig(
        epochs=EPOCHS, batch_size=64, lr=0.1, schedule="onecycle", init_seed=seed, data_seed=seed, threads=THREADS
    )
    model = build_model(spec, cfg.init_seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, train_set, None, cfg, out_dir=Path(out_dir or tmp), progress=False)
    seconds = time.perf_counter() - t0
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        rec = make_record(model.eval(), test_set, batch_size=500)
    finally:
        torch.set_num_threads(before)
    acc = rec.accuracy().tolist()
    return {
        "seed": seed,
        "exit_accuracy": acc,
        "final_accuracy": acc[-1],
        "weights": state_hash(model),
        "seconds": round(seconds, 1),
    }


def kind() -> dict:
    """What selects this machine's kernels for the training (:func:`overthink_lib.speed.numerics`, its threads)."""
    from overthink_lib.speed import numerics

    return {**numerics(), "threads": THREADS}


def interval(values: list[float], level: float = 0.999) -> tuple[float, float]:
    """Two-sided ``level`` prediction interval for one more run: mean ± t·s·√(1 + 1/n) over the measured runs
    (seeds and CPU kinds pooled: on a new kind the training diverges from every recorded one like a new seed)."""
    from scipy.stats import t

    n = len(values)
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    h = t.ppf(0.5 + level / 2, n - 1) * s * math.sqrt(1 + 1 / n)
    return m - h, m + h


def measure(seeds: int, label: str) -> None:
    """Train ``seeds`` seeds here and add them, under this machine's kind and ``label``, to the reference."""
    ref = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {"runs": [], "exact": []}
    here = kind()
    runs = [r for r in ref["runs"] if r["kind"] != here]
    exact = [e for e in ref["exact"] if e["kind"] != here]
    for seed in range(seeds):
        r = train(seed)
        print(f"{label}: seed {seed}: final exit {r['final_accuracy']:.3f} ({r['seconds']} s)", flush=True)
        runs.append({"label": label, "kind": here, **r})
        if seed == 0:
            exact.append({"label": label, "kind": here, **r})
    write(runs, exact)


def write(runs: list[dict], exact: list[dict]) -> None:
    """The reference from the measured runs: the interval over distinct networks, the exact entries per kind."""
    # a kind whose kernels train the same weights as another's adds no spread: each distinct network counts once
    distinct = {r["weights"]: r["final_accuracy"] for r in runs}
    finals = list(distinct.values())
    lo, hi = interval(finals)
    ref = {
        "what": "final-exit test accuracy of tests/learning.py's network, seed 0 checked against the interval; "
        "exact: seed 0's numbers per kernel kind (tests/test_learning.py)",
        "how": "python tests/learning.py --measure --label NAME (on each CPU kind; emulate one with "
        "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2)",
        "interval": [lo, hi],
        "level": 0.999,
        "distinct_networks": len(finals),
        "runs": runs,
        "exact": exact,
    }
    atomic_write_bytes(REFERENCE, (json.dumps(ref, indent=1) + "\n").encode())
    print(
        f"{len(runs)} runs, {len(finals)} distinct networks: mean {sum(finals) / len(finals):.4f}, "
        f"interval [{lo:.4f}, {hi:.4f}] → {REFERENCE}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--label", default="this machine")
    ap.add_argument("--summarize", action="store_true", help="recompute the interval from the runs kept")
    args = ap.parse_args()
    if args.summarize:
        ref = json.loads(REFERENCE.read_text())
        write(ref["runs"], ref["exact"])
    elif args.measure:
        measure(args.seeds, args.label)
    else:
        print(json.dumps(train(0), indent=1))
    sys.exit(0)
