"""Speed settings against our fp32 eager baseline, measured in one run: throughput ratios, then (``--accuracy``)
accuracy after a fixed short schedule over seeds.

    .venv/bin/python benchmarks/speed.py                  # throughput, msdnet_cifar 32×32×3 (≈8 min, compiles included)
    .venv/bin/python benchmarks/speed.py --official ~/MSDNet-PyTorch   # + the official model side by side
    .venv/bin/python benchmarks/speed.py --accuracy       # + fp32 vs fast over 4 seeds on Fashion-MNIST (≈15 min)

``--official`` takes a local clone of https://github.com/kalviny/MSDNet-PyTorch (nothing of it is part of this
repository): its CIFAR-100 model is built from that folder and timed in the same interleaved rounds as ours, so the
ratio ours/official is measured on this machine rather than taken from a table. Without it, the reference figures
of :data:`OFFICIAL` for this CPU kind are used (none for a kind without a measurement of this configuration).

Setting names: anything :meth:`Speed.parse` reads, plus ``fast`` (what :meth:`Speed.fast` picks on this CPU for a
short run: no compile) and ``fast-long`` (the same for a run longer than the compile break-even: with compile).

Throughput: a training step (batch 64, all 5 exits, SGD) and eval (batch 256) of the CIFAR-100 configuration, each
setting timed in interleaved rounds (every round times every setting once, the median of ``--repeats`` steps), so
the machine's drift hits all settings alike (the order rotates from round to round, so no setting always follows the
same one); we report the median img/s and the median per-round ratio to fp32 eager, and the official MSDNet-PyTorch
code's img/s (measured with ``--official``, else :data:`OFFICIAL`) for reference. ``compile`` settings report
their first step (the compile, minus what the inductor cache already holds) separately.

With ``--official`` also (``--only-processes``: only this): ours vs the official model each in **fresh processes**,
as each is run — the lab with its allocator setting (``overthink_lib/malloc.py``, freed memory kept), the official
code with glibc's malloc as it is — and both the other way round, so what the allocator alone does is visible, plus
channels_last training (not a preset setting: ``benchmarks/onednn_nhwc_bug.py``). ``OMP_NUM_THREADS=1 ...
--only-processes`` measures one-thread training, as the ``cpu`` preset's jobs train.

Also: the input pipeline (in-memory uint8 tensor, batch slicing and augmentation as whole-tensor ops) against
per-image PIL transforms through a DataLoader, which is what the official code does.

Results go to ``runs/benchmarks/speed.json`` (with torch version, threads, CPU flags, code version).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import tempfile
import time

# an empty inductor cache, so the first call of a compile setting is what a fresh training run on this machine pays
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="overthink-inductor-"))

import torch

from overthink_lib.config import ROOT, ConfigError, code_version, get_preset
from overthink_lib.dynamic import timed
from overthink_lib.io import atomic_write_bytes
from overthink_lib.models import get_model
from overthink_lib.speed import Speed, compile_break_even, cpu_info, for_inference
from overthink_lib.train import multi_exit_loss

#: The official code's fp32 throughput (train step batch 64 / eval batch 256, 2 threads) per CPU kind, img/s, in the
#: thesis's configuration (lin_grow, step 1, base 1). No AVX2 figure: the one known was of another official
#: configuration (stepmode even, step 2, base 4), not comparable.
OFFICIAL = {"avx512-amx": (150.0, 460.0), "avx512-bf16": (128.4, 407.5)}
TRAIN_SETTINGS = [
    "fp32",
    "fused_sgd",
    "channels_last",
    "bf16",
    "bf16,channels_last,fused_sgd",
    "compile",
    "fused_sgd,compile",
    "fast",
    "fast-long",
]
EVAL_SETTINGS = ["fp32", "fold_bn", "channels_last", "bf16", "bf16,channels_last,fold_bn", "fast", "fast-long"]


def setting(text: str) -> Speed:
    """A benchmark setting name → :class:`Speed` (``fast``/``fast-long``: resolved for this CPU, short/long run)."""
    if text == "fast":
        return Speed.fast()
    if text == "fast-long":
        return Speed.fast(run_seconds=math.inf)
    return Speed.parse(text)


def official_model(path: str) -> torch.nn.Module:
    """The official CIFAR-100 MSDNet built from a local clone of MSDNet-PyTorch (its own argument names)."""
    import contextlib
    import io
    import sys
    import types

    sys.path.insert(0, path)
    try:
        from models.msdnet import MSDNet as Official
    except ImportError as err:
        raise SystemExit(
            f"--official {path}: no models/msdnet.py there ({err}); pass a clone of "
            "https://github.com/kalviny/MSDNet-PyTorch"
        ) from None
    args = types.SimpleNamespace(
        nBlocks=5,
        nChannels=16,
        base=1,
        stepmode="lin_grow",
        step=1,
        growthRate=6,
        grFactor=[1, 2, 4],
        bnFactor=[1, 2, 4],
        bottleneck=True,
        prune="max",
        reduction=0.5,
        nScales=3,
        data="cifar100",
    )
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its architecture
        return Official(args)


def train_step_fn(base: torch.nn.Module, sp: Speed, x: torch.Tensor, y: torch.Tensor):
    model = copy.deepcopy(base).train()
    if sp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, **({"fused": True} if sp.fused_sgd else {})
    )
    net = torch.compile(model) if sp.compile else model
    xb, cpu = sp.batch(x), torch.device("cpu")

    def step():
        with sp.autocast(cpu):
            outs = net(xb)
        loss, _ = multi_exit_loss([o.float() for o in outs], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def eval_step_fn(base: torch.nn.Module, sp: Speed, x: torch.Tensor):
    net = for_inference(base, sp)
    xb, cpu = sp.batch(x), torch.device("cpu")

    def step():
        with torch.inference_mode(), sp.autocast(cpu):
            net(xb)

    return step


def interleaved(steps: dict[str, callable], rounds: int, repeats: int, batch: int) -> dict[str, dict[str, float]]:
    """First call of each (compile time), then ``rounds`` rounds of every setting; img/s and ratio to the first."""
    first = {}
    for name, fn in steps.items():
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
        fn()  # a second warm-up: autotuning and allocator caches settle
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):  # the order rotates each round, so no setting always runs after the same other one
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(steps[name], repeats, warmup=1))
    base = next(iter(steps))
    out = {}
    for name in steps:
        ratios = [tb / t for tb, t in zip(times[base], times[name])]
        out[name] = {
            "img_s": batch / statistics.median(times[name]),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "first_call_s": first[name],
        }
    return out


def pipeline_throughput(n: int = 4096, batch: int = 64) -> dict[str, float]:
    """img/s of our batch iterator (with augmentation) vs torchvision PIL transforms + DataLoader, CIFAR-sized."""
    from overthink_lib.data import ImageSet, iterate

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    ds = ImageSet(
        "bench",
        "train",
        images,
        torch.arange(n) % 100,
        torch.arange(n),
        100,
        (0.5,) * 3,
        (0.25,) * 3,
        {"pad": 4, "flip": True},
        {},
        {},
    )
    ours = timed(lambda: [None for _ in iterate(ds, batch, shuffle=True, augment=True, seed=0)], 3)
    from PIL import Image
    from torchvision import transforms as T

    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    tf = T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.25,) * 3)]
    )

    class PilSet(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return tf(pil[i]), i % 100

    loader = torch.utils.data.DataLoader(PilSet(), batch_size=batch, shuffle=True, num_workers=0)
    theirs = timed(lambda: [None for _ in loader], 3)
    return {"ours_img_s": n / ours, "pil_dataloader_img_s": n / theirs, "ratio": theirs / ours}


def throughput(args) -> dict:
    torch.manual_seed(0)
    base = get_model("msdnet_cifar", num_classes=100)
    base.train()
    with torch.no_grad():  # BatchNorm statistics as after some training (folding then has real work to do)
        for _ in range(3):
            base(torch.randn(64, 3, 32, 32))
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 100, (64,))
    xe = torch.randn(256, 3, 32, 32)
    cpu = cpu_info()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu.describe()}, native bf16: "
        f"{cpu.native_bf16}; fast here = {Speed.fast().describe()}, for long runs {setting('fast-long').describe()}"
        f"; {args.rounds} interleaved rounds × median of {args.repeats} steps",
        flush=True,
    )
    print("compiling and warming up (the first call of a compile setting is its compile time) ...", flush=True)
    train_steps = {s: train_step_fn(base, setting(s), x, y) for s in args.train}
    eval_steps = {s: eval_step_fn(base, setting(s), xe) for s in args.eval}
    if args.official:  # the official model in the same rounds, fp32 eager, same loss and optimiser
        off = official_model(args.official)
        train_steps["official fp32 eager"] = train_step_fn(off, Speed(), x, y)
        eval_steps["official fp32 eager"] = eval_step_fn(off, Speed(), xe)
    train = interleaved(train_steps, args.rounds, args.repeats, 64)
    ev = interleaved(eval_steps, args.rounds, args.repeats, 256)
    ref = OFFICIAL.get(cpu.kind)
    for title, res, k in (("training step, batch 64", train, 0), ("eval, batch 256", ev, 1)):
        measured = res.get("official fp32 eager")
        official = measured["img_s"] if measured else (ref[k] if ref else float("nan"))
        print(f"\n{title:40s} {'img/s':>8} {'× fp32':>7} {'(min–max)':>12} {'× official':>10} {'1st call s':>10}")
        for name, r in res.items():
            # measured side by side: the median of per-round ratios; else against the table for this CPU kind
            ratio_off = r["ratio"] / measured["ratio"] if measured else r["img_s"] / official
            r["x_official"] = ratio_off
            print(
                f"{name:40s} {r['img_s']:8.1f} {r['ratio']:6.2f}× {r['ratio_min']:5.2f}–{r['ratio_max']:<5.2f} "
                f"{ratio_off:9.2f}× {r['first_call_s']:10.1f}"
            )
        print(
            f"(× official: {'measured in the same rounds' if measured else f'against {official:.0f} img/s, the table for {cpu.kind}'})"
        )
    # what compile costs and gains on this CPU: the break-even that Speed.fast uses (overthink_lib.speed.COMPILE)
    compile_cost = {}
    if "fused_sgd" in train and "fused_sgd,compile" in train:
        gain = train["fused_sgd,compile"]["ratio"] / train["fused_sgd"]["ratio"]
        # the first compile in the process pays it all (later settings share its in-memory graph cache)
        cost = max(r["first_call_s"] for name, r in train.items() if "compile" in name or name == "fast-long")
        even = cost / (1 - 1 / gain) if gain > 1 else math.inf
        print(
            f"\ncompile on {cpu.kind}: first step {cost:.0f} s, gain ×{gain:.2f} over eager (fused SGD both): "
            f"repays after {even:.0f} s of eager training (the library's table says "
            f"{compile_break_even(cpu):.0f} s)"
        )
        compile_cost = {"cpu_kind": cpu.kind, "cost_s": cost, "gain": gain, "break_even_s": even}
    pipe = pipeline_throughput()
    print(
        f"\ninput pipeline (CIFAR-sized, crop+flip, batch 64): ours {pipe['ours_img_s']:,.0f} img/s, PIL transforms "
        f"+ DataLoader {pipe['pil_dataloader_img_s']:,.0f} img/s ({pipe['ratio']:.0f}× faster)"
    )
    return {"train": train, "eval": ev, "pipeline": pipe, "compile": compile_cost}


#: Fresh processes of the process comparison: (name, model, OVERTHINK_MALLOC, speed). The official code's users run it
#: with glibc's malloc as it is; the lab keeps freed memory (overthink_lib/malloc.py) unless told otherwise. Every preset
#: trains NCHW (channels_last only as a measured alternative: benchmarks/onednn_nhwc_bug.py).
PROCESS_ARMS = (
    ("ours, lab default", "ours", "keep", "fp32"),
    ("official, as its users run it", "official", "default", "fp32"),
    ("ours + channels_last training", "ours", "keep", "channels_last"),
    ("ours, glibc malloc as it is", "ours", "default", "fp32"),
    ("official, memory kept", "official", "keep", "fp32"),
)


def worker(args) -> None:
    """One fresh process of :func:`processes`: warm up, then the median training step and eval; one JSON line."""
    from overthink_lib import malloc

    malloc.apply_process_settings()
    torch.manual_seed(0)
    base = official_model(args.official) if args.worker == "official" else get_model("msdnet_cifar", num_classes=100)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 100, (64,))
    sp = Speed.parse(args.worker_speed)
    train = timed(train_step_fn(base, sp, x, y), args.repeats * 2, warmup=3)
    ev = timed(eval_step_fn(base, sp, torch.randn(256, 3, 32, 32)), args.repeats, warmup=2)
    print(
        json.dumps(
            {
                "train_img_s": 64 / train,
                "eval_img_s": 256 / ev,
                "malloc": malloc.state(),
                "threads": torch.get_num_threads(),
            }
        )
    )


def processes(args) -> dict:
    """Ours vs the official code each in fresh processes, as each is run: the lab's default (memory kept) against
    glibc's malloc as it is, and both the other way round to show what the allocator alone does. Rounds alternate
    the arms (rotating order); ratios are per round, so the machine's drift hits every arm alike. The number of
    threads is this process's (``OMP_NUM_THREADS=1`` for the one-thread training of the ``cpu`` preset)."""
    import subprocess
    import sys

    print(
        f"\nfresh processes ({args.process_rounds} rounds, {torch.get_num_threads()} threads): ours vs official "
        f"fp32 eager, each as it is run",
        flush=True,
    )
    res = {name: [] for name, *_ in PROCESS_ARMS}
    for r in range(args.process_rounds):
        arms = PROCESS_ARMS[r % len(PROCESS_ARMS) :] + PROCESS_ARMS[: r % len(PROCESS_ARMS)]
        for name, model, mall, sp in arms:
            env = {**os.environ, "OVERTHINK_MALLOC": mall, "OMP_NUM_THREADS": str(torch.get_num_threads())}
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    model,
                    "--official",
                    args.official,
                    "--repeats",
                    str(args.repeats),
                    "--worker-speed",
                    sp,
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise SystemExit(f"process {name!r} failed:\n{out.stderr[-2000:]}")
            one = json.loads(out.stdout.strip().splitlines()[-1])
            if mall == "default" and one["malloc"] != "default":
                raise SystemExit(f"process {name!r}: OVERTHINK_MALLOC=default was not honoured ({one})")
            res[name].append(one)
            print(
                f"  round {r + 1} {name:32s} train {one['train_img_s']:6.1f} eval {one['eval_img_s']:6.1f} img/s "
                f"(malloc {one['malloc']})",
                flush=True,
            )
    ref = res[PROCESS_ARMS[1][0]]
    out = {}
    print(
        f"\n{'fresh processes':32s} {'train img/s':>11} {'× official':>10} {'(min–max)':>11} {'eval img/s':>10} "
        f"{'× official':>10} {'(min–max)':>11}"
    )
    for name, runs in res.items():
        row = {}
        for k in ("train", "eval"):
            ratios = [a[f"{k}_img_s"] / b[f"{k}_img_s"] for a, b in zip(runs, ref)]
            row[k] = {
                "img_s": statistics.median(a[f"{k}_img_s"] for a in runs),
                "x_official": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
            }
        out[name] = {**row, "malloc": runs[0]["malloc"]}
        print(
            f"{name:32s} "
            + " ".join(
                f"{row[k]['img_s']:11.1f} {row[k]['x_official']:9.2f}× {row[k]['min']:5.2f}–{row[k]['max']:<5.2f}"
                for k in ("train", "eval")
            )
        )
    return out


def accuracy(args) -> dict:
    import pandas as pd

    from overthink_lib.analysis.stats import t_interval
    from overthink_lib.experiments.speed_equivalence import speed_equivalence

    preset = get_preset(args.preset)
    fast = setting(args.fast)
    print(
        f"\naccuracy: {args.seeds} seeds × (fp32, {fast.describe()}), {preset.datasets[0]}, {preset.stochasticity.train} training "
        f"images, {preset.stochasticity.epochs} epochs, whole test set (runs cached in {preset.run_dir}/models)",
        flush=True,
    )
    df = speed_equivalence(preset, fast, args.seeds)
    acc_cols = [c for c in df.columns if c.startswith("acc_") and c != "acc_mean"]
    shown = [acc_cols[-1], "acc_mean", "overthought"]
    ref = df[(df["train"] == "fp32 eager")].set_index("seed")
    out = {"runs": df.to_dict("records"), "arms": {}}
    pd.set_option("display.width", 160)
    print(df.round(4).to_string(index=False))
    print(f"\n{'arm (train / eval)':44s} " + "   ".join(f"{c:^40s}" for c in shown))
    for (tr, evn), g in df.groupby(["train", "eval"], sort=False):
        g = g.set_index("seed")
        row = {}
        for c in [*shown, "train_seconds"]:
            row[c] = t_interval(g[c])
            if tr != "fp32 eager":
                row[c + "_diff"] = t_interval(g[c] - ref[c])
        out["arms"][f"{tr} / {evn}"] = row
        cells = []
        for c in shown:
            m, lo, hi = row[c]
            cell = f"{m * 100:6.2f} [{lo * 100:.2f}, {hi * 100:.2f}]"
            if tr != "fp32 eager":
                d, dlo, dhi = row[c + "_diff"]
                cell += f" Δ {d * 100:+.2f} [{dlo * 100:+.2f}, {dhi * 100:+.2f}]"
            cells.append(cell)
        print(f"{tr + ' / ' + evn:44s} " + "   ".join(f"{c:40s}" for c in cells))
    sd = float(ref[acc_cols[-1]].std(ddof=1))
    print(
        f"seed-to-seed std of fp32 final-exit accuracy: {sd * 100:.2f} points; Δ = paired difference to fp32 "
        "(same seeds), 95 % t-interval over seeds"
    )
    out["fp32_seed_std"] = sd
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train", nargs="+", default=TRAIN_SETTINGS, help="training settings; the first is the baseline")
    ap.add_argument("--eval", nargs="+", default=EVAL_SETTINGS, help="eval settings; the first is the baseline")
    ap.add_argument("--accuracy", action="store_true", help="also run the seeded accuracy check")
    ap.add_argument("--only-accuracy", action="store_true", help="only the accuracy check")
    ap.add_argument("--preset", default="cpu", help="preset of the accuracy check (default cpu)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--fast", default="fast", help="the settings the accuracy check compares with fp32")
    ap.add_argument("--official", metavar="PATH", help="a local clone of kalviny/MSDNet-PyTorch to time side by side")
    ap.add_argument(
        "--process-rounds",
        type=int,
        default=5,
        help="with --official: rounds of ours vs official in fresh processes (0: none)",
    )
    ap.add_argument("--only-processes", action="store_true", help="with --official: only the fresh-process comparison")
    ap.add_argument("--worker", choices=("ours", "official"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-speed", default="fp32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.only_processes and not args.official:
        ap.error("--only-processes needs --official PATH (a clone of kalviny/MSDNet-PyTorch)")
    if args.seeds < 2 or args.rounds < 1 or args.repeats < 1:
        ap.error("--seeds needs at least 2 (an interval over seeds), --rounds and --repeats at least 1")
    try:  # a bad setting name fails here, in one line, before any timing
        for text in [args.fast, *args.train, *args.eval]:
            setting(text)
    except ConfigError as err:
        ap.error(str(err))
    cpu = cpu_info()
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu.model,
        "cpu_kind": cpu.kind,
        "bf16_units": cpu.native_bf16,
        "code_version": code_version(),
        "args": vars(args),
        "official_table": OFFICIAL.get(cpu.kind),
    }
    if not (args.only_accuracy or args.only_processes):
        result["throughput"] = throughput(args)
    if args.official and args.process_rounds > 0 and not args.only_accuracy:
        result["processes"] = processes(args)
    if args.accuracy or args.only_accuracy:
        result["accuracy"] = accuracy(args)
    path = (
        ROOT
        / "runs"
        / "benchmarks"
        / (
            "speed-accuracy.json"
            if args.only_accuracy
            else "speed-processes.json"
            if args.only_processes
            else "speed.json"
        )
    )
    atomic_write_bytes(path, json.dumps(result, indent=1, default=str).encode())
    print(f"\nwrote {path}")


if __name__ == "__main__":
    from overthink_lib.malloc import apply_process_settings

    apply_process_settings()  # the lab's process settings, as its entry points apply them
    main()
