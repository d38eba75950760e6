"""Real early exit vs the simulated FLOPs saving, on the cpu preset's trained MSDNet (trained first if needed).

    .venv/bin/python benchmarks/early_exit.py [--preset cpu] [--batch 256] [--repeats 3] [--speed fp32]

For thresholds along the budgeted-batch curve (thesis Algorithm 1 on the validation record) it times real early-exit
inference over the whole test set (exited samples stop computing) against the full network (every exit computed: what
the simulated evaluation pays), and prints per point: FLOPs saved by the exits taken, measured wall-clock saving, and
their ratio. Then batch size 1: median latency of running the network up to each exit (anytime). ``--speed`` runs
both sides with inference settings (e.g. ``bf16,channels_last,fold_bn``). Notebook 10 plots the same on a subset.
"""

from __future__ import annotations

import argparse

import torch

from overthink_lib.config import ConfigError, get_preset
from overthink_lib.data import iterate
from overthink_lib.dynamic import latency_per_exit, time_vs_flops
from overthink_lib.experiments.main import main_experiment
from overthink_lib.speed import Speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--speed", default="fp32", help="inference settings: fp32, fast or a subset (bf16,fold_bn,...)")
    args = ap.parse_args()
    try:
        sp = Speed.parse(args.speed).resolve()  # fast: what pays on this CPU
    except ConfigError as err:
        ap.error(str(err))
    preset = get_preset(args.preset)
    exp = main_experiment(preset, progress=True)
    model, test_set = exp.model.eval(), exp.splits["test"]
    val, test = exp.records["val"], exp.records["test"]
    table = time_vs_flops(
        model,
        test_set,
        val,
        test,
        ps=[1, 3, 5, 8, 10, 13, 17, 20, 25, 30],
        batch_size=args.batch,
        repeats=args.repeats,
        speed=sp,
    )
    t_full = table["time_full_s"].iloc[0]
    print(
        f"{len(test_set)} test images, batch {args.batch}, {torch.get_num_threads()} threads, {sp.describe()}; "
        f"full network {t_full:.2f} s ({len(test_set) / t_full:.0f} img/s)"
    )
    print(
        f"{'p':>3} {'acc %':>6} {'MFLOPs':>7} {'FLOPs saved':>11} {'time saved':>10} {'ratio':>6} {'img/s':>7} "
        f"{'= simulated':>11}"
    )
    for r in table.itertuples():
        print(
            f"{r.p:>3} {r.test_acc * 100:6.2f} {r.mflops:7.2f} {r.flops_saved * 100:10.1f}% {r.time_saved * 100:9.1f}% "
            f"{r.ratio:6.2f} {r.img_s:7.0f} {r.same_as_simulated * 100:10.2f}%"
        )
    x1 = next(iter(iterate(test_set, 1)))[0]
    lat = latency_per_exit(model, x1, 50, speed=sp)
    full_flops = float(test.flops[-1])
    print(
        "batch 1, latency up to exit k (ms): "
        + ", ".join(f"{k + 1}: {v * 1e3:.2f}" for k, v in enumerate(lat))
        + "; FLOPs share: "
        + ", ".join(f"{f / full_flops * 100:.0f}%" for f in test.flops.tolist())
    )


if __name__ == "__main__":
    from overthink_lib.malloc import apply_process_settings

    apply_process_settings()  # the lab's process settings, as its entry points apply them
    main()
