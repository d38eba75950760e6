"""Speed settings against our fp32 eager baseline, measured in one run: throughput ratios, then (``--accuracy``)
accuracy after a fixed short schedule over seeds.

    .venv/bin/python benchmarks/speed.py                  # throughput, msdnet_cifar 32×32×3 (≈8 min, compiles included)
    .venv/bin/python benchmarks/speed.py --accuracy       # + fp32 vs fast over 4 seeds on Fashion-MNIST (≈15 min)

Throughput: a training step (batch 64, all 5 exits, SGD) and eval (batch 256) of the CIFAR-100 configuration, each
setting timed in interleaved rounds (every round times every setting once, the median of ``--repeats`` steps), so
the machine's drift hits all settings alike; we report the median img/s and the median per-round ratio to fp32 eager,
and the official MSDNet-PyTorch code's ≈150 / ≈460 img/s on the same machine (SPEC §1) for reference. ``compile``
settings report their first step (the compile, minus what the inductor cache already holds) separately.

Also: the input pipeline (in-memory uint8 tensor, batch slicing and augmentation as whole-tensor ops) against
per-image PIL transforms through a DataLoader, which is what the official code does.

Results go to ``runs/benchmarks/speed.json`` (with torch version, threads, CPU flags, code version).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time

import torch

from overthink_lib.config import ROOT, ConfigError, atomic_write_bytes, code_version, get_preset
from overthink_lib.dynamic import timed
from overthink_lib.models import get_model
from overthink_lib.speed import Speed, cpu_has_bf16, for_inference
from overthink_lib.train import multi_exit_loss

OFFICIAL_TRAIN, OFFICIAL_EVAL = 150.0, 460.0
TRAIN_SETTINGS = ["fp32", "fused_sgd", "channels_last", "bf16", "bf16,fused_sgd", "compile",
                  "bf16,channels_last,compile,fused_sgd"]
EVAL_SETTINGS = ["fp32", "fold_bn", "channels_last", "bf16", "bf16,channels_last,fold_bn",
                 "bf16,channels_last,fold_bn,compile"]


def train_step_fn(base: torch.nn.Module, sp: Speed, x: torch.Tensor, y: torch.Tensor):
    model = copy.deepcopy(base).train()
    if sp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4,
                          **({"fused": True} if sp.fused_sgd else {}))
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
    for _ in range(rounds):
        for name, fn in steps.items():
            times[name].append(timed(fn, repeats, warmup=1))
    base = next(iter(steps))
    out = {}
    for name in steps:
        ratios = [tb / t for tb, t in zip(times[base], times[name])]
        out[name] = {"img_s": batch / statistics.median(times[name]), "ratio": statistics.median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios), "first_call_s": first[name]}
    return out


def pipeline_throughput(n: int = 4096, batch: int = 64) -> dict[str, float]:
    """img/s of our batch iterator (with augmentation) vs torchvision PIL transforms + DataLoader, CIFAR-sized."""
    from overthink_lib.data import ImageSet, iterate

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    ds = ImageSet("bench", "train", images, torch.arange(n) % 100, torch.arange(n), 100, (0.5,) * 3, (0.25,) * 3,
                  {"pad": 4, "flip": True}, {}, {})
    ours = timed(lambda: [None for _ in iterate(ds, batch, shuffle=True, augment=True, seed=0)], 3)
    from PIL import Image
    from torchvision import transforms as T

    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3,
                                                                                                    (0.25,) * 3)])

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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          f", bf16 units: {cpu_has_bf16()}; {args.rounds} interleaved rounds × median of {args.repeats} steps",
          flush=True)
    print("compiling and warming up (the first call of a compile setting is its compile time) ...", flush=True)
    train = interleaved({s: train_step_fn(base, Speed.parse(s), x, y) for s in args.train}, args.rounds,
                        args.repeats, 64)
    ev = interleaved({s: eval_step_fn(base, Speed.parse(s), xe) for s in args.eval}, args.rounds, args.repeats, 256)
    print(f"\n{'training step, batch 64':40s} {'img/s':>8} {'× fp32':>7} {'(min–max)':>12} {'× official':>10} "
          f"{'1st step s':>10}")
    for name, r in train.items():
        print(f"{name:40s} {r['img_s']:8.1f} {r['ratio']:6.2f}× {r['ratio_min']:5.2f}–{r['ratio_max']:<5.2f} "
              f"{r['img_s'] / OFFICIAL_TRAIN:9.2f}× {r['first_call_s']:10.1f}")
    print(f"\n{'eval, batch 256':40s} {'img/s':>8} {'× fp32':>7} {'(min–max)':>12} {'× official':>10} "
          f"{'1st call s':>10}")
    for name, r in ev.items():
        print(f"{name:40s} {r['img_s']:8.1f} {r['ratio']:6.2f}× {r['ratio_min']:5.2f}–{r['ratio_max']:<5.2f} "
              f"{r['img_s'] / OFFICIAL_EVAL:9.2f}× {r['first_call_s']:10.1f}")
    pipe = pipeline_throughput()
    print(f"\ninput pipeline (CIFAR-sized, crop+flip, batch 64): ours {pipe['ours_img_s']:,.0f} img/s, PIL transforms "
          f"+ DataLoader {pipe['pil_dataloader_img_s']:,.0f} img/s ({pipe['ratio']:.0f}× faster)")
    return {"train": train, "eval": ev, "pipeline": pipe}


def accuracy(args) -> dict:
    import pandas as pd

    from overthink_lib.experiment import speed_equivalence
    from overthink_lib.stats import t_interval

    P = get_preset(args.preset)
    fast = Speed.parse(args.fast)
    print(f"\naccuracy: {args.seeds} seeds × (fp32, {fast.describe()}), {P.datasets[0]}, {P.stoch_train} training "
          f"images, {P.stoch_epochs} epochs, whole test set (runs cached in {P.run_dir}/models)", flush=True)
    df = speed_equivalence(P, fast, args.seeds)
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
        for c in shown + ["train_seconds"]:
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
    print(f"seed-to-seed std of fp32 final-exit accuracy: {sd * 100:.2f} points; Δ = paired difference to fp32 "
          "(same seeds), 95 % t-interval over seeds")
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
    args = ap.parse_args()
    if args.seeds < 2 or args.rounds < 1 or args.repeats < 1:
        ap.error("--seeds needs at least 2 (an interval over seeds), --rounds and --repeats at least 1")
    try:  # a bad setting name fails here, in one line, before any timing
        for text in [args.fast, *args.train, *args.eval]:
            Speed.parse(text)
    except ConfigError as err:
        ap.error(str(err))
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "bf16_units": cpu_has_bf16(),
              "code_version": code_version(), "args": vars(args), "official": [OFFICIAL_TRAIN, OFFICIAL_EVAL]}
    if not args.only_accuracy:
        result["throughput"] = throughput(args)
    if args.accuracy or args.only_accuracy:
        result["accuracy"] = accuracy(args)
    path = ROOT / "runs" / "benchmarks" / ("speed-accuracy.json" if args.only_accuracy else "speed.json")
    atomic_write_bytes(path, json.dumps(result, indent=1, default=str).encode())
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
