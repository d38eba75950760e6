"""Image folders at any scale (torchvision's layout), streamed from disk: ``imagefolder``, ``imagenette``, ``imagenet``.

``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>`` (ImageNet's validation images sorted into class
folders, as torchvision's ``ImageFolder`` expects). Splits follow the rest of the registry: ``test`` is the ``val``
folder, ``val`` a seeded hold-out of the ``train`` folder (ImageNet: 50,000 images, as the official MSDNet code's
``--use-valid``), ``train`` the rest. A :class:`FolderSet` holds file names and labels only; images are decoded
batch by batch in DataLoader workers with the standard ImageNet evaluation transform (resize 256, centre crop 224,
normalise with ImageNet's mean and std), so records of ImageNet-size sets need memory for the logits, not the
images (:meth:`FolderSet.batches`).

An unreadable or corrupt image stops the run with one line naming the file (decided: a record must cover the whole
split, so that its accuracy compares with published numbers; silently skipping files changes the denominator).
Remove or replace the file, or pass ``exclude=[...]`` to leave it out on purpose (said in the provenance).
The named configurations read ``data/imagenette2`` (fastai's Imagenette: ``imagenette2.tgz``, or the 320 px/160 px
versions) and ``data/imagenet``; ``imagefolder`` takes ``root=``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ConfigError
from .checksums import MADE_UP, DatasetMissing
from .registry import ImageSet, register_builder, split_rows
from .sources import DATA_ROOT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: Named configurations: default folder under the data root, how to get it, hold-out size of ``val``.
NAMED = {
    "imagenette": {
        "folders": ("imagenette2", "imagenette2-320", "imagenette2-160"),
        "how": "download https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz and unpack it into data/",
        "val_count": None,
    },
    "imagenet": {
        "folders": ("imagenet",),
        "how": "put ILSVRC-2012 under data/imagenet/{train,val}/<wnid>/ (the validation images sorted into class "
        "folders, as torchvision's ImageFolder expects)",
        "val_count": 50_000,
    },
}


def _decode(path: Path, resize: int, crop: int) -> torch.Tensor:
    """uint8 ``[3, crop, crop]``: RGB, shorter side resized to ``resize`` (bilinear, antialiased), centre crop."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as im:
        im = im.convert("RGB")
        im = TF.center_crop(TF.resize(im, resize, antialias=True), crop)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


@dataclass
class FolderSet(torch.utils.data.Dataset):
    """A split of an image folder: names and labels in memory, pixels on disk. Items are ``(image, label, index)``
    like :class:`ImageSet`'s; an unreadable image gives label −1 (:meth:`batches` turns it into one error line).

    Attributes:
        root: the dataset folder (holding ``train/`` and/or ``val/``).
        files: paths relative to ``root``, in a fixed order (class folders sorted, then file names).
        indices: the sample's position in its folder's sorted list (``train`` and ``val`` share the train folder's).
    """

    name: str
    split: str
    root: Path
    files: list[str]
    labels: torch.Tensor
    indices: torch.Tensor
    class_names: tuple[str, ...]
    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return 3

    @property
    def extras(self) -> dict[str, torch.Tensor]:
        return {}

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        """The uint8 ``[3, crop, crop]`` image of row ``i`` (an unreadable file: one ConfigError naming it)."""
        path = self.root / self.files[i]
        try:
            return _decode(path, self.resize, self.crop)
        except Exception as err:
            raise ConfigError(
                f"{path} is not a readable image ({type(err).__name__}: {str(err).splitlines()[0][:120]}): remove or "
                "replace it, or leave it out with exclude=[...]"
            ) from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        try:
            x = _decode(self.root / self.files[i], self.resize, self.crop)
        except Exception:
            return torch.zeros(3, self.crop, self.crop), -1, int(self.indices[i])
        x = x.float().div_(255)
        x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        return x, int(self.labels[i]), int(self.indices[i])

    def batches(self, batch_size: int = 64, workers: int | None = None):
        """``(x, y, index)`` batches in order, decoded by ``workers`` DataLoader processes (default: the cores, up to
        8); an unreadable image stops the iteration with one ConfigError naming it."""
        workers = min(8, os.cpu_count() or 1) if workers is None else workers
        loader = torch.utils.data.DataLoader(
            self, batch_size=batch_size, shuffle=False, num_workers=workers, persistent_workers=False
        )
        start = 0
        for x, y, idx in loader:
            if (y < 0).any():  # decode it again here: the worker's exception would arrive as a traceback
                self.image(start + int(torch.nonzero(y < 0)[0]))
            start += len(y)
            yield x, y, idx

    def subset(self, rows) -> FolderSet:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return replace(
            self,
            files=[self.files[i] for i in rows.tolist()],
            labels=self.labels[rows],
            indices=self.indices[rows],
            info=dict(self.info),
        )

    def to_imageset(self, rows=None) -> ImageSet:
        """Rows of this split decoded into an in-memory uint8 :class:`ImageSet` (resized and cropped), for the
        analyses that read pixels (DCT, GradCAM) or a small training set."""
        part = self if rows is None else self.subset(rows)
        images = torch.stack([part.image(i) for i in range(len(part))]) if len(part) else torch.zeros(0, 3, 1, 1)
        return ImageSet(
            part.name,
            part.split,
            images.to(torch.uint8),
            part.labels.clone(),
            part.indices.clone(),
            part.num_classes,
            part.mean,
            part.std,
            {"pad": 0, "flip": True},
            {},
            {**part.info, "decoded_from": "folder", "fingerprint_of_files": part.fingerprint()},
            part.class_names,
        )

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of every file's name, size and modification time, and the labels and indices:
        another folder's contents never reuse this one's records (reading every byte of ImageNet would take minutes)."""
        h = hashlib.sha256()
        for rel in self.files:
            st = (self.root / rel).stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        h.update(self.labels.numpy().tobytes())
        h.update(self.indices.numpy().tobytes())
        h.update(f"{self.resize}/{self.crop}".encode())
        return h.hexdigest()[:16]

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "size": len(self),
            "num_classes": self.num_classes,
            "shape": [3, self.crop, self.crop],
            "root": str(self.root),
            "transform": f"resize {self.resize}, centre crop {self.crop}, ImageNet mean/std",
            **self.info,
            "fingerprint": self.fingerprint(),
        }


def _list_folder(folder: Path) -> tuple[list[str], list[int], tuple[str, ...]]:
    """Sorted class folders and their image files (by extension, case-insensitive), relative to ``folder.parent``."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ConfigError(f"{folder} holds no class folders: expected {folder}/<class>/<image> (ImageFolder's layout)")
    files, labels = [], []
    for c, name in enumerate(classes):
        for entry in sorted(os.scandir(folder / name), key=lambda e: e.name):
            if entry.is_file() and entry.name.lower().endswith(EXTENSIONS):
                files.append(f"{folder.name}/{name}/{entry.name}")
                labels.append(c)
    if not files:
        raise ConfigError(f"{folder} holds no images ({', '.join(EXTENSIONS)})")
    return files, labels, tuple(classes)


def _resolve_root(name: str, root) -> Path:
    if name == "imagefolder":
        if root is None:
            raise ConfigError("dataset 'imagefolder' needs root=<folder holding train/ and/or val/>")
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DatasetMissing(f"imagefolder: no folder {folder}")
        return folder
    named = NAMED[name]
    base = Path(root).expanduser() if root is not None else DATA_ROOT
    for sub in named["folders"]:
        if (base / sub).is_dir():
            return base / sub
    if root is not None and ((base / "train").is_dir() or (base / "val").is_dir()):
        return base
    raise DatasetMissing(f"{name} is not on disk (looked for {', '.join(named['folders'])} in {base}): {named['how']}")


def folder_dataset(
    name: str,
    split: str,
    *,
    root=None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    download: bool = True,
    resize: int = 256,
    crop: int = 224,
    limit: int | None = None,
    exclude: list[str] | tuple[str, ...] = (),
) -> FolderSet:
    """A split of an image folder (see the module docstring). ``limit``: the first ``limit`` images of a seeded
    permutation of the split (a subset on a small machine). ``exclude``: files (relative to the root) to leave out."""
    if not (isinstance(resize, int) and isinstance(crop, int) and 0 < crop <= resize):
        raise ConfigError(f"{name}: resize and crop must be integers with 0 < crop <= resize, got {resize}, {crop}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{name}: limit must be a count >= 1, got {limit!r}")
    folder = _resolve_root(name, root)
    sub = folder / ("val" if split == "test" else "train")
    if not sub.is_dir():
        raise DatasetMissing(
            f"{name}: no {sub} for the {split} split (test reads val/, train and val read train/)"
            + (f": {NAMED[name]['how']}" if name in NAMED else "")
        )
    files, labels, classes = _list_folder(sub)
    if split == "test":
        rows = np.arange(len(files))
    else:
        val_count = NAMED.get(name, {}).get("val_count")
        fraction = val_count / len(files) if val_count and val_count < len(files) else val_fraction
        train_rows, val_rows = split_rows(len(files), fraction, split_seed)
        rows = train_rows if split == "train" else val_rows
    info: dict[str, Any] = {"val_fraction": val_fraction, "split_seed": split_seed, "resize": resize, "crop": crop}
    if (folder / MADE_UP).exists():  # written by data.madeup: said here and in every record's provenance
        import warnings

        warnings.warn(
            f"dataset {name!r}: {folder} holds made-up files ({MADE_UP}), not the dataset: numbers from them mean nothing",
            UserWarning,
            stacklevel=2,
        )
        info["made_up"] = True
    if exclude:
        unknown = sorted(set(exclude) - set(files))
        if unknown:
            raise ConfigError(f"{name}: exclude names {unknown[0]!r}, which is not an image of {folder}")
        drop = set(exclude)
        rows = np.array([r for r in rows if files[r] not in drop], dtype=np.int64)
        info["excluded"] = sorted(drop)
    if limit is not None and limit < len(rows):
        rows = np.sort(np.random.default_rng(split_seed + 1).permutation(rows)[:limit])
        info["limit"] = limit
    return FolderSet(
        name,
        split,
        folder,
        [files[r] for r in rows],
        torch.as_tensor(np.asarray(labels)[rows], dtype=torch.long),
        torch.as_tensor(rows, dtype=torch.long),
        classes,
        resize,
        crop,
        info=info,
    )


for _name in ("imagefolder", *NAMED):
    register_builder(_name, lambda split, _n=_name, **kw: folder_dataset(_n, split, **kw))

__all__ = ["EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD", "NAMED", "FolderSet", "folder_dataset"]
