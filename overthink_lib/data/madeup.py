"""Made-up datasets in the official file formats, for rehearsals and tests: the real loaders read them.

Each class has a pattern of its own (a coarse random picture, upsampled) under strong noise, so a network learns
something in a few epochs and the analyses see exits that differ -- but nothing here is a dataset, and every folder
written is marked (:func:`~overthink_lib.data.checksums.mark_made_up`): the loaders skip the checksum check only
there and say so, and a made-up file can never pass for the real one elsewhere.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .checksums import mark_made_up
from .sources import _IDX_FILES, write_idx

#: Images per split of each made-up dataset: (train, test[, extra]).
SIZES = {"cifar100": (2000, 500), "svhn": (2000, 500, 700), "mnist": (2000, 500)}


def _images(seed: int, noise: np.random.Generator, labels: np.ndarray, classes: int, channels: int, size: int):
    """``[N, C, size, size]`` uint8: the label's pattern (4×4, upsampled; the same for every split of a dataset, from
    ``seed``) plus this split's own noise."""
    patterns = np.random.default_rng(seed).integers(0, 256, (classes, channels, 4, 4)).astype(np.float32)
    base = np.kron(patterns[labels], np.ones((1, 1, size // 4, size // 4), np.float32))
    return np.clip(base + noise.normal(0, 60, base.shape), 0, 255).astype(np.uint8)


def _labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes)


def write_cifar100(root: Path, seed: int = 0, sizes: tuple[int, int] = SIZES["cifar100"]) -> Path:
    """``root/cifar-100-python/{train,test,meta}`` as the release's python pickles (100 fine, 20 coarse classes)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "test"), sizes):
        labels = _labels(rng, n, 100)
        entry = {
            b"data": _images(seed + 1, rng, labels, 100, 3, 32).reshape(n, -1),
            b"fine_labels": labels.tolist(),
            b"coarse_labels": (labels // 5).tolist(),
            b"filenames": [f"made_up_{i}.png".encode() for i in range(n)],
        }
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)], b"coarse_label_names": []}
    meta[b"coarse_label_names"] = [f"super{i:02d}".encode() for i in range(20)]
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    mark_made_up(folder, "overthink_lib.data.madeup")
    return folder


def write_svhn(root: Path, seed: int = 0, sizes: tuple[int, int, int] = SIZES["svhn"]) -> Path:
    """``root/svhn/{train,test,extra}_32x32.mat`` as the release's MATLAB v5 files (``X`` [32, 32, 3, N], ``y`` 1..10)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "test", "extra"), sizes):
        labels = _labels(rng, n, 10)
        images = _images(seed + 2, rng, labels, 10, 3, 32)
        y = np.where(labels == 0, 10, labels).reshape(-1, 1).astype(np.uint8)  # the digit 0 is stored as 10
        savemat(folder / f"{split}_32x32.mat", {"X": np.transpose(images, (2, 3, 1, 0)), "y": y})
    mark_made_up(folder, "overthink_lib.data.madeup")
    return folder


def write_mnist(root: Path, seed: int = 0, sizes: tuple[int, int] = SIZES["mnist"], folder: str = "MNIST") -> Path:
    """``root/<folder>/raw/`` IDX files as the release's (decompressed, as torchvision leaves them)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "test"), sizes):
        labels = _labels(rng, n, 10)
        images = _images(seed + 3, rng, labels, 10, 1, 28)[:, 0]
        img, lab = _IDX_FILES[split]
        write_idx(raw / img, images)
        write_idx(raw / lab, labels.astype(np.uint8))
    mark_made_up(raw, "overthink_lib.data.madeup")
    return raw


WRITERS = {"cifar100": write_cifar100, "svhn": write_svhn, "mnist": write_mnist}


def write_made_up(root: Path, names=("cifar100", "svhn", "mnist"), seed: int = 0) -> list[Path]:
    """Every dataset of ``names`` made up under ``root`` (a data folder to point ``OVERTHINK_DATA`` at)."""
    return [WRITERS[name](root, seed) for name in names]


__all__ = ["SIZES", "WRITERS", "write_cifar100", "write_made_up", "write_mnist", "write_svhn"]


#: Formats a made-up image folder cycles through: (extension, PIL mode), so every decoder path is exercised.
FOLDER_FORMATS = (("jpg", "RGB"), ("png", "L"), ("png", "RGBA"), ("bmp", "RGB"), ("JPEG", "CMYK"), ("webp", "RGB"))


def write_image_folder(
    root: Path,
    classes: int = 10,
    per_class: tuple[int, int] = (20, 10),
    *,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = ((500, 375), (375, 500), (96, 80), (320, 320)),
    corrupt: int = 0,
) -> Path:
    """``root/{train,val}/cNN/*.{jpg,png,...}`` in torchvision's ImageFolder layout: ``per_class`` images per class in
    train and val, of several sizes and formats (:data:`FOLDER_FORMATS`), each class its own coarse pattern under
    noise; ``corrupt`` files in val are truncated JPEGs. Marked made-up. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    patterns = np.random.default_rng(seed + 1).integers(0, 256, (classes, 3, 4, 4)).astype(np.float32)
    n = 0
    for split, count in zip(("train", "val"), per_class):
        for c in range(classes):
            folder = root / split / f"c{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = sizes[n % len(sizes)]
                ext, mode = FOLDER_FORMATS[n % len(FOLDER_FORMATS)]
                n += 1
                small = np.clip(patterns[c] + rng.normal(0, 40, patterns[c].shape), 0, 255).astype(np.uint8)
                im = Image.fromarray(small.transpose(1, 2, 0)).resize((w, h), Image.BILINEAR).convert(mode)
                im.save(folder / f"{split}_{c:02d}_{i:04d}.{ext}")
    val_files = sorted((root / "val").rglob("*.jpg"))
    for path in val_files[:corrupt]:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])  # a download cut short
    mark_made_up(root)
    return root
