"""One registry of datasets; every item is ``(image, label, index)``.

``get_dataset(name, split)`` with split ``train`` / ``val`` / ``test``: ``val`` is a seeded hold-out of the training
file (20 % by default), so the threshold and policy experiments have a validation set. Sets live in memory as
uint8 tensors (all of ours fit), which makes batching and augmentation whole-batch tensor work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from . import sources

SPLITS = ("train", "val", "test")


@dataclass
class ImageSet(torch.utils.data.Dataset):
    """An in-memory image set.

    Attributes:
        name: registry name.
        split: ``train``, ``val`` or ``test``.
        images: ``[N, C, H, W]`` uint8.
        labels: ``[N]`` int64.
        indices: ``[N]`` int64 — the sample's index in its source file (the training file for train and val), so a
            sample is the same sample in every record and every run.
        num_classes: number of classes.
        mean, std: per-channel normalisation (on [0, 1] pixels).
        augment: ``{"pad": int, "flip": bool}`` for training-time random crop and horizontal flip (``{}`` = none).
        extras: per-sample extras (``[N, ...]`` tensors), e.g. the Max-Min level and item classes.
        info: provenance of the split (seed, fractions, sizes).
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: dict = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x = self.images[i].float().div_(255)
        x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        return x, int(self.labels[i]), int(self.indices[i])

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the pixels, labels and indices: the data's contents in every run and record key,
        so other files of the same name, split and size never reuse a network or record made from these. Kept until
        a tensor changes (in-place changes bump its version)."""
        import hashlib

        tensors = (self.images, self.labels, self.indices)
        versions = tuple(t._version for t in tensors)
        cached = self.__dict__.get("_fingerprint")  # (the tensors themselves, their versions, the hash)
        if cached is None or cached[1] != versions or any(a is not b for a, b in zip(cached[0], tensors)):
            h = hashlib.sha256()
            for t in tensors:
                h.update(str((t.dtype, tuple(t.shape))).encode())
                h.update(t.contiguous().numpy().data)  # the buffer itself: no copy of a whole split
            cached = (tensors, versions, h.hexdigest()[:16])
            self.__dict__["_fingerprint"] = cached
        return cached[2]

    def subset(self, rows: torch.Tensor | np.ndarray) -> ImageSet:
        """The rows ``rows`` (positions, not dataset indices) as a new set sharing nothing mutable."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return ImageSet(
            self.name,
            self.split,
            self.images[rows],
            self.labels[rows],
            self.indices[rows],
            self.num_classes,
            self.mean,
            self.std,
            dict(self.augment),
            {k: v[rows] for k, v in self.extras.items()},
            dict(self.info),
            self.class_names,
        )

    def provenance(self) -> dict[str, Any]:
        """Provenance for records and checkpoints."""
        return {
            "name": self.name,
            "split": self.split,
            "size": len(self),
            "num_classes": self.num_classes,
            "shape": list(self.images.shape[1:]),
            **self.info,
            "fingerprint": self.fingerprint(),
        }


@dataclass(frozen=True)
class DatasetSpec:
    loader: Callable[..., dict]  # (root, download, **kw) → {"train": (x, y), "test": (x, y), ...}
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: dict
    class_names: tuple[str, ...] | None = None


_REGISTRY: dict[str, DatasetSpec] = {}
#: Datasets built from others (e.g. Max-Min composites): ``builder(split, *, root, val_fraction, split_seed,
#: download, **options) -> ImageSet``. They register themselves, so this module imports none of them.
_BUILDERS: dict[str, Callable[..., ImageSet]] = {}


def register_dataset(name: str, spec: DatasetSpec) -> None:
    """A dataset read from files: its loader returns uint8 arrays per file split."""
    _REGISTRY[name] = spec


def register_builder(name: str, builder: Callable[..., ImageSet]) -> None:
    """A dataset built from registered ones (``builder(split, **options)``), e.g. ``maxmin``."""
    _BUILDERS[name] = builder


def list_datasets() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILDERS))


FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
register_dataset(
    "fashion_mnist",
    DatasetSpec(
        lambda root, download: sources.load_mnist_format("fashion_mnist", root, download),
        10,
        (0.2860,),
        (0.3530,),
        {"pad": 2, "flip": True},
        FASHION_CLASSES,
    ),
)
register_dataset(
    "mnist",
    DatasetSpec(
        lambda root, download: sources.load_mnist_format("mnist", root, download),
        10,
        (0.1307,),
        (0.3081,),
        {"pad": 2, "flip": False},
        tuple(str(i) for i in range(10)),
    ),
)
register_dataset(
    "cifar10",
    DatasetSpec(
        lambda root, download: sources.load_cifar("cifar10", root, download),
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        {"pad": 4, "flip": True},
        None,
    ),
)
register_dataset(
    "cifar100",
    DatasetSpec(
        lambda root, download: sources.load_cifar("cifar100", root, download),
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        {"pad": 4, "flip": True},
        None,
    ),
)
register_dataset(
    "svhn",
    DatasetSpec(
        lambda root, download: sources.load_svhn(root, download),
        10,
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        {"pad": 4, "flip": False},
        tuple(str(i) for i in range(10)),
    ),
)

#: Number of SVHN "extra" samples added to each of validation and test when ``svhn_extra=True`` (the thesis).
SVHN_EXTRA_TOPUP = 25_000


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation partition of ``range(n)``; returns sorted (train_rows, val_rows)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _fraction_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(n)
    keep = max(1, round(n * fraction))
    return np.sort(np.random.default_rng(seed + 1).permutation(n)[:keep])


def get_dataset(
    name: str,
    split: str,
    *,
    root=None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    fraction: float = 1.0,
    download: bool = True,
    svhn_extra: bool | int = False,
    **kwargs,
) -> ImageSet:
    """Load a dataset split from the registry.

    Args:
        name: one of :func:`list_datasets`.
        split: ``train``, ``val`` (seeded hold-out of the training file) or ``test``.
        root: data folder (default ``data/``).
        val_fraction: share of the training file held out as ``val``.
        split_seed: seed of the train/val partition (and of ``fraction`` subsets).
        fraction: keep a seeded subset of this share of the split (smoke runs).
        download: try torchvision's download when files are missing.
        svhn_extra: SVHN only — top up val and test with 25,000 "extra" samples each (the thesis; a number: that
            many, as a preset's rehearsal does); their indices
            continue after the file's own (val: 73,257 + i; test: 26,032 + 25,000 + i ... see ``info``).
        **kwargs: options of a built dataset (``maxmin``: see :func:`overthink_lib.data.maxmin.get_maxmin`).
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if name in _BUILDERS:
        return _BUILDERS[name](
            split, root=root, val_fraction=val_fraction, split_seed=split_seed, download=download, **kwargs
        )
    if name not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(list_datasets())}")
    if kwargs:
        raise ConfigError(f"dataset {name!r} takes no option(s) {', '.join(kwargs)}")
    if svhn_extra and name != "svhn":
        raise ConfigError("svhn_extra=True applies only to the 'svhn' dataset")
    spec = _REGISTRY[name]
    topup = svhn_extra and split in ("val", "test")  # the training split never reads the 531k-image extra file
    arrays = spec.loader(root, download)
    info: dict[str, Any] = {"val_fraction": val_fraction, "split_seed": split_seed, "fraction": fraction}
    if arrays.get("made_up"):  # files from a folder marked MADE-UP-DATA: said in every run's and record's provenance
        info["made_up"] = True
    if split == "test":
        images, labels = arrays["test"]
        indices = np.arange(len(labels))
    else:
        images, labels = arrays["train"]
        train_rows, val_rows = split_rows(len(labels), val_fraction, split_seed)
        rows = train_rows if split == "train" else val_rows
        images, labels, indices = images[rows], labels[rows], rows
    if topup:
        if svhn_extra is not True and (
            isinstance(svhn_extra, bool) or not isinstance(svhn_extra, int) or svhn_extra < 1
        ):
            raise ConfigError(f"svhn_extra must be True or a count >= 1, got {svhn_extra!r}")
        count = SVHN_EXTRA_TOPUP if svhn_extra is True else svhn_extra
        ex_x, ex_y, part = sources.svhn_extra_topup(root, download, split_seed, count)[split]
        offset = len(arrays["train"][1]) + len(arrays["test"][1])  # extra indices live after train and test
        images = np.concatenate([images, ex_x])
        labels = np.concatenate([labels, ex_y])
        indices = np.concatenate([indices, offset + part])
        info["svhn_extra"] = {"count": len(part), "index_offset": offset}
    rows = _fraction_rows(len(labels), fraction, split_seed)
    return ImageSet(
        name,
        split,
        torch.from_numpy(np.ascontiguousarray(images[rows])),
        torch.from_numpy(np.asarray(labels[rows], dtype=np.int64)),
        torch.from_numpy(np.asarray(indices[rows], dtype=np.int64)),
        spec.num_classes,
        spec.mean,
        spec.std,
        dict(spec.augment),
        {},
        info,
        arrays.get("class_names") or spec.class_names,  # a release's own names (CIFAR's meta file) first
    )
