"""Presets, paths, seeding, devices and provenance.

A preset is data: a frozen dataclass of every setting a notebook needs. The notebooks and the CLI pick one by
name (``smoke`` for CI, ``cpu`` for the default main job on a 2-core machine, ``paper`` for the thesis's settings
on a GPU); no code branches on the preset's name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
class Preset:
    """Every setting a run of the notebook suite needs.

    Attributes:
        name: preset name (``smoke``, ``cpu``, ``paper``).
        datasets: conventional datasets the suite studies, first = the main one.
        data_fraction: fraction of each split used (1.0 = all); subsets are seeded and recorded.
        val_fraction: share of the training set held out for validation (thresholds, D_ee training set).
        epochs: MSDNet training epochs.
        lr_milestones: epochs (fractions of ``epochs`` when < 1) at which the lr is multiplied by 0.1.
        lr_schedule: ``step`` (thesis) or ``onecycle`` (short CPU schedules).
        batch_size: training batch size (thesis: 64).
        eval_batch_size: inference batch size.
        lr: peak learning rate.
        seed: the default seed of every random choice.
        maxmin_base: base dataset of the Max-Min composites (``mnist`` as the thesis, ``fashion_mnist`` offline).
        maxmin: Max-Min sizes per split.
        maxmin_epochs: MSDNet epochs on Max-Min (the thesis: 5, so that early exits are weak on hard samples).
        maxmin_canvas, maxmin_item: canvas and item size in pixels (the thesis: 64 and 20; the cpu preset 36 and 14,
            a third of the pixels per composite, so that M sees five times as many composites in the same time).
        maxmin_long_epochs: a second, long-trained Max-Min M for Fig 4.4's second panel (the thesis: 200); 0: compare
            M with its own half-way snapshot instead.
        train_record_size: training images the main MSDNet is recorded on for Fig 4.1 (a seeded subset; 0: all).
        svhn_extra: SVHN's validation and test topped up with 25,000 "extra" samples each (the thesis).
        figures_dir: where figures go, relative to the repository root.
        imta_epochs: E of the IMTA protocol: E epochs plain, 2E plain, E plain + E ISC+OFA (thesis: 50).
        imta_parent: where the E-epoch network comes from: ``branch`` (the 2E run's weights at epoch E: the thesis
            fine-tunes "for the final 50 epochs of the training process"; trains nothing extra) or ``separate``
            (its own E-epoch schedule, annealed at E; E more epochs of training).
        imta_freeze, imta_teacher, imta_kl: the IMTA fine-tuning as the official code runs it by default: the whole
            pretrained network frozen (``all``; ``blocks``: head convolutions train too; ``none``: everything), the
            OFA teacher the pretrained final exit (``pretrained``; ``new``: the new final head), the KL averaged over
            every element (``mean``; ``batchmean``: per sample).
        imta_seeds, imta_seed_train, imta_seed_test: Table 3.1 over seeds (a verdict about the recipe): the IMTA
            protocol this many times with different init/data-order seeds on one seeded subset of this many training
            and test images (0: all).
        policy_depth, policy_width, policy_epochs: the policy ResNet (thesis: ResNet-34, width 64, up to 100 epochs).
        stoch_runs, stoch_train, stoch_epochs: the stochasticity experiment: runs per randomness source, training
            images per run (a seeded subset), epochs per run.
        suite_skip: notebook name prefixes that ``reproduce`` leaves out unless named with ``--only`` (work too long
            for the preset's time budget; each has its own make target).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        cell_timeout: seconds any one notebook cell may run before ``reproduce`` stops with one line naming the
            notebook and cell (a hung kernel never holds a run for good); generous on ``paper``.
        train_threads: CPU threads of every training of the preset (``TrainConfig.threads``; 0: torch's default).
            ``smoke`` and ``cpu`` pin 1: a CPU training's numbers depend on its thread count, and on a 2-core machine
            two one-thread trainings at once do more work than one on two threads (1.14–1.41×, measured), which is how
            ``reproduce`` trains the suite's networks ahead of its notebooks (:mod:`overthink_lib.jobs`).
        speed: training speed settings, as :meth:`overthink_lib.speed.Speed.parse` reads them: ``fp32`` (default:
            fp32 eager NCHW, bit-reproducible on CPU), ``fast`` or a comma-separated subset (``bf16,channels_last``).
            Not ``channels_last`` for now, though it trains the suite's networks 1.24–1.42× faster on one thread
            (Zen 4): torch 2.14.1's oneDNN crashes (memory corruption) in an NHWC strided-convolution gradient for
            some shapes (``benchmarks/onednn_nhwc_bug.py``), so no preset trains in NHWC until that is fixed.
    """

    name: str
    datasets: tuple[str, ...]
    data_fraction: float
    val_fraction: float
    epochs: int
    lr_milestones: tuple[float, ...]
    lr_schedule: str
    batch_size: int
    eval_batch_size: int
    lr: float
    seed: int
    maxmin_base: str
    maxmin: MaxMinSizes
    maxmin_epochs: int
    figures_dir: str
    imta_epochs: int = 1
    maxmin_canvas: int = 64
    maxmin_item: int = 20
    policy_depth: int = 18
    policy_width: int = 16
    policy_epochs: int = 8
    stoch_runs: int = 4
    stoch_train: int = 8000
    stoch_epochs: int = 2
    suite_skip: tuple[str, ...] = ()
    device: str = "auto"
    speed: str = "fp32"
    imta_parent: str = "branch"
    imta_freeze: str = "all"
    imta_teacher: str = "pretrained"
    imta_kl: str = "mean"
    imta_seeds: int = 4
    imta_seed_train: int = 2000
    imta_seed_test: int = 2000
    maxmin_long_epochs: int = 0
    train_record_size: int = 12000
    svhn_extra: bool = False
    train_threads: int = 0
    cell_timeout: int = 3600

    def seed_or_own(self, seed: int | None) -> int:
        """The one rule for a seed: ``seed`` when given, else the preset's own (every ``seed=None`` means this)."""
        return self.seed if seed is None else seed

    def for_dataset(self, name: str) -> Preset:
        """The same preset with ``name`` as its main dataset (``datasets[0]``, which the experiments use)."""
        return replace(self, datasets=(name, *tuple(d for d in self.datasets if d != name)))

    @property
    def run_dir(self) -> Path:
        """``runs/<preset>/``: checkpoints, records, tables, executed notebooks (ignored by git)."""
        return ROOT / "runs" / self.name

    @property
    def figure_dir(self) -> Path:
        return ROOT / self.figures_dir

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {
    # CI: seconds per notebook. Tiny subsets, one epoch; numbers are meaningless, code paths are not.
    "smoke": Preset(
        name="smoke",
        datasets=("fashion_mnist",),
        data_fraction=0.02,
        val_fraction=0.2,
        epochs=1,
        lr_milestones=(),
        lr_schedule="onecycle",
        batch_size=64,
        eval_batch_size=256,
        lr=0.1,
        seed=0,
        maxmin_base="fashion_mnist",
        maxmin=MaxMinSizes(train=400, val=120, test=120),
        maxmin_epochs=1,
        figures_dir="runs/smoke/figures",
        policy_width=8,
        policy_epochs=1,
        stoch_runs=3,
        stoch_train=300,
        stoch_epochs=1,
        cell_timeout=600,
        imta_seeds=2,
        imta_seed_train=300,
        imta_seed_test=200,
        maxmin_long_epochs=2,
        train_threads=1,
    ),
    # The default main job on a 2-core CPU: the whole suite in <= 30 minutes.
    "cpu": Preset(
        name="cpu",
        datasets=("fashion_mnist",),
        data_fraction=1.0,
        val_fraction=0.2,
        epochs=2,
        lr_milestones=(),
        lr_schedule="onecycle",
        batch_size=64,
        eval_batch_size=512,
        lr=0.1,
        seed=0,
        # Max-Min: 12,000 composites on a 36 px canvas, 4 epochs (measured: M's last exit beats exit 1 on
        # hard composites by 12.0 [7.6, 16.2] points); val 4,000 so that the policy learns from enough D_ee labels
        maxmin_base="fashion_mnist",
        maxmin=MaxMinSizes(train=12000, val=4000, test=2000),
        maxmin_epochs=4,
        maxmin_canvas=36,
        maxmin_item=14,
        figures_dir="figures",
        policy_width=8,
        suite_skip=("09",),
        train_threads=1,
    ),
    # The thesis's settings (§3.1, ch. 4): 200 epochs, lr x0.1 at epochs 75 and 150; meant for a GPU.
    "paper": Preset(
        name="paper",
        datasets=("cifar100", "svhn", "mnist"),
        data_fraction=1.0,
        val_fraction=0.2,
        epochs=200,
        # lr ×0.1 at 37.5 % and 75 % of the epochs: 75 and 150 of 200, and the same shares of shorter runs
        lr_milestones=(0.375, 0.75),
        lr_schedule="step",
        batch_size=64,
        eval_batch_size=512,
        lr=0.1,
        seed=0,
        maxmin_base="mnist",
        maxmin=MaxMinSizes(train=80000, val=20000, test=20000),
        maxmin_epochs=5,
        figures_dir="figures/paper",
        imta_epochs=50,
        policy_depth=34,
        policy_width=64,
        policy_epochs=100,
        stoch_runs=5,
        stoch_train=40000,
        stoch_epochs=50,
        cell_timeout=7 * 24 * 3600,
        imta_seeds=3,
        imta_seed_train=0,
        imta_seed_test=0,
        maxmin_long_epochs=200,
        train_record_size=0,
        svhn_extra=True,
    ),
}


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
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda`` as asked (CUDA absent → ConfigError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but no CUDA device is visible: use device='cpu' or 'auto'")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}: use 'auto', 'cpu' or 'cuda'")
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


def config_hash(obj: Any) -> str:
    """A short, stable hash of a (nested) config: dataclasses, dicts, lists, scalars."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def safe_name(text: str, max_len: int = 80) -> str:
    """``text`` as one safe folder or file name: letters, digits, ``.``, ``_`` and ``-`` only, no leading dot, at
    most ``max_len`` characters. A name that had to change gets a hash of the original appended, so two different
    texts never share a name. Every name built from a file's contents or a parameter goes through here: ``../``, an
    absolute path or a NUL byte never becomes part of a path."""
    import re

    text = str(text)
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-")[:max_len]
    if clean != text or not clean:
        clean = f"{clean[: max_len - 9]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return clean.lstrip("-") or "x"


def _host() -> str:
    import socket

    return safe_name(socket.gethostname() or "host", 40)


#: A temporary file younger than this is never taken for an orphan (its writer may be alive where we cannot see it).
ORPHAN_AGE_S = 60


def remove_orphaned_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that writers on this host killed mid-write left in ``folder``
    (``.<name>.tmp-<host>-<pid>``, older than :data:`ORPHAN_AGE_S`, whose process is gone); those of live processes
    and of other hosts stay."""
    import re
    import time

    gone = []
    pattern = re.compile(rf"^\..+\.tmp-{re.escape(_host())}-(\d+)$")
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return gone
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            if time.time() - entry.stat().st_mtime < ORPHAN_AGE_S:
                continue  # young: perhaps a writer of another PID namespace with the same host name
            os.kill(int(m.group(1)), 0)
            continue  # its writer still runs
        except (ProcessLookupError, OverflowError, ValueError):
            pass  # no such process (or no such PID at all)
        except OSError:
            continue  # a live process of another user, or the file is gone already
        try:
            entry.unlink()
            gone.append(entry)
        except OSError:
            pass
    return gone


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename); temporaries that
    killed writers left in that folder are removed first (:func:`remove_orphaned_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{_host()}-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: no temporary left behind
        tmp.unlink(missing_ok=True)
        raise


def _pickle_global(path: Path) -> str | None:
    """The first callable a pickle (plain, or the ``data.pkl`` of a ``torch.save`` zip) names that is not one of
    torch's own tensor rebuilders — read with ``pickletools``, so nothing in it runs; None when it names none."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                member = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                raw = z.read(member) if member else b""
        else:
            raw = Path(path).read_bytes()
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(raw):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            name = (
                arg.replace(" ", ".")
                if op.name == "GLOBAL"
                else ".".join(strings[-2:])
                if op.name == "STACK_GLOBAL" and len(strings) >= 2
                else None
            )
            if name and not name.startswith(("torch.", "collections.OrderedDict", "builtins.set")):
                return name
    except Exception:
        return None
    return None


def safe_torch_load(path: Path, what: str, allow: list | None = None) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code the file carries.

    ``allow``: more globals to accept when the file needs them (data types, no code of the file's choosing).
    A truncated, corrupt or code-carrying file → one ConfigError naming ``what`` it should have been.
    """
    import pickle
    import re

    try:
        with torch.serialization.safe_globals(allow or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module x is blocked"
        found = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(err), re.IGNORECASE)
        name = found.group(1) if found else _pickle_global(path)
        if name:  # the file asks for a class or function to be called while loading
            raise ConfigError(
                f"{what} {path} carries objects that need code to load: refused (it asks for "
                f"{name}); open "
                "only files from sources you trust, or make it again"
            ) from None
        raise ConfigError(
            f"{what} {path} is truncated, corrupt or unreadable (UnpicklingError); make it again"
        ) from None
    except Exception as err:
        raise ConfigError(
            f"{what} {path} is truncated, corrupt or unreadable ({type(err).__name__}); make it again"
        ) from None


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically: a killed process never leaves a half-written file."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


__all__ = [
    "PRESETS",
    "ROOT",
    "ConfigError",
    "MaxMinSizes",
    "Preset",
    "atomic_torch_save",
    "atomic_write_bytes",
    "code_version",
    "config_hash",
    "get_device",
    "get_preset",
    "safe_name",
    "safe_torch_load",
    "seed_everything",
]
