"""Max-Min composites (thesis ch. 4): several small items on a black canvas, labelled max − min.

- easy: 1 item, label = its class; medium: 2 items; hard: 4 items; label = max − min of the item classes.
- levels 2:1:1, each level's labels balanced (10 classes); items resized to 20×20 and placed at random without
  overlap on a 64×64 canvas (both configurable).
- the level, the item classes, their source indices and positions of every sample are kept in ``extras``.
- a pure function of (seed, sizes, base split): train/val/test composites use the base dataset's train/val/test
  images, which are disjoint.

Item classes for label L of a multi-item level: the minimum m is uniform on 0..9−L; the items are m and m+L, and for
hard the two others are uniform on m..m+L; the order on the canvas is random.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from .registry import ImageSet, get_dataset, register_builder

LEVELS = ("easy", "medium", "hard")
ITEMS_PER_LEVEL = (1, 2, 4)
DEFAULT_SIZES = {"train": 80_000, "val": 20_000, "test": 20_000}
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
MAXMIN_MEAN, MAXMIN_STD = (0.056,), (0.185,)  # measured on 80,000 Fashion-MNIST composites (pixels in [0, 1])


def _place(rng: np.random.Generator, n: int, k: int, canvas: int, item: int) -> np.ndarray:
    """Top-left corners ``[n, k, 2]`` (y, x) of ``k`` non-overlapping ``item``-squares per sample (rejection)."""
    hi = canvas - item + 1
    pos = rng.integers(0, hi, size=(n, k, 2))
    if k == 1:
        return pos
    todo = np.arange(n)
    for _ in range(10_000):
        p = pos[todo]
        d = np.abs(p[:, :, None, :] - p[:, None, :, :])  # [m, k, k, 2]
        overlap = (d < item).all(-1) & ~np.eye(k, dtype=bool)
        bad = overlap.any((1, 2))
        if not bad.any():
            return pos
        todo = todo[bad]
        pos[todo] = rng.integers(0, hi, size=(len(todo), k, 2))
    raise ConfigError(
        f"cannot place {k} items of {item}px without overlap on a {canvas}px canvas: "
        "use a larger canvas or smaller items"
    )


def _item_classes(rng: np.random.Generator, labels: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Item classes ``[n, k]`` whose max − min equals ``labels`` (k = 1: the label itself)."""
    if k == 1:
        return labels[:, None].copy()
    lo = (rng.random(len(labels)) * (num_classes - labels)).astype(np.int64)  # uniform on 0..C-1-L
    cls = lo[:, None] + (rng.random((len(labels), k)) * (labels[:, None] + 1)).astype(np.int64)
    cls[:, 0], cls[:, 1] = lo, lo + labels
    return rng.permuted(cls, axis=1)


def make_maxmin(base: ImageSet, size: int, *, seed: int = 0, canvas: int = 64, item_size: int = 20) -> ImageSet:
    """Build ``size`` composites from the images of ``base`` (must be a multiple of 4 × classes)."""
    c = base.num_classes
    if size <= 0 or size % (4 * c):
        raise ConfigError(
            f"Max-Min size must be a positive multiple of {4 * c} (levels 2:1:1 × {c} balanced labels), got {size}"
        )
    if canvas < 2 * item_size:
        raise ConfigError(f"Max-Min canvas ({canvas}) must be at least twice the item size ({item_size})")
    rng = np.random.default_rng(seed)
    counts = (size // 2, size // 4, size // 4)
    level = np.concatenate([np.full(n, i) for i, n in enumerate(counts)])
    labels = np.concatenate([np.repeat(np.arange(c), n // c) for n in counts])
    kmax = max(ITEMS_PER_LEVEL)
    classes = np.full((size, kmax), -1, dtype=np.int64)
    pos = np.zeros((size, kmax, 2), dtype=np.int64)
    start = 0
    for n, k in zip(counts, ITEMS_PER_LEVEL):
        sl = slice(start, start + n)
        classes[sl, :k] = _item_classes(rng, labels[sl], k, c)
        pos[sl, :k] = _place(rng, n, k, canvas, item_size)
        start += n
    # pick a random base image of each item's class
    base_labels = base.labels.numpy()
    order = np.argsort(base_labels, kind="stable")
    per_class = np.bincount(base_labels, minlength=c)
    if (per_class == 0).any():
        raise ConfigError(f"base set {base.name}/{base.split} lacks classes {np.flatnonzero(per_class == 0)}")
    first = np.concatenate([[0], np.cumsum(per_class)[:-1]])
    used = classes >= 0
    safe = np.where(used, classes, 0)
    pick = order[first[safe] + (rng.random(classes.shape) * per_class[safe]).astype(np.int64)]
    item_row = np.where(used, pick, -1)
    # resize every base image once, then paste items slot by slot (vectorised over samples)
    small = (
        F.interpolate(
            base.images.float(), size=(item_size, item_size), mode="bilinear", antialias=True, align_corners=False
        )
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
    )  # [M, C, s, s]
    out = torch.zeros(size, base.channels, canvas, canvas, dtype=torch.uint8)
    ar = torch.arange(item_size)
    for j in range(kmax):
        rows = torch.from_numpy(np.flatnonzero(used[:, j]))
        ys = torch.from_numpy(pos[rows.numpy(), j, 0])[:, None] + ar  # [m, s]
        xs = torch.from_numpy(pos[rows.numpy(), j, 1])[:, None] + ar
        patch = small[torch.from_numpy(item_row[rows.numpy(), j])]  # [m, C, s, s]
        n_i = rows[:, None, None, None]
        c_i = torch.arange(base.channels)[None, :, None, None]
        out[n_i, c_i, ys[:, None, :, None], xs[:, None, None, :]] = patch
    base_index = np.where(used, base.indices.numpy()[np.maximum(item_row, 0)], -1)
    extras = {
        "level": torch.from_numpy(level),
        "item_classes": torch.from_numpy(classes),
        "item_index": torch.from_numpy(base_index),
        "item_pos": torch.from_numpy(pos),
    }
    info = {
        "base": base.name,
        "base_split": base.split,
        "seed": seed,
        "canvas": canvas,
        "item_size": item_size,
        "base_info": base.info,
    }
    return ImageSet(
        "maxmin",
        base.split,
        out,
        torch.from_numpy(labels),
        torch.arange(size),
        c,
        MAXMIN_MEAN,
        MAXMIN_STD,
        {},
        extras,
        info,
        tuple(str(i) for i in range(c)),
    )


def get_maxmin(
    split: str,
    *,
    base: str = "fashion_mnist",
    size: int | None = None,
    canvas: int = 64,
    item_size: int = 20,
    seed: int = 0,
    root=None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    download: bool = True,
) -> ImageSet:
    """The Max-Min ``split`` built on ``base``'s same split (disjoint base images across splits)."""
    if base not in ("mnist", "fashion_mnist"):
        raise ConfigError(f"Max-Min base must be 'mnist' or 'fashion_mnist', got {base!r}")
    base_set = get_dataset(base, split, root=root, val_fraction=val_fraction, split_seed=split_seed, download=download)
    n = DEFAULT_SIZES[split] if size is None else int(size)
    return make_maxmin(
        base_set,
        n,
        seed=int(np.random.SeedSequence([seed, _SPLIT_ID[split]]).generate_state(1)[0]),
        canvas=canvas,
        item_size=item_size,
    )


register_builder("maxmin", get_maxmin)


def check_composites(ds: ImageSet) -> dict:
    """What notebook 01 checks of a Max-Min split: its labels re-derived from the item classes it records (easy: the
    item's class; else the largest minus the smallest class), the level counts, and whether every label is as frequent."""
    cls, lvl = ds.extras["item_classes"].numpy(), ds.extras["level"].numpy()
    used = cls >= 0
    derived = np.where(lvl == 0, cls[:, 0], np.where(used, cls, -1).max(1) - np.where(used, cls, 99).min(1))
    return {
        "split": ds.split,
        "size": len(ds),
        "labels_rederived": bool((derived == ds.labels.numpy()).all()),
        "easy:medium:hard": ":".join(str(int((lvl == i).sum())) for i in range(3)),
        "label counts equal": bool(len(set(np.bincount(ds.labels.numpy()).tolist())) == 1),
    }
