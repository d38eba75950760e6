"""Analyse your own early-exit model: a torchvision ResNet-18 with a linear probe after each of its four stages.

Not a model of the lab's registry: an ordinary ``nn.Module`` whose forward returns a list of per-exit logits (the
SDN/ZTW convention) and, optionally, stops after exit k (``forward(x, upto=k)``), which lets ``record_from_model``
measure each exit's FLOPs. It is trained briefly on Fashion-MNIST, turned into validation and test ExitRecords, and
the lab's notebooks then analyse it like their own MSDNet:

    .venv/bin/python examples/resnet18_probes.py                      # ≈ 1 min of training, then the records
    .venv/bin/python -m overthink_lib reproduce --preset cpu --only 03 --only 04 \\
        --param record=runs/examples/resnet18-probes                 # figures → figures/records/resnet18-probes/
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from overthink_lib.config import ROOT, seed_everything
from overthink_lib.data import get_dataset, iterate
from overthink_lib.recording import record_from_model


class ProbedResNet18(nn.Module):
    """torchvision's ResNet-18 (1-channel stem) with a linear probe (global average pool → Linear) after every
    stage; the last probe is the network's own classifier. ``forward(x, upto=k)`` runs only the first k stages."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        r = torchvision.models.resnet18(weights=None, num_classes=num_classes)
        r.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.stages = nn.ModuleList([r.layer1, r.layer2, r.layer3, r.layer4])
        self.probes = nn.ModuleList(
            [nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)) for c in (64, 128, 256)]
            + [nn.Sequential(r.avgpool, nn.Flatten(), r.fc)]
        )

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        h, outs = self.stem(x), []
        for stage, probe in list(zip(self.stages, self.probes))[: upto or len(self.stages)]:
            h = stage(h)
            outs.append(probe(h))
        return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="training time budget (default 60)")
    ap.add_argument("--limit", type=int, default=0, help="record only the first N validation and test images")
    ap.add_argument("--out", default=str(ROOT / "runs" / "examples" / "resnet18-probes"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.seconds <= 0 or args.limit < 0:
        ap.error("--seconds must be > 0 and --limit >= 0")
    seed_everything(args.seed)
    # the cpu preset's split: a seeded 20 % of the training file is the validation set
    train, val, test = (
        get_dataset("fashion_mnist", s, val_fraction=0.2, split_seed=args.seed) for s in ("train", "val", "test")
    )
    model = ProbedResNet18(train.num_classes, train.channels)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    t0, step, epoch = time.perf_counter(), 0, 0
    print(
        f"training {type(model).__name__} for {args.seconds:.0f} s on {len(train)} Fashion-MNIST images ...", flush=True
    )
    while time.perf_counter() - t0 < args.seconds:
        for x, y, _ in iterate(train, 128, shuffle=True, augment=True, seed=args.seed + epoch):
            loss = sum(F.cross_entropy(o, y) for o in model(x))  # every probe learns, as an SDN's would
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0:
                print(f"  step {step}, {time.perf_counter() - t0:.0f} s, loss {loss.item():.3f}", flush=True)
            if time.perf_counter() - t0 >= args.seconds:
                break
        epoch += 1
    out = Path(args.out)
    for split, ds in (("val", val), ("test", test)):
        if args.limit:
            ds = ds.subset(torch.arange(min(args.limit, len(ds))))
        rec = record_from_model(
            model,
            ds,
            name="resnet18-probes",
            provenance={
                "example": "examples/resnet18_probes.py",
                "train_steps": step,
                "train_seconds": round(time.perf_counter() - t0, 1),
            },
        )
        path = rec.save(out / f"{split}.npz")
        print(f"wrote {path}: {rec.summary()}; MFLOPs per exit {[round(f / 1e6, 2) for f in rec.flops.tolist()]}")
    print(
        f"analyse it: .venv/bin/python -m overthink_lib reproduce --preset cpu --only 03 --only 04 --param record={out}"
    )


if __name__ == "__main__":
    main()
