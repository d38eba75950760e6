"""Making ExitRecords from models: the lab's own (cached by the weights' hash) and anyone's.

Sits beside :mod:`.train` (it runs models); :mod:`.records` below it knows only records and their files, so the
analyses never depend on training code.

- :func:`make_record` / :func:`cached_record`: a lab model (the multi-exit contract) on an :class:`ImageSet`;
- :func:`record_from_folder`: the same over an image folder streamed from disk (ImageNet-size sets);
- :func:`record_from_model`: any ``nn.Module`` whose forward returns a list or tuple of per-exit logits (the SDN, ZTW
  and IMTA convention), on an :class:`ImageSet`, a pair of tensors ``(x, y)`` or an iterable of ``(x, y, ...)``
  batches (e.g. a ``DataLoader``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import COMPUTE_VERSIONS, ConfigError, code_version
from .data import ImageSet
from .io import config_hash
from .records import SUFFIX, ExitRecord


def make_record(
    model,
    ds: ImageSet,
    *,
    device: torch.device | None = None,
    batch_size: int = 512,
    provenance: dict[str, Any] | None = None,
    progress: bool = False,
    weights_hash: str | None = None,
    speed=None,
    predicted: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> ExitRecord:
    """Run ``model`` (eval mode, no augmentation) over ``ds`` and keep every exit's logits.

    ``weights_hash``: the model's :func:`~overthink_lib.train.state_hash` when the caller already has it.
    ``speed``: inference :class:`~overthink_lib.speed.Speed` (default fp32 eager, what the lab's records use);
    anything else is written into the provenance.
    ``predicted``: what :func:`~overthink_lib.train.predict` returned for exactly this model, ``ds``, batch size and
    speed (e.g. :func:`~overthink_lib.train.load_predictions`); the model is then not run again.
    """
    from .flops import exit_flops
    from .speed import Speed
    from .train import predict, state_hash

    if (
        getattr(model, "config", None) is not None
        and hasattr(model.config, "num_classes")
        and model.config.num_classes != ds.num_classes
    ):
        raise ConfigError(
            f"model has {model.config.num_classes} classes but dataset {ds.name} has {ds.num_classes}: "
            "train a model for this dataset"
        )
    speed = (speed or Speed()).resolve()
    logits, labels, indices = (
        predicted
        if predicted is not None
        else predict(model, ds, batch_size=batch_size, device=device, progress=progress, speed=speed)
    )
    flops = torch.tensor(exit_flops(model, tuple(ds.images.shape[1:])), dtype=torch.float64)
    prov = {
        "model_spec": getattr(model, "spec", None),
        "dataset": ds.provenance(),
        "weights_hash": weights_hash or state_hash(model),
        "code_version": code_version(),
        **({} if speed.is_default else {"inference_speed": speed.describe()}),
        **(provenance or {}),
    }
    return ExitRecord(logits, labels, indices, flops, {k: v.clone() for k, v in ds.extras.items()}, prov)


def cached_record(model, ds: ImageSet, cache_dir: Path, *, predictions: Path | None = None, **kwargs) -> ExitRecord:
    """:func:`make_record`, cached in ``cache_dir`` under a key of (weights hash, dataset description).

    ``predictions``: a run's folder of logits kept by :func:`~overthink_lib.train.fit` (``run/predictions``); a
    record of fp32 eager inference that is not cached yet is built from the logits kept there for the same weights,
    split, batch size and device, when there are any (the same numbers, without running the network again).
    """
    from .train import load_predictions, state_hash

    weights = state_hash(model)  # hashed once: the cache key and the record's provenance
    speed = kwargs.get("speed")
    speed = speed.resolve() if speed is not None else None
    if speed is not None:
        kwargs["speed"] = speed
    key = config_hash(
        {
            "weights": weights,
            "data": ds.provenance(),
            "spec": getattr(model, "spec", None),
            "version": COMPUTE_VERSIONS["record"],
            **({"speed": speed.describe()} if speed is not None and not speed.is_default else {}),
        }
    )
    path = Path(cache_dir) / f"{ds.name}-{ds.split}-{key}{SUFFIX}"
    if path.exists():
        return ExitRecord.load(path)
    if predictions is not None and (speed is None or speed.is_default):
        device = kwargs.get("device") or next(model.parameters()).device
        kwargs["predicted"] = load_predictions(predictions, ds, weights, kwargs.get("batch_size", 512), device)
    rec = make_record(model, ds, weights_hash=weights, **kwargs)
    rec.save(path)
    return rec


def _batches(data: Any, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(x, y, indices or None) batches from an ImageSet, an (x, y) pair of tensors, or an iterable of batches."""
    from .data import iterate

    if isinstance(data, ImageSet):
        yield from iterate(data, batch_size)
        return
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(d) for d in data):
        x, y = data
        if len(x) != len(y):
            raise ConfigError(f"record_from_model: {len(x)} inputs but {len(y)} labels")
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size], None
        return
    try:
        it = iter(data)
    except TypeError:
        raise ConfigError(
            "record_from_model needs an ImageSet, a pair of tensors (x, y) or an iterable of (x, y) "
            f"batches, got {type(data).__name__}"
        ) from None
    for batch in it:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ConfigError("record_from_model: every batch must be (x, y) or (x, y, index)")
        yield batch[0], batch[1], (batch[2] if len(batch) > 2 and torch.is_tensor(batch[2]) else None)


def _measured_flops(model: nn.Module, x: torch.Tensor, num_exits: int) -> list[float] | None:
    """Cumulative MACs per exit (:func:`~overthink_lib.flops.exit_flops`), when the model can stop at an exit
    (``forward(x, upto=k)``); else None."""
    from .flops import exit_flops

    try:
        takes_upto = "upto" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        takes_upto = False
    return exit_flops(model, tuple(x.shape[1:]), num_exits) if takes_upto else None


@torch.no_grad()
def record_from_model(
    model: nn.Module,
    data: Any,
    *,
    flops: Any = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    name: str | None = None,
    provenance: dict[str, Any] | None = None,
    progress: bool = False,
) -> ExitRecord:
    """An ExitRecord of any multi-exit ``model`` whose forward returns a list/tuple of per-exit logits.

    Args:
        model: run in eval mode (its mode is restored after) without gradients.
        data: an :class:`ImageSet`, a pair ``(x, y)`` of tensors, or an iterable of ``(x, y[, index])`` batches.
        flops: per-exit cumulative cost; None → measured with ``torch.utils.flop_counter`` when the model can stop
            at an exit (``forward(x, upto=k)``, the lab's contract), else the record has none.
        name: the model's name in the record (its validation and test records must share it); default the
            content hash of its weights.
        provenance: more to keep (JSON-serialisable), e.g. the dataset's name and split.
    """
    from tqdm.auto import tqdm

    from .train import state_hash

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels, index, first = [], [], [], None
    try:
        for x, y, idx in tqdm(_batches(data, batch_size), disable=not progress, desc="record", leave=False):
            x = x.to(device)
            outs = model(x)
            if not isinstance(outs, (list, tuple)) or not outs or not all(torch.is_tensor(o) for o in outs):
                raise ConfigError(
                    f"record_from_model: {type(model).__name__}.forward must return a list or tuple of "
                    f"per-exit logits [B, C], got {type(outs).__name__}"
                )
            logits.append(torch.stack([o.float() for o in outs], 1).cpu())
            labels.append(torch.as_tensor(y).cpu())
            index.append(idx.cpu() if idx is not None else None)
            first = x if first is None else first
        if first is None:
            raise ConfigError("record_from_model: the data holds no samples")
        flops_source = "given"
        if flops is None:
            flops = _measured_flops(model, first, logits[0].shape[1])
            flops_source = "none" if flops is None else "measured (torch.utils.flop_counter, MACs)"
    finally:
        model.train(was_training)
    all_index = torch.cat(index) if all(i is not None for i in index) else None
    prov = {
        "source": "record_from_model",
        "model_class": type(model).__name__,
        "code_version": code_version(),
        "flops_source": flops_source,
        **({"dataset": data.provenance()} if isinstance(data, ImageSet) else {}),
        **(provenance or {}),
    }
    extras = {k: v.clone() for k, v in data.extras.items()} if isinstance(data, ImageSet) else None
    return ExitRecord.from_arrays(
        torch.cat(logits),
        torch.cat(labels),
        flops=flops,
        indices=all_index,
        extras=extras,
        model=name or state_hash(model),
        provenance=prov,
    )


def record_from_folder(
    model: nn.Module,
    images,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    device: torch.device | str | None = None,
    name: str | None = None,
    flops: Any = None,
    progress: bool = False,
) -> ExitRecord:
    """:func:`record_from_model` over a :class:`~overthink_lib.data.FolderSet` streamed from disk: images are decoded
    batch by batch in ``workers`` DataLoader processes and never held (memory: the logits, ``N × E × C`` floats).
    The record keeps the set's provenance (root, transform, file fingerprint), so its images can be found again."""
    from .data import FolderSet

    if not isinstance(images, FolderSet):
        raise ConfigError(
            f"record_from_folder needs a FolderSet (get_dataset('imagefolder', ...)), got {type(images).__name__}"
        )
    classes = getattr(getattr(model, "config", None), "num_classes", None)
    if classes is not None and classes != images.num_classes:
        raise ConfigError(
            f"the model has {classes} classes but {images.root} has {images.num_classes} class folders: labels are "
            "class-folder positions, so they mean the model's classes only when the folder has exactly those"
        )
    return record_from_model(
        model,
        images.batches(batch_size, workers),
        flops=flops,
        batch_size=batch_size,
        device=device,
        name=name,
        provenance={"dataset": images.provenance()},
        progress=progress,
    )


__all__ = ["cached_record", "make_record", "record_from_folder", "record_from_model"]
