"""GPU-hours per task, estimated before a run that takes days (what ``reproduce --dry-run`` prints).

One number is measured: an epoch of the main CIFAR-100 MSDNet on one H100 (fp32, batch 64, 40,000 training images
plus a validation pass over 10,000: 32.7 s; docs/performance.md, "On a GPU"). Every other task is scaled from it by
the work it does: training images × epochs × the network's forward multiply-adds per image (counted on the lab's own
models), a validation pass costing a third of a training step per image. So these are FLOP-ratio estimates, not
measurements; the MSDNet is launch-bound on an H100, so networks of more work per image (the Max-Min M, the ResNet-34
policy) run closer to the GPU's peak than the ratio assumes: their rows are upper bounds. ``benchmarks/gpu_hours.py``
prints the same model as a table per job.
"""

from __future__ import annotations

from functools import cache

from ..config import Preset
from .graph import Task, dependencies

#: The measured anchor: one fit epoch of the paper network on CIFAR-100 on an H100.
ANCHOR_SECONDS, ANCHOR_TRAIN, ANCHOR_VAL = 32.7, 40_000, 10_000
#: Training images per dataset after the 20 % validation hold-out, and the validation split (SVHN's with its top-up).
TRAIN = {"cifar100": 40_000, "svhn": 58_606, "mnist": 48_000, "fashion_mnist": 48_000}
VAL = {"cifar100": 10_000, "svhn": 14_651 + 25_000, "mnist": 12_000, "fashion_mnist": 12_000}
SHAPE = {"cifar100": (3, 32, 32), "svhn": (3, 32, 32), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28)}
CLASSES = {"cifar100": 100, "svhn": 10, "mnist": 10, "fashion_mnist": 10}


@cache
def forward_macs(name: str, shape: tuple[int, int, int], **kwargs) -> float:
    """Multiply-adds of one image's forward pass through every exit (the last exit's cumulative count)."""
    from ..flops import exit_flops
    from ..models import get_model

    return exit_flops(get_model(name, in_channels=shape[0], **kwargs), shape)[-1]


def _rate() -> float:
    """Seconds per (image × forward multiply-add) of training on the anchor's GPU."""
    return ANCHOR_SECONDS / (
        forward_macs("msdnet_cifar", SHAPE["cifar100"], num_classes=100) * (ANCHOR_TRAIN + ANCHOR_VAL / 3)
    )


def hours(macs: float, train: int, val: int, epochs: int) -> float:
    return epochs * _rate() * macs * (train + val / 3) / 3600


def task_hours(preset: Preset, task: Task, params: dict | None = None) -> float:
    """Estimated H100 hours of one task (0 for the data job); ``params``: the job parameters (07's ``n_seeds``)."""
    from ..experiment import STOCHASTICITY_MODELS

    ds = task.dataset if task.dataset in TRAIN else "cifar100"
    f = preset.data.fraction
    tr, va = int(TRAIN[ds] * f), int(VAL[ds] * f)
    main = forward_macs("msdnet_cifar", SHAPE[ds], num_classes=CLASSES[ds])
    mm = preset.maxmin
    canvas = (1, mm.canvas, mm.canvas)
    pol = preset.policy
    if task.job == "main":
        return hours(main, tr, va, preset.training.epochs)
    if task.job == "maxmin":
        m = forward_macs("msdnet_cifar", canvas, num_classes=10)
        return hours(m, mm.sizes.train, mm.sizes.val, mm.epochs + mm.long_epochs)
    if task.job == "imta":  # the 2E run, then E epochs of fine-tuning
        return hours(main, tr, va, 3 * preset.imta.epochs)
    if task.job == "imta-seeds":
        n = preset.imta.seed_train or tr
        seeds = int((params or {}).get("n_seeds") or preset.imta.seeds)
        # per seed and parent: branch = the 2E run + E of fine-tuning; separate = E more + E of fine-tuning
        return hours(main, n, 0, 5 * preset.imta.epochs) * (1 if task.item else max(seeds, 0))
    # policy-binary[-thesis][-control]: the binary D_ee keeps the samples exit 1 or the last exit gets right, whatever
    # λ labels them, so the balancing-λ and the thesis-λ policies (and their controls) train on as many images
    if task.job.startswith("policy-binary"):
        return hours(
            forward_macs("policy_resnet", SHAPE[ds], depth=pol.depth, width=pol.width, num_classes=2), va, 0, pol.epochs
        )
    if task.job.startswith("policy-maxmin"):
        m = forward_macs("policy_resnet", canvas, depth=pol.depth, width=pol.width, num_classes=5)
        return hours(m, mm.sizes.val, 0, (pol.maxmin_epochs or pol.epochs))
    if task.job == "stochasticity":
        st = preset.stochasticity
        models = [task.item.rsplit("-", 2)[0]] if task.item else list(STOCHASTICITY_MODELS)
        runs = 1 if task.item else 3 * st.runs - 2
        return (
            sum(hours(forward_macs(m, SHAPE[ds], num_classes=CLASSES[ds]), st.train, 0, st.epochs) for m in models)
            * runs
        )
    return 0.0


def critical_path(preset: Preset, tasks: list[Task], each: dict[Task, float]) -> tuple[float, list[Task]]:
    """The longest chain of dependent tasks (hours) and its tasks: a cluster run's wall time, given free GPUs."""
    deps = dependencies(tasks)
    best: dict[Task, tuple[float, list[Task]]] = {}
    for t in tasks:  # tasks come in the graph's order: predecessors first
        before = max((best[d] for d in deps[t]), key=lambda x: x[0], default=(0.0, []))
        best[t] = (before[0] + each[t], [*before[1], t])
    return max(best.values(), key=lambda x: x[0], default=(0.0, []))
