"""The official MSDNet ImageNet checkpoints, analysed: official weights → the lab's MSDNet → records → notebooks 03/04.

MSDNet-PyTorch publishes two ImageNet checkpoints (step 4 and step 7, ``model_best.pth.tar``). This loads one
(``load_official_msdnet``: weights-only, the configuration read from its shapes), streams an ImageNet-layout image
folder from disk with the official evaluation transform (resize 256, centre crop 224, ImageNet mean/std), writes a
validation and a test record with top-1 and top-5 per exit, and times each exit (images per second when the network
stops there, median of 3 batches). Then the analysis notebooks run on the records:

    .venv/bin/python examples/official_imagenet.py model_best.pth.tar --data data/imagenet --limit 2000
    .venv/bin/python -m overthink_lib reproduce --preset cpu --only 03 --only 04 \\
        --param record=runs/examples/official-imagenet

``--data`` holds ``val/<wnid>/*.JPEG`` (ImageNet's validation images in class folders) and, optionally, ``train/``.
With ``train/`` the validation record is a seeded 50,000-image hold-out of it (the official ``--use-valid``), the
test record ImageNet-val; without it, ImageNet-val is split in two seeded halves (validation for the thresholds, test
for the numbers) and the records say so. ``--limit N`` takes a seeded N-image subset of each (a CPU's budget).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from overthink_lib.config import ROOT, ConfigError
from overthink_lib.data import get_dataset
from overthink_lib.models.official import load_official_msdnet
from overthink_lib.recording import record_from_folder


def exit_throughput(model, images, batch_size: int) -> list[float]:
    """Images per second through exit k (the network stopped there), median of 3 timed batches after a warm-up."""
    x = torch.stack([images[i][0] for i in range(min(batch_size, len(images)))])
    rates = []
    with torch.no_grad():
        for k in range(1, model.num_exits + 1):
            model(x, upto=k)  # warm-up
            times = []
            for _ in range(3):
                t = time.perf_counter()
                model(x, upto=k)
                times.append(time.perf_counter() - t)
            rates.append(len(x) / statistics.median(times))
    return rates


def peak_rss_mib() -> tuple[float, float]:
    """(this process, its largest finished child: the DataLoader workers) peak resident memory, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="the official model_best.pth.tar (or any official MSDNet checkpoint)")
    ap.add_argument("--data", required=True, help="image folder with val/ (and optionally train/) in class folders")
    ap.add_argument("--limit", type=int, default=0, help="a seeded subset of this many images per record (0: all)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "examples" / "official-imagenet"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the cores, up to 8)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the hold-out and of --limit")
    args = ap.parse_args(argv)
    try:
        if args.limit < 0 or args.batch_size < 1:
            raise ConfigError("--limit must be >= 0 and --batch-size >= 1")
        torch.set_num_threads(max(1, torch.get_num_threads()))
        model, info = load_official_msdnet(args.checkpoint)
        print(f"{args.checkpoint}: {info['model_spec']['name']} {info['model_spec']['kwargs']}")
        root = Path(args.data)
        limit = args.limit or None
        common = dict(root=root, split_seed=args.seed, limit=limit)
        if (root / "train").is_dir():
            splits = {s: get_dataset("imagenet", s, **common) for s in ("val", "test")}
        else:  # only ImageNet-val here: two seeded halves of it
            test = get_dataset("imagefolder", "test", **{**common, "limit": None})
            order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))
            half = len(order) // 2
            rows = {"val": order[:half], "test": order[half:]}
            if limit:
                rows = {s: r[:limit] for s, r in rows.items()}
            splits = {s: test.subset(r.sort().values) for s, r in rows.items()}
            for s, part in splits.items():
                part.info["split_of_val_folder"] = f"{s} half of a seeded split (seed {args.seed}) of {root}/val"
            splits["val"].split = "val"  # its role; its images are the val folder's (the record says so above)
        out = Path(args.out)
        for split, images in splits.items():
            t = time.perf_counter()
            rec = record_from_folder(
                model, images, batch_size=args.batch_size, workers=args.workers, name=Path(args.checkpoint).stem
            )
            seconds = time.perf_counter() - t
            path = rec.save(out / f"{split}.npz")
            top1 = " ".join(f"{100 * a:.2f}" for a in rec.accuracy().tolist())
            top5 = " ".join(f"{100 * a:.2f}" for a in rec.accuracy(5).tolist())
            print(
                f"{split}: {rec.num_samples} images in {seconds:.1f} s ({rec.num_samples / seconds:.1f} images/s, "
                f"all exits); top-1 per exit (%) {top1}; top-5 {top5} → {path}"
            )
        rates = exit_throughput(model, splits["test"], args.batch_size)
        flops = rec.flops.tolist()
        for k, (rate, f) in enumerate(zip(rates, flops), 1):
            print(f"exit {k}: {f / 1e9:.3f} GMACs, {rate:.1f} images/s (batch {args.batch_size}, stopping there)")
        own, workers = peak_rss_mib()
        print(f"peak RSS: {own:.0f} MiB (this process), {workers:.0f} MiB (largest DataLoader worker)")
        print(
            f"next: .venv/bin/python -m overthink_lib reproduce --preset cpu --only 03 --only 04 --param record={out}"
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
