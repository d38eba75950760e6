"""How a protocol declares the work it needs ahead of its notebook: a :class:`Job` (what it runs, after what, for which
notebooks, as one task or a task per independent run) and its cost, next to the functions the notebook calls.

``jobs/`` plans and executes only what the protocols declare (:data:`overthink_lib.experiments.JOBS`): the run of a
job calls exactly the functions its notebook calls, with the notebook's parameters, so the notebook finds every
network and record cached under the same run hashes ("reusing the finished run ...").

The cost of a task is estimated in H100 hours (what ``reproduce --dry-run`` prints and SLURM time limits come from).
One number is measured: an epoch of the main CIFAR-100 MSDNet on one H100 (fp32, batch 64, 40,000 training images
plus a validation pass over 10,000: 32.7 s; docs/performance.md, "On a GPU"). Every other task is scaled from it by
the work it does: training images × epochs × the network's forward multiply-adds per image (counted on the lab's own
models), a validation pass costing a third of a training step per image. So these are FLOP-ratio estimates, not
measurements; the MSDNet is launch-bound on an H100, so networks of more work per image (the Max-Min M, the ResNet-34
policy) run closer to the GPU's peak than the ratio assumes: their rows are upper bounds. A dataset without declared
sizes here has no estimate: it is refused, never given another dataset's hours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ..config import ConfigError, Preset

#: ``run(preset, params, item)``: the preset made for the task's dataset, the job parameters, one item of a loop ("" =
#: all of it, or no loop). ``hours(preset, params, item)``: its estimated H100 hours.
Runner = Callable[[Preset, dict[str, Any], str], None]
Hours = Callable[[Preset, dict[str, Any], str], float]


@dataclass(frozen=True)
class Job:
    """One kind of work a protocol's notebook needs done ahead of it (a network, its records).

    Attributes:
        name: the job's name (``python -m overthink_lib job NAME``).
        after: jobs that must finish first (it reads what they trained).
        notebooks: name prefixes of the notebooks that use what it makes.
        run: what a task of it does (the notebook's own calls).
        hours: its estimated H100 hours (:func:`hours`).
        per_dataset: runs once per dataset of the suite (else once, with the first).
        items: for a loop of independent runs, ``items(preset, params)`` lists them (a task each when fanned out).
    """

    name: str
    after: tuple[str, ...]
    notebooks: tuple[str, ...]
    run: Runner = field(compare=False)
    hours: Hours = field(compare=False)
    per_dataset: bool = True
    items: Callable[[Preset, dict], list[str]] | None = field(default=None, compare=False)


def seed_of(preset: Preset, params: dict[str, Any]) -> int:
    """The seed a job runs with: its ``seed`` parameter, else the preset's."""
    return preset.seed_or_own(params.get("seed"))


def item_index(item: str, prefix: str, count: int) -> int:
    """``i`` of an item named ``<prefix><i>``, i < ``count``."""
    if not (item.startswith(prefix) and item[len(prefix) :].isdigit() and int(item[len(prefix) :]) < count):
        raise ConfigError(f"no item {item!r}: this job's are {prefix}0 .. {prefix}{count - 1}")
    return int(item[len(prefix) :])


# ---- the cost model ----

#: The measured anchor: one fit epoch of the paper network on CIFAR-100 on an H100.
ANCHOR_SECONDS, ANCHOR_TRAIN, ANCHOR_VAL = 32.7, 40_000, 10_000
#: Per dataset: training images after the 20 % validation hold-out, the validation split (SVHN's with its top-up),
#: the image shape and the classes.
SIZES: dict[str, tuple[int, int, tuple[int, int, int], int]] = {
    "cifar100": (40_000, 10_000, (3, 32, 32), 100),
    "svhn": (58_606, 14_651 + 25_000, (3, 32, 32), 10),
    "mnist": (48_000, 12_000, (1, 28, 28), 10),
    "fashion_mnist": (48_000, 12_000, (1, 28, 28), 10),
}


def sizes(preset: Preset) -> tuple[int, int, tuple[int, int, int], int]:
    """(training images, validation images, shape, classes) of the preset's main dataset at its ``data.fraction``."""
    ds = preset.datasets[0]
    if ds not in SIZES:
        raise ConfigError(
            f"no cost estimate for dataset {ds!r}: the estimate knows {', '.join(SIZES)}; declare its sizes in "
            "overthink_lib/experiments/declare.py (SIZES)"
        )
    train, val, shape, classes = SIZES[ds]
    f = preset.data.fraction
    return int(train * f), int(val * f), shape, classes


@cache
def forward_macs(name: str, shape: tuple[int, int, int], **kwargs: Any) -> float:
    """Multiply-adds of one image's forward pass through every exit (the last exit's cumulative count)."""
    from ..flops import exit_flops
    from ..models import get_model, list_models

    if name not in list_models():
        raise ConfigError(
            f"no cost estimate for model {name!r}: it is not a registered model ({', '.join(list_models())})"
        )
    return exit_flops(get_model(name, in_channels=shape[0], **kwargs), shape)[-1]


def _rate() -> float:
    """Seconds per (image × forward multiply-add) of training on the anchor's GPU."""
    _, _, shape, classes = SIZES["cifar100"]
    return ANCHOR_SECONDS / (forward_macs("msdnet_cifar", shape, num_classes=classes) * (ANCHOR_TRAIN + ANCHOR_VAL / 3))


def hours(macs: float, train: int, val: int, epochs: int) -> float:
    """H100 hours of ``epochs`` epochs over ``train`` images (and a validation pass over ``val``) of a network of
    ``macs`` forward multiply-adds per image."""
    return epochs * _rate() * macs * (train + val / 3) / 3600


def main_macs(preset: Preset) -> float:
    """Forward multiply-adds per image of the preset's network (``training.model``) on its main dataset."""
    _, _, shape, classes = sizes(preset)
    return forward_macs(preset.training.model, shape, num_classes=classes)


def no_hours(preset: Preset, params: dict[str, Any], item: str) -> float:
    """The cost of a job that trains nothing."""
    return 0.0
