"""The CUDA path, checked, and the GPU timings of the ``paper`` preset's network (run where a GPU is; never a test).

    python benchmarks/cuda_check.py [--data DIR] [--out FILE]

1. **The pipeline on CUDA beside the same on CPU.** The ``smoke`` preset's settings with a tenth of Fashion-MNIST's
   training images: the main MSDNet trained once on the CPU and once on the GPU (same seeds), its per-exit test
   accuracy and overthinking share side by side; then on the GPU only, the library calls every notebook makes —
   the IMTA protocol (07), the Max-Min M (06/08), the policy network and its control (08), GradCAM (05), real early
   exit and per-exit latency (10) — each timed. A GPU run is not bit-identical to a CPU run (other kernels, bf16
   autocast in training), so the check is that the numbers agree to within the spread of one seed, not exactly.
2. **fp32 logits, CPU vs CUDA** of one network (TF32 off): the largest absolute difference.
3. **The paper preset's MSDNet** (CIFAR-100 configuration, 32×32×3, batch 64): training and eval img/s under fp32,
   bf16 autocast (``TrainConfig.amp``, off by default since this check) and bf16 + channels_last, compile, then one real epoch of
   :func:`~overthink_lib.train.fit` (40,000 images, validation included) → the projected 200-epoch time. CIFAR-100 is
   written as random images in the official python-pickle format (no internet on such machines): only the timings
   mean anything there.

Results go to ``--out`` (default ``runs/benchmarks/cuda_check.json``) with torch version, GPU name and code version.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data", default=None, help="data folder with FashionMNIST/raw (default: the lab's)")
ap.add_argument("--out", default=None, help="default runs/benchmarks/cuda_check.json")
ap.add_argument("--fraction", type=float, default=0.1, help="share of Fashion-MNIST in part 1 (default 0.1)")
ap.add_argument("--steps", type=int, default=150, help="timed steps per setting in part 3 (default 150)")
ap.add_argument("--skip", default="", help="comma-separated parts to skip (pipeline, logits, paper, compile)")
ap.add_argument("--fit-images", type=int, default=0, help="training images of part 3's real epoch (default all)")
ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to try the script itself on a CPU machine")
args = ap.parse_args()
if args.data:
    os.environ["OVERTHINK_DATA"] = str(Path(args.data).resolve())

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from overthink_lib import cams, dynamic  # noqa: E402
from overthink_lib.analysis import overthinking  # noqa: E402
from overthink_lib.config import ROOT, code_version, get_preset  # noqa: E402
from overthink_lib.data import get_dataset  # noqa: E402
from overthink_lib.data.checksums import mark_made_up  # noqa: E402
from overthink_lib.data.sources import DATA_ROOT  # noqa: E402
from overthink_lib.experiments.imta import imta_protocol  # noqa: E402
from overthink_lib.experiments.main import main_experiment  # noqa: E402
from overthink_lib.experiments.maxmin import maxmin_experiment  # noqa: E402
from overthink_lib.experiments.policy import policy_experiment  # noqa: E402
from overthink_lib.experiments.runs import model_spec, train_config  # noqa: E402
from overthink_lib.io import atomic_write_bytes  # noqa: E402
from overthink_lib.models import model_from_spec  # noqa: E402
from overthink_lib.train import fit, predict  # noqa: E402

if args.device == "cuda" and not torch.cuda.is_available():
    sys.exit("error: no CUDA device is visible; run this on a machine with a GPU (or --device cpu to try the script)")
skip = {s for s in args.skip.split(",") if s}
out_path = Path(args.out) if args.out else ROOT / "runs" / "benchmarks" / "cuda_check.json"
dev = torch.device(args.device)
GPU = dev.type == "cuda"
report: dict = {
    "torch": torch.__version__,
    "gpu": torch.cuda.get_device_name(0) if GPU else "none (cpu try-out)",
    "code_version": code_version(),
    "cpu_threads": torch.get_num_threads(),
    "args": vars(args),
}
print(f"{report['gpu']}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads", flush=True)


def sync():
    if GPU:
        torch.cuda.synchronize()


def clock(fn):
    sync()
    t0 = time.perf_counter()
    value = fn()
    sync()
    return value, time.perf_counter() - t0


def save():
    atomic_write_bytes(out_path, json.dumps(report, indent=1, default=str).encode())


# ------------------------------------------------------------------ 1. the pipeline, CPU beside CUDA
if "pipeline" not in skip:
    base = get_preset("smoke").with_parts(data={"fraction": args.fraction})
    side = {}
    for device in ("cpu", args.device):
        preset = base.with_parts(name=f"cudacheck-{device}", training={"device": device})
        exp, secs = clock(lambda: main_experiment(preset, progress=False))
        rec = exp.records["test"]
        acc = [round(100 * float(a), 2) for a in rec.correct.float().mean(0)]
        side[device] = {
            "train_and_record_s": round(secs, 1),
            "test_acc_per_exit": acc,
            "overthought_pct": round(100 * float(overthinking.overthought(rec).float().mean()), 2),
            "param_device": str(next(exp.model.parameters()).device),
        }
        print(
            f"main MSDNet on {device}: {secs:.1f} s, test accuracy per exit {acc}, overthought "
            f"{side[device]['overthought_pct']} %",
            flush=True,
        )
    gap = max(abs(a - b) for a, b in zip(side["cpu"]["test_acc_per_exit"], side[args.device]["test_acc_per_exit"]))
    side["largest_exit_accuracy_gap_pts"] = round(gap, 2)
    report["pipeline"] = {"cpu_vs_cuda": side}
    save()

    Pc = base.with_parts(name=f"cudacheck-{args.device}", training={"device": args.device})
    steps = {}
    main = main_experiment(Pc)
    assert next(main.model.parameters()).device.type == dev.type, "the main model is not on the GPU"
    prot, steps["imta_protocol_s"] = clock(lambda: imta_protocol(Pc, progress=False))
    steps["imta_test_overthought_pct"] = {
        arm: round(100 * float(overthinking.overthought(r["test"]).float().mean()), 2)
        for arm, r in prot.records.items()
    }
    mm, steps["maxmin_M_s"] = clock(lambda: maxmin_experiment(Pc, progress=False))
    steps["maxmin_test_acc_last_exit"] = round(100 * float(mm.records["test"].correct[:, -1].float().mean()), 2)
    pol, steps["policy_s"] = clock(
        lambda: policy_experiment(
            Pc, mm.records["val"], mm.records["test"], mm.splits, "score", 5.0, progress=False, n_boot=200
        )
    )
    steps["policy_balanced_accuracy"] = pol.policy.get("balanced_accuracy")
    # the validation record was built from the logits fit kept (run/predictions); beside a fresh pass on the GPU
    from overthink_lib.recording import make_record

    fresh = make_record(main.model, main.splits["val"], batch_size=Pc.training.eval_batch_size)
    kept = main.records["val"]
    steps["val_record_from_kept_logits"] = {
        "kept_files": sorted(p.name for p in (main.run / "predictions").glob("*.pt")),
        "max_abs_diff_vs_fresh": float((kept.logits - fresh.logits).abs().max()),
        "argmax_agree_pct": round(100 * float((kept.logits.argmax(-1) == fresh.logits.argmax(-1)).float().mean()), 3),
    }
    from overthink_lib.data import normalize

    xb = normalize(main.splits["test"], main.splits["test"].images[:16]).to(dev)
    cam_out, steps["gradcam_16_images_s"] = clock(lambda: cams.exit_cams(main.model, xb))
    steps["gradcam_shape"] = list(np.asarray(cam_out.cams).shape)
    thr = [0.9] * (main.model.num_exits - 1) + [0.0]
    ee, steps["early_exit_16_images_s"] = clock(lambda: dynamic.early_exit(main.model, xb, thr))
    steps["early_exit_exits"] = ee["exits"].tolist()
    steps["latency_per_exit_ms"] = [round(1000 * s, 3) for s in dynamic.latency_per_exit(main.model, xb[:1], 20)]
    report["pipeline"]["cuda_steps"] = steps
    print(f"on {args.device}:", json.dumps(steps, default=str), flush=True)
    save()

# ------------------------------------------------------------------ 2. fp32 logits, CPU vs CUDA
if "logits" not in skip:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if "pipeline" not in skip:  # the trained main network and real test images
        import copy

        m = copy.deepcopy(main.model).cpu().eval()
        xs = normalize(main.splits["test"], main.splits["test"].images[:256])
    else:
        torch.manual_seed(0)
        m = model_from_spec({"name": "msdnet_cifar", "kwargs": {"num_classes": 100, "in_channels": 3}}).eval()
        xs = torch.randn(256, 3, 32, 32)
    with torch.no_grad():
        a = torch.stack(list(m(xs)))
        b = torch.stack(list(m.to(dev)(xs.to(dev)))).cpu()
    diff = float((a - b).abs().max())
    agree = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    report["logits_fp32"] = {"max_abs_diff": diff, "max_abs_logit": float(a.abs().max()), "argmax_agreement": agree}
    print(
        f"fp32 logits CPU vs CUDA: max |diff| {diff:.2e} (max |logit| {float(a.abs().max()):.2f}), argmax agree "
        f"{100 * agree:.2f} %",
        flush=True,
    )
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    save()

# ------------------------------------------------------------------ 3. the paper preset's network
if "paper" not in skip:
    # the real CIFAR-100 when it is there; else random pixels in its format in a temporary folder, marked as made
    # up (timings only) -- never in the data folder, where a later run would take them for the dataset
    preset = get_preset("paper")
    root = DATA_ROOT
    if not (DATA_ROOT / "cifar-100-python" / "train").exists():
        root = Path(tempfile.mkdtemp(prefix="cudacheck-cifar100-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        folder = root / "cifar-100-python"
        print(f"no CIFAR-100 in {DATA_ROOT}: random pixels in its format in {folder} (timings only)", flush=True)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for split, n in (("train", 50000), ("test", 10000)):
            entry = {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"fine_labels": rng.integers(0, 100, n).tolist(),
                b"coarse_labels": [0] * n,
            }
            with open(folder / split, "wb") as fh:
                pickle.dump(entry, fh)
        mark_made_up(folder, "benchmarks/cuda_check.py: timings only")
    splits = {
        s: get_dataset("cifar100", s, root=root, download=False, val_fraction=preset.data.val_fraction, split_seed=0)
        for s in ("train", "val", "test")
    }
    if args.fit_images:
        splits = {k: v.subset(np.arange(min(args.fit_images, len(v)))) for k, v in splits.items()}
    spec = model_spec(splits["train"])
    cfg = train_config(preset, epochs=1)
    timings = {}
    gen = torch.Generator().manual_seed(0)
    xb = torch.randn(64, 3, 32, 32, generator=gen).to(dev)
    yb = torch.randint(0, 100, (64,), generator=gen).to(dev)
    xe = torch.randn(512, 3, 32, 32, generator=gen).to(dev)
    settings = [
        ("fp32", False, False, None),
        ("bf16 autocast", True, False, None),
        ("bf16 autocast + channels_last", True, True, None),
    ]
    if "compile" not in skip:
        settings += [
            ("fp32 + torch.compile", False, False, "default"),
            ("fp32 + torch.compile reduce-overhead (CUDA graphs)", False, False, "reduce-overhead"),
        ]
    for name, amp, cl, mode in settings:
        torch.manual_seed(0)
        m = model_from_spec(spec).to(dev).train()
        xin, xev = xb, xe
        if cl:
            m = m.to(memory_format=torch.channels_last)
            xin, xev = (
                xb.contiguous(memory_format=torch.channels_last),
                xe.contiguous(memory_format=torch.channels_last),
            )
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        net = torch.compile(m, mode=mode) if mode else m

        def step():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and GPU):
                loss = sum(F.cross_entropy(o.float(), yb) for o in net(xin))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        _, first = clock(step)
        for _ in range(20):
            step()
        _, secs = clock(lambda: [step() for _ in range(args.steps)])
        m.eval()

        def ev():
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and GPU):
                net(xev)

        for _ in range(5):
            ev()
        _, esecs = clock(lambda: [ev() for _ in range(30)])
        timings[name] = {
            "train_img_s": round(64 * args.steps / secs, 1),
            "eval_img_s": round(512 * 30 / esecs, 1),
            "first_step_s": round(first, 1),
        }
        print(
            f"paper MSDNet, {name}: training {timings[name]['train_img_s']} img/s (batch 64), eval "
            f"{timings[name]['eval_img_s']} img/s (batch 512), first step {first:.1f} s",
            flush=True,
        )
        save()
    for amp in (cfg.amp, not cfg.amp):
        torch.manual_seed(0)
        model = model_from_spec(spec).to(dev)
        with tempfile.TemporaryDirectory() as tmp:
            _, secs = clock(
                lambda: fit(
                    model,
                    splits["train"],
                    splits["val"],
                    replace(cfg, amp=amp),
                    out_dir=Path(tmp),
                    device=dev,
                    progress=False,
                )
            )
        (_, _, _), psecs = clock(
            lambda: predict(model, splits["test"], batch_size=preset.training.eval_batch_size, device=dev, amp=amp)
        )
        what = "bf16 autocast" if amp else "fp32"
        timings[f"fit_one_epoch_s ({what})"] = round(secs, 1)
        timings[f"record_test_img_s ({what})"] = round(len(splits["test"]) / psecs, 1)
        timings[f"projected_200_epochs_h ({what})"] = round(200 * secs / 3600, 2)
        print(
            f"fit ({what}{', the default' if amp == cfg.amp else ''}), one epoch of {len(splits['train'])} images "
            f"+ validation of {len(splits['val'])}: {secs:.1f} s → 200 epochs ≈ {200 * secs / 3600:.2f} h; test "
            f"record {timings[f'record_test_img_s ({what})']} img/s",
            flush=True,
        )
    timings["fit_images"] = len(splits["train"])
    report["paper"] = timings
    save()
print(f"wrote {out_path}")
