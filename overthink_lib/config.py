"""Presets, paths, seeding, devices and provenance (file I/O and hashing: :mod:`overthink_lib.io`).

A preset is data: a frozen dataclass of every setting a notebook needs. The notebooks and the CLI pick one by
name (``smoke`` for CI, ``cpu`` for the default main job on a 2-core machine, ``paper`` for the thesis's settings
on a GPU); no code branches on the preset's name.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: The repository root (the folder that holds ``overthink_lib/``); ``OVERTHINK_ROOT`` overrides it.
ROOT = Path(os.environ.get("OVERTHINK_ROOT", Path(__file__).resolve().parent.parent))


class ConfigError(ValueError):
    """Bad user input (unknown preset, bad parameter value, ...). Its message is one line saying what to do."""


@dataclass(frozen=True)
class MaxMinSizes:
    """Number of Max-Min composites per split (each a multiple of 40: levels 2:1:1 × 10 balanced labels)."""

    train: int
    val: int
    test: int


@dataclass(frozen=True)
class DataSettings:
    """Which data the suite studies and how it is split.

    Attributes:
        datasets: conventional datasets the suite studies, first = the main one.
        fraction: fraction of each split used (1.0 = all); subsets are seeded and recorded.
        val_fraction: share of the training set held out for validation (thresholds, D_ee training set).
        svhn_extra: SVHN's validation and test topped up with ``svhn_extra_count`` "extra" samples each (the thesis).
        svhn_extra_count: how many (the thesis: 25,000).
        train_record_size: training images the main MSDNet is recorded on for Fig 4.1 (a seeded subset; 0: all).
        folder_crop: an image-folder dataset the notebooks study (``imagenette``, Fig A.4) is decoded into memory at
            this centre crop, the shorter side resized to crop × 8/7 first (224 after 256: ImageNet's evaluation size).
    """

    datasets: tuple[str, ...]
    fraction: float = 1.0
    val_fraction: float = 0.2
    svhn_extra: bool = False
    svhn_extra_count: int = 25_000
    train_record_size: int = 12000
    folder_crop: int = 64


@dataclass(frozen=True)
class TrainingSettings:
    """How every network of the preset trains and runs (the main MSDNet's schedule; other experiments change only
    their epochs).

    Attributes:
        epochs: MSDNet training epochs.
        lr_schedule: ``step`` (thesis) or ``onecycle`` (short CPU schedules).
        lr_milestones: epochs (fractions of ``epochs`` when < 1) at which the lr is multiplied by 0.1.
        batch_size: training batch size (thesis: 64).
        eval_batch_size: inference batch size.
        lr: peak learning rate.
        speed: speed settings, as :meth:`overthink_lib.speed.Speed.parse` reads them: ``fp32`` (default: fp32 eager
            NCHW, bit-reproducible on CPU), ``fast`` or a comma-separated subset (``bf16,compile``). Not
            ``channels_last`` for now, though it trains the suite's networks 1.24–1.42× faster on one thread (Zen 4):
            torch 2.14.1's oneDNN corrupts memory in an NHWC strided-convolution gradient for some shapes
            (``benchmarks/onednn_nhwc_bug.py``), so no preset trains in NHWC until that is fixed.
        threads: CPU threads of every training (``TrainConfig.threads``; 0: torch's default). ``smoke`` and ``cpu``
            pin 1: a CPU training's numbers depend on its thread count, and on a 2-core machine two one-thread
            trainings at once do more work than one on two threads (1.14–1.41×, measured), which is how
            ``reproduce`` trains the suite's networks ahead of its notebooks (:mod:`overthink_lib.jobs`).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        model: the multi-exit network the protocols train (a name of the model registry, ``get_model``; the
            thesis's MSDNet, ``msdnet_cifar``, by default).
    """

    epochs: int
    lr_schedule: str
    lr_milestones: tuple[float, ...] = ()
    batch_size: int = 64
    eval_batch_size: int = 512
    lr: float = 0.1
    speed: str = "fp32"
    threads: int = 0
    device: str = "auto"
    model: str = "msdnet_cifar"


@dataclass(frozen=True)
class MaxMinSettings:
    """The Max-Min composites and the MSDNet M trained on them (notebooks 06 and 08).

    Attributes:
        base: base dataset of the composites (``mnist`` as the thesis, ``fashion_mnist`` offline).
        sizes: composites per split.
        epochs: M's epochs (the thesis: 5, so that early exits are weak on hard samples).
        canvas, item: canvas and item size in pixels (the thesis: 64 and 20; the cpu preset 36 and 14, a third of the
            pixels per composite, so that M sees five times as many composites in the same time).
        long_epochs: a second, long-trained M for Fig 4.4's second panel (the thesis: 200); 0: compare M with its
            own half-way snapshot instead.
    """

    base: str
    sizes: MaxMinSizes
    epochs: int
    canvas: int = 64
    item: int = 20
    long_epochs: int = 0


@dataclass(frozen=True)
class ImtaSettings:
    """Table 3.1's protocol (notebook 07).

    Attributes:
        epochs: E of the protocol: E epochs plain, 2E plain, E plain + E ISC+OFA (thesis: 50).
        parent: where the E-epoch network comes from: ``branch`` (the 2E run's weights at epoch E: the thesis
            fine-tunes "for the final 50 epochs of the training process"; trains nothing extra) or ``separate``
            (its own E-epoch schedule, annealed at E; E more epochs of training).
        freeze, teacher, kl: the fine-tuning as the official code runs it by default: the whole pretrained network
            frozen (``all``; ``blocks``: head convolutions train too; ``none``: everything), the OFA teacher the
            pretrained final exit (``pretrained``; ``new``: the new final head), the KL averaged over every element
            (``mean``; ``batchmean``: per sample).
        seeds, seed_train, seed_test: the verdict over seeds (a verdict about the recipe): the protocol this many
            times with different init/data-order seeds on one seeded subset of this many training and test images
            (0: all).
        milestones: the fine-tuning's (stage 2's) schedule: lr ×0.1 at these fractions of its E epochs, as the
            official ``main_IMTA.py`` decays it (50 % and 75 %); ``()``: the preset's own schedule instead.
        frozen_bn: the frozen pretrained network's BatchNorm during fine-tuning: ``eval`` (ours: running statistics
            fixed, so the teacher's logits for an image do not move) or ``train`` (the official code: the frozen
            network in ``train()`` mode, batch statistics, running averages updated).
    """

    epochs: int = 1
    parent: str = "branch"
    freeze: str = "all"
    teacher: str = "pretrained"
    kl: str = "mean"
    seeds: int = 4
    seed_train: int = 2000
    seed_test: int = 2000
    milestones: tuple[float, ...] = (0.5, 0.75)
    frozen_bn: str = "eval"


@dataclass(frozen=True)
class PolicySettings:
    """The policy ResNet of notebook 08.

    Attributes:
        depth, width: the ResNet (thesis: ResNet-34, width 64).
        epochs: training epochs of the binary policy (thesis: 100).
        maxmin_epochs: training epochs of the Max-Min policy (thesis: 60); 0: ``epochs``.
        lr: peak learning rate (thesis: 0.01; the ``cpu`` preset's few epochs use 0.1, its training lr).
    """

    depth: int = 18
    width: int = 16
    epochs: int = 8
    maxmin_epochs: int = 0
    lr: float = 0.1


@dataclass(frozen=True)
class StochasticitySettings:
    """Notebook 09: runs per randomness source, training images per run (a seeded subset), epochs per run."""

    runs: int = 4
    train: int = 8000
    epochs: int = 2


def _check_type(where: str, value: Any, kind: type) -> None:
    """One line for a preset value of the wrong type (a bool is no number; an int may stand for a float)."""
    if kind in (dict, MaxMinSizes) or kind in _PARTS.values():
        return  # checked field by field where it is built
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    ok = ok or (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if kind is tuple:
        ok = isinstance(value, tuple) and all(isinstance(v, (str, int, float)) for v in value)
    if not ok:
        raise ConfigError(f"preset field {where} must be {kind.__name__}, got {value!r}")


#: A preset's parts, by field name: what :meth:`Preset.from_dict` rebuilds.
_PARTS: dict[str, type] = {
    "data": DataSettings,
    "training": TrainingSettings,
    "maxmin": MaxMinSettings,
    "imta": ImtaSettings,
    "policy": PolicySettings,
    "stochasticity": StochasticitySettings,
}


@dataclass(frozen=True)
class Preset:
    """Every setting a run of the notebook suite needs, in parts: ``data``, ``training``, ``maxmin``, ``imta``,
    ``policy``, ``stochasticity`` (each a frozen dataclass of its own, documented there).

    Attributes:
        name: preset name (``smoke``, ``cpu``, ``paper``).
        seed: the default seed of every random choice (:meth:`seed_or_own`).
        figures_dir: where figures go, relative to the repository root.
        suite_skip: notebook name prefixes that ``reproduce`` leaves out unless named with ``--only`` (work too long
            for the preset's time budget; each has its own make target).
        cell_timeout: seconds any one notebook cell may run before ``reproduce`` stops with one line naming the
            notebook and cell (a hung kernel never holds a run for good); generous on ``paper``.
    """

    name: str
    seed: int
    data: DataSettings
    training: TrainingSettings
    maxmin: MaxMinSettings
    figures_dir: str
    imta: ImtaSettings = ImtaSettings()
    policy: PolicySettings = PolicySettings()
    stochasticity: StochasticitySettings = StochasticitySettings()
    suite_skip: tuple[str, ...] = ()
    cell_timeout: int = 3600

    @property
    def datasets(self) -> tuple[str, ...]:
        """``data.datasets``: the datasets the suite studies, first = the main one."""
        return self.data.datasets

    def seed_or_own(self, seed: int | None) -> int:
        """The one rule for a seed: ``seed`` when given, else the preset's own (every ``seed=None`` means this)."""
        return self.seed if seed is None else seed

    def for_dataset(self, name: str) -> Preset:
        """The same preset with ``name`` as its main dataset (``datasets[0]``, which the experiments use)."""
        return self.with_parts(data={"datasets": (name, *tuple(d for d in self.datasets if d != name))})

    def with_parts(self, **changes: Any) -> Preset:
        """A copy with some values changed: a part's name maps to a dict of its fields (``training={"threads": 0}``),
        any other name to a value (``name="x"``)."""
        top = {
            key: replace(getattr(self, key), **value) if key in _PARTS and isinstance(value, dict) else value
            for key, value in changes.items()
        }
        return replace(self, **top)

    @property
    def run_dir(self) -> Path:
        """``runs/<preset>/``: checkpoints, records, tables, executed notebooks (ignored by git)."""
        return ROOT / "runs" / self.name

    @property
    def figure_dir(self) -> Path:
        return ROOT / self.figures_dir

    def to_dict(self) -> dict[str, Any]:
        """Plain data (nested dicts, lists, scalars) that :meth:`from_dict` turns back into the same preset."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        """The preset :meth:`to_dict` (or its JSON) describes; an unknown or missing field is a ConfigError."""

        # a field's type, read off the paper preset's value of it (every preset has every field)
        paper = PRESETS["paper"]
        known_types = {Preset: {f.name: type(getattr(paper, f.name)) for f in dataclasses.fields(Preset)}}
        for name, part in _PARTS.items():
            known_types[part] = {f.name: type(getattr(getattr(paper, name), f.name)) for f in dataclasses.fields(part)}
        known_types[MaxMinSizes] = {f.name: int for f in dataclasses.fields(MaxMinSizes)}

        def build(kind: type, values: Any, where: str) -> Any:
            if not isinstance(values, dict):
                raise ConfigError(f"preset field {where} must be a mapping, got {type(values).__name__}")
            known = {f.name: f for f in dataclasses.fields(kind)}
            unknown = sorted(set(values) - set(known))
            if unknown:
                raise ConfigError(f"preset field {where} has unknown entries {unknown}: known are {sorted(known)}")
            out = {}
            for key, value in values.items():
                if key in _PARTS and kind is Preset:
                    value = build(_PARTS[key], value, key)
                elif key == "sizes" and kind is MaxMinSettings:
                    value = build(MaxMinSizes, value, f"{where}.sizes")
                elif isinstance(value, list):  # JSON has no tuples
                    value = tuple(value)
                if key in known_types.get(kind, {}):
                    _check_type(f"{where}.{key}" if kind is not Preset else key, value, known_types[kind][key])
                out[key] = value
            try:
                return kind(**out)
            except TypeError as e:
                raise ConfigError(f"preset field {where} is incomplete: {e}") from None

        return build(cls, d, "preset")


PRESETS: dict[str, Preset] = {
    # CI: seconds per notebook. Tiny subsets, one epoch; numbers are meaningless, code paths are not.
    "smoke": Preset(
        name="smoke",
        seed=0,
        data=DataSettings(datasets=("fashion_mnist",), fraction=0.02, val_fraction=0.2),
        training=TrainingSettings(
            epochs=1, lr_schedule="onecycle", batch_size=64, eval_batch_size=256, lr=0.1, threads=1
        ),
        maxmin=MaxMinSettings(
            base="fashion_mnist", sizes=MaxMinSizes(train=400, val=120, test=120), epochs=1, long_epochs=2
        ),
        imta=ImtaSettings(seeds=2, seed_train=300, seed_test=200),
        policy=PolicySettings(width=8, epochs=1),
        stochasticity=StochasticitySettings(runs=3, train=300, epochs=1),
        figures_dir="runs/smoke/figures",
        cell_timeout=600,
    ),
    # The default main job on a 2-core CPU: the whole suite in <= 30 minutes.
    "cpu": Preset(
        name="cpu",
        seed=0,
        data=DataSettings(datasets=("fashion_mnist",), fraction=1.0, val_fraction=0.2),
        training=TrainingSettings(
            epochs=2, lr_schedule="onecycle", batch_size=64, eval_batch_size=512, lr=0.1, threads=1
        ),
        # Max-Min: 12,000 composites on a 36 px canvas, 4 epochs, so that M's last exit beats exit 1 on hard
        # composites (README: the positive control); val 4,000 so that the policy learns from enough D_ee labels
        maxmin=MaxMinSettings(
            base="fashion_mnist", sizes=MaxMinSizes(train=12000, val=4000, test=2000), epochs=4, canvas=36, item=14
        ),
        policy=PolicySettings(width=8),
        figures_dir="figures",
        suite_skip=("09",),
    ),
    # The thesis's settings (§3.1, ch. 4): 200 epochs, lr x0.1 at epochs 75 and 150; meant for a GPU.
    "paper": Preset(
        name="paper",
        seed=0,
        data=DataSettings(
            datasets=("cifar100", "svhn", "mnist"),
            fraction=1.0,
            val_fraction=0.2,
            svhn_extra=True,
            train_record_size=0,
            folder_crop=224,
        ),
        # lr ×0.1 at 37.5 % and 75 % of the epochs: 75 and 150 of 200, and the same shares of shorter runs
        training=TrainingSettings(
            epochs=200, lr_schedule="step", lr_milestones=(0.375, 0.75), batch_size=64, eval_batch_size=512, lr=0.1
        ),
        maxmin=MaxMinSettings(
            base="mnist", sizes=MaxMinSizes(train=80000, val=20000, test=20000), epochs=5, long_epochs=200
        ),
        imta=ImtaSettings(epochs=50, seeds=3, seed_train=0, seed_test=0),
        policy=PolicySettings(depth=34, width=64, epochs=100, maxmin_epochs=60, lr=0.01),
        stochasticity=StochasticitySettings(runs=5, train=40000, epochs=50),
        figures_dir="figures/paper",
        cell_timeout=7 * 24 * 3600,
    ),
}


#: The rehearsal of a preset (:func:`rehearsal`): the fields it shrinks, with their values (sizes, lengths, counts:
#: nothing that selects a code path), by part (``None``: the preset's own fields) ...
REHEARSAL_SHRINKS: dict[str | None, dict[str, Any]] = {
    "data": {"fraction": 0.2, "svhn_extra_count": 300},
    "training": {"epochs": 2, "eval_batch_size": 256},
    "maxmin": {"sizes": MaxMinSizes(train=400, val=160, test=120), "epochs": 1, "long_epochs": 2},
    "imta": {"epochs": 1, "seeds": 2},
    "policy": {"width": 8, "epochs": 1, "maxmin_epochs": 1},
    "stochasticity": {"runs": 3, "train": 200, "epochs": 1},
    None: {"cell_timeout": 1800},
}
#: ... and the fields it keeps as the preset has them: datasets and their loaders, shapes, classes, architectures,
#: the Max-Min canvas, the schedule's shape, the SVHN top-up, 0 = "all" subsets, the notebooks the suite runs.
#: ``name`` and ``figures_dir`` are the rehearsal's own. A new field must join one of the two (tests/test_config.py).
REHEARSAL_KEEPS: dict[str | None, tuple[str, ...]] = {
    "data": ("datasets", "val_fraction", "svhn_extra", "train_record_size", "folder_crop"),
    "training": ("lr_schedule", "lr_milestones", "batch_size", "lr", "speed", "threads", "device", "model"),
    "maxmin": ("base", "canvas", "item"),
    "imta": ("parent", "freeze", "teacher", "kl", "seed_train", "seed_test", "milestones", "frozen_bn"),
    "policy": ("depth", "lr"),
    "stochasticity": (),
    None: ("seed", "suite_skip"),
}


def rehearsal(preset: Preset) -> Preset:
    """``preset`` made small enough to run on made-up data in minutes, every choice that selects a code path kept
    (:data:`REHEARSAL_SHRINKS`, :data:`REHEARSAL_KEEPS`): a long run's defects show up before anyone spends GPU-hours
    on it. Named ``<preset>-rehearsal``, its figures under ``runs/<name>/figures``."""
    name = f"{preset.name}-rehearsal"
    parts = {part: values for part, values in REHEARSAL_SHRINKS.items() if part is not None}
    return preset.with_parts(name=name, figures_dir=f"runs/{name}/figures", **REHEARSAL_SHRINKS[None], **parts)


def rehearsal_table(preset: Preset) -> list[tuple[str, str, Any, Any]]:
    """(field, kept | shrunk, the preset's value, the rehearsal's value) for every field of ``preset``."""
    small, out = rehearsal(preset), []
    for part in REHEARSAL_KEEPS:
        kinds = [(f, "kept") for f in REHEARSAL_KEEPS[part]] + [(f, "shrunk") for f in REHEARSAL_SHRINKS[part]]
        for field_name, kind in kinds:
            a, b = (getattr(p if part is None else getattr(p, part), field_name) for p in (preset, small))
            out.append((field_name if part is None else f"{part}.{field_name}", kind, a, b))
    return out


PRESETS["paper-rehearsal"] = rehearsal(PRESETS["paper"])


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda`` as asked (CUDA absent → ConfigError).

    Under ``torchrun`` (``LOCAL_RANK`` set) plain ``cuda`` means this process's own GPU, ``cuda:<LOCAL_RANK>``, made
    the current device: rank r trains on GPU r of its machine, never every rank on GPU 0.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but no CUDA device is visible: use device='cpu' or 'auto'")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}: use 'auto', 'cpu' or 'cuda'")
    if name == "cuda" and os.environ.get("LOCAL_RANK") is not None:
        local, count = os.environ["LOCAL_RANK"], torch.cuda.device_count()
        if not local.isdigit() or (count > 1 and int(local) >= count):
            raise ConfigError(
                f"LOCAL_RANK={local!r} but this machine shows {count} CUDA device(s): start torchrun with "
                f"--nproc_per_node at most {count}"
            )
        index = 0 if count == 1 else int(local)  # a launcher that shows each rank only its own GPU: that one
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device(name)


def code_version() -> str:
    """The git commit of the code (``+dirty`` when the tree has changes), or the package version outside git."""
    from . import __version__

    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return __version__
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return f"{__version__}+g{head.stdout.strip()}" + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


#: What the lab computes, by kind; part of every cache key of that kind. Bump ``train`` when the same config would
#: now train another network (loss, schedule, augmentation, initialisation, data order) and ``record`` when the same
#: weights would now give other logits or another record (inference, record fields, file layout): runs and records
#: of the old code are then not reused (tests/test_train.py checks both). A change that computes the same numbers
#: (speed, refactoring) keeps them — the smoke reference (``make test``) is what shows it does.
COMPUTE_VERSIONS: dict[str, int] = {"train": 1, "record": 1}


__all__ = [
    "PRESETS",
    "ROOT",
    "ConfigError",
    "DataSettings",
    "ImtaSettings",
    "MaxMinSettings",
    "MaxMinSizes",
    "PolicySettings",
    "Preset",
    "StochasticitySettings",
    "TrainingSettings",
    "code_version",
    "get_device",
    "get_preset",
    "seed_everything",
]
