"""Whole-batch iteration over an in-memory :class:`ImageSet`: no per-sample Python work, augmentation on device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .registry import ImageSet


def normalize(ds: ImageSet, x: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` → normalised float32 on ``x``'s device."""
    mean = torch.tensor(ds.mean, device=x.device)[:, None, None]
    std = torch.tensor(ds.std, device=x.device)[:, None, None]
    return (x.float().div_(255) - mean) / std


def augment_batch(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with ``pad`` zero padding and random horizontal flip, per sample, on a uint8 batch.

    ``generator`` is a CPU generator, so the same seed gives the same augmentation on every device.
    """
    b, _, h, w = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
        x = xp[
            torch.arange(b, device=x.device)[:, None, None, None],
            torch.arange(x.shape[1], device=x.device)[None, :, None, None],
            rows,
            cols,
        ]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def iterate(
    ds: ImageSet,
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x [B, C, H, W] float normalised, y [B], index [B])`` on ``device``.

    Args:
        shuffle: a permutation drawn from ``seed`` (pass a different seed per epoch).
        augment: apply the set's training augmentation, drawn from ``seed`` too.
        rank, world_size: distributed sharding: rank r takes every world_size-th sample of the permutation.
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ds), generator=gen) if shuffle else torch.arange(len(ds))
    if world_size > 1:
        usable = len(order) - len(order) % world_size
        order = order[:usable][rank::world_size]
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        rows = order[start : start + batch_size]
        x = ds.images[rows].to(device, non_blocking=True)
        if augment and ds.augment:
            x = augment_batch(x, ds.augment.get("pad", 0), ds.augment.get("flip", False), gen)
        yield normalize(ds, x), ds.labels[rows].to(device), ds.indices[rows]
