"""Throughput of msdnet_cifar at 32×32×3 (CIFAR-100 configuration): a training step (batch 64, all exits, SGD) and
eval (batch 256), fp32 eager on this machine, median of repeated steps.

    .venv/bin/python benchmarks/train_throughput.py [--repeats 15] [--threads N]

For reference, the official MSDNet-PyTorch model measured on the 2-core development machine: ≈150 img/s training
and ≈460 img/s eval (SPEC §1). Prints img/s and the ratio to those figures.
"""
from __future__ import annotations

import argparse
import torch

from overthink_lib.dynamic import timed
from overthink_lib.models import get_model
from overthink_lib.train import multi_exit_loss

OFFICIAL_TRAIN, OFFICIAL_EVAL = 150.0, 460.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = get_model("msdnet_cifar", num_classes=100)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 100, (64,))

    def train_step():
        loss, _ = multi_exit_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    t_train = timed(train_step, args.repeats, warmup=3)
    model.eval()
    xe = torch.randn(256, 3, 32, 32)

    def eval_step():
        with torch.no_grad():
            model(xe)

    t_eval = timed(eval_step, max(5, args.repeats // 2), warmup=3)
    train_ips, eval_ips = 64 / t_train, 256 / t_eval
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 eager")
    print(f"train step (batch 64, 5 exits): {train_ips:7.1f} img/s  ({train_ips / OFFICIAL_TRAIN:.2f}× official ≈150)")
    print(f"eval        (batch 256):        {eval_ips:7.1f} img/s  ({eval_ips / OFFICIAL_EVAL:.2f}× official ≈460)")


if __name__ == "__main__":
    main()
