"""What every protocol builds on: the preset's data splits, model specs and training configs, the train-or-reuse
cache of runs, and the records of a run (cached by the weights' hash).

Trained models live in ``runs/<preset>/models/<model>-<dataset>-<hash>/`` where the hash covers the model spec, the
training config and the training data's description: a finished run with the same hash is reused, anything else
trains anew (a cache can never be stale). Records live in ``runs/<preset>/records/``, keyed by the weights' hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import COMPUTE_VERSIONS, ConfigError, Preset, get_device
from ..data import ImageSet, get_dataset
from ..io import config_hash, safe_name
from ..recording import cached_record
from ..records import ExitRecord
from ..speed import Speed, cpu_info
from ..train import (
    CHECKPOINT,
    PREDICTIONS,
    TrainConfig,
    build_model,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    resolve_speed,
)


@dataclass
class Experiment:
    """A trained multi-exit model and what the analyses read of it.

    Attributes:
        model: the model in eval mode (None for a given record).
        history: its per-epoch training rows (None for a given record).
        run: its run folder (None for a given record).
        splits: ``train``/``val``/``test`` image sets (a given record: ``val``/``test`` when its images are known,
            else None).
        records: validation and test :class:`ExitRecord`.
        foreign: True when the records were given (``record`` parameter) rather than made from the preset's model.
    """

    model: torch.nn.Module | None
    history: list | None
    run: Path | None
    splits: dict[str, ImageSet] | None
    records: dict[str, ExitRecord]
    foreign: bool = False


def load_splits(preset: Preset, dataset: str, seed: int | None = None) -> dict[str, ImageSet]:
    """train / val / test of ``dataset`` with the preset's split and subset settings."""
    seed = preset.seed_or_own(seed)
    if preset.data.svhn_extra and preset.data.svhn_extra_count < 1:
        raise ConfigError(
            f"data.svhn_extra_count must be >= 1 when svhn_extra is on, got {preset.data.svhn_extra_count}"
        )
    extra = {"svhn_extra": preset.data.svhn_extra_count} if dataset == "svhn" and preset.data.svhn_extra else {}
    from ..data.folders import NAMED

    if dataset in NAMED:  # an image folder (Imagenette): decoded once into memory at the preset's crop
        return {s: _decoded_folder(preset, dataset, s, seed) for s in ("train", "val", "test")}
    return {
        s: get_dataset(
            dataset, s, val_fraction=preset.data.val_fraction, split_seed=seed, fraction=preset.data.fraction, **extra
        )
        for s in ("train", "val", "test")
    }


def _decoded_folder(preset: Preset, dataset: str, split: str, seed: int) -> ImageSet:
    """A split of an image-folder dataset in memory: resize to crop × 8/7, centre crop ``data.folder_crop``, the
    preset's ``fraction`` as a seeded subset (as ``limit`` draws it)."""
    crop = preset.data.folder_crop
    fs = get_dataset(
        dataset, split, val_fraction=preset.data.val_fraction, split_seed=seed, resize=round(crop * 8 / 7), crop=crop
    )
    if preset.data.fraction < 1:
        keep = max(1, round(len(fs) * preset.data.fraction))
        fs = fs.subset(np.sort(np.random.default_rng(seed + 1).permutation(len(fs))[:keep]))
        fs.info["fraction"] = preset.data.fraction
    return fs.to_imageset()


def subset_splits(
    preset: Preset, seed: int, n_train: int, n_test: int = 0, *, salt: int = 11, dataset: str | None = None
) -> dict[str, ImageSet]:
    """A seeded ``n_train``-image subset of the training split and the test split (all of it, or a seeded
    ``n_test``-image subset); ``0`` means the whole split."""
    import numpy as np

    splits = load_splits(preset, dataset or preset.datasets[0], seed)
    sub = {}
    for name, n, offset in (("train", n_train, salt), ("test", n_test, salt + 1)):
        full = splits[name]
        if not n or n >= len(full):
            sub[name] = full
            continue
        rows = np.sort(np.random.default_rng(seed + offset).permutation(len(full))[:n])
        sub[name] = full.subset(rows)
        sub[name].info = {**full.info, "stoch_subset": {"size": n, "seed": seed + offset}}
    return sub


def model_spec(ds: ImageSet, name: str = "msdnet_cifar", **kwargs: Any) -> dict[str, Any]:
    """The registry spec of a model for ``ds`` (classes and input channels from the data)."""
    return {"name": name, "kwargs": {"num_classes": ds.num_classes, "in_channels": ds.channels, **kwargs}}


def main_spec(preset: Preset, ds: ImageSet) -> dict[str, Any]:
    """The registry spec of the preset's network (``training.model``) for ``ds``."""
    return model_spec(ds, preset.training.model)


def train_config(preset: Preset, epochs: int | None = None, seed: int | None = None, **overrides: Any) -> TrainConfig:
    """The preset's training schedule (thesis: lr 0.1, batch 64, ×0.1 at 75 and 150 of 200 epochs)."""
    seed = preset.seed_or_own(seed)
    base = dict(
        epochs=preset.training.epochs if epochs is None else epochs,
        batch_size=preset.training.batch_size,
        lr=preset.training.lr,
        schedule=preset.training.lr_schedule,
        milestones=preset.training.lr_milestones,
        init_seed=seed,
        data_seed=seed,
        eval_batch_size=preset.training.eval_batch_size,
        speed=Speed.parse(preset.training.speed),
        threads=preset.training.threads,
    )
    return TrainConfig(**{**base, **overrides})


def run_folder(preset: Preset, spec: dict[str, Any], cfg: TrainConfig, train_ds: ImageSet, tag: str = "") -> Path:
    key = config_hash(
        {
            "spec": spec,
            "train": cfg.hashed_fields(),
            "data": train_ds.provenance(),
            "tag": tag,
            "version": COMPUTE_VERSIONS["train"],
        }
    )
    # the tag may carry a record's model name, i.e. text from a file: never a path of its own
    return (
        preset.run_dir
        / "models"
        / safe_name(f"{spec['name']}-{train_ds.name}{('-' + tag) if tag else ''}-{key}", max_len=160)
    )


def train_or_load(
    preset: Preset,
    spec: dict[str, Any],
    cfg: TrainConfig,
    splits: dict[str, ImageSet],
    *,
    resume: bool = False,
    progress: bool = True,
    tag: str = "",
    init=None,
    loss_fn=None,
    extra: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, list, Path]:
    """Train ``spec`` with ``cfg`` on ``splits['train']`` unless a finished run with the same hash exists.

    Args:
        tag: part of the run's hash and folder name; put there whatever else determines the run (e.g. the weights
            hash of the checkpoint a fine-tuning starts from).
        init: ``init(model)`` called after the model is built and before training (e.g. load a parent's weights).
        loss_fn: passed to :func:`~overthink_lib.train.fit`; only the parameters that require grad are optimised.
        extra: provenance stored in the checkpoint.
    Returns:
        (model in eval mode, per-epoch history, run folder).
    """
    device = get_device(preset.training.device)
    if cfg.speed.auto:  # the settings that pay on this machine are part of the run's hash
        probe = build_model(spec, cfg.init_seed).to(device)
        if init is not None:
            init(probe)
        cfg = resolve_speed(cfg, probe, splits["train"], device)
        if progress:
            print(f"speed settings for {cpu_info().describe()}: {cfg.speed.describe()}", flush=True)
    out = run_folder(preset, spec, cfg, splits["train"], tag)
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["epoch"] >= cfg.epochs:
            if progress:
                print(f"reusing the finished run in {out} (same model, config and data)")
            model, ckpt = model_from_checkpoint(ckpt_path, device)
            return model, ckpt["history"], out
        resume = True  # an unfinished run of this exact config: continue it
    model = build_model(spec, cfg.init_seed).to(device)
    if init is not None:
        init(model)
    # whoever asked (a notebook that expected a finished run passes progress=False): training is never silent
    continuing = resume and ckpt_path.exists()
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: once, not once per rank
        print(
            f"{'continuing the unfinished run' if continuing else 'no finished run of this model, config and data'} "
            f"({preset.name}): training {spec['name']} on {splits['train'].name} ({len(splits['train'])} images, "
            f"{cfg.epochs} epochs, device {device}) → {out}",
            flush=True,
        )
    history = fit(
        model,
        splits["train"],
        splits.get("val"),
        cfg,
        out_dir=out,
        resume=resume,
        device=device,
        progress=True,
        loss_fn=loss_fn,
        params=[p for p in model.parameters() if p.requires_grad],
        extra={"tag": tag, **(extra or {})},
    )
    return model.eval(), history, out


def records_for(
    model: torch.nn.Module,
    splits: dict[str, ImageSet],
    preset: Preset,
    run: Path,
    which: tuple[str, ...] | None = None,
    progress: bool = False,
    checkpoint: Path | None = None,
) -> dict[str, ExitRecord]:
    """Validation and test ExitRecords of ``model`` (``which``: default those of the two that ``splits`` has), cached in
    ``runs/<preset>/records/``; ``checkpoint`` (default the run's last) is the file the weights came from, for the
    records' provenance."""
    which = tuple(s for s in ("val", "test") if s in splits) if which is None else which
    checkpoint = checkpoint or run / CHECKPOINT
    ckpt = load_checkpoint(checkpoint)
    prov = {
        "checkpoint": str(checkpoint),
        "train_config": ckpt["train_config"],
        "epoch": ckpt["epoch"],
        "init_seed": ckpt.get("init_seed"),
        "data_seed": ckpt.get("data_seed"),
        "preset": preset.name,
    }
    return {
        s: cached_record(
            model,
            splits[s],
            preset.run_dir / "records",
            batch_size=preset.training.eval_batch_size,
            provenance=prov,
            progress=progress,
            predictions=run / PREDICTIONS,
        )
        for s in which
    }


def record_images(rec: ExitRecord, preset: Preset) -> ImageSet | None:
    """The images of a record's samples, when its provenance names a registered dataset and split whose samples
    (by index) it holds; else None (records from elsewhere may come without images)."""
    from ..data import list_datasets

    d = rec.provenance.get("dataset") or {}
    name, split = d.get("name"), d.get("split")
    if name not in list_datasets() or name == "maxmin" or split not in ("train", "val", "test"):
        return None
    from ..data import FolderSet
    from ..data.folders import NAMED
    from ..data.sources import DatasetMissing

    folder = name == "imagefolder" or name in NAMED  # streamed from disk: where and how the record's maker read it
    try:
        ds = get_dataset(
            name,
            split,
            val_fraction=d.get("val_fraction", preset.data.val_fraction),
            split_seed=d.get("split_seed", preset.seed),
            download=False,
            **(
                {"root": d.get("root"), "resize": d.get("resize", 256), "crop": d.get("crop", 224)}
                if folder
                # the top-up as the registry wrote it: {count, index_offset} (older records: a flag, the thesis's count)
                else {
                    "svhn_extra": d["svhn_extra"]["count"]
                    if isinstance(d.get("svhn_extra"), dict)
                    else bool(d.get("svhn_extra"))
                }
            ),
        )
    except DatasetMissing:  # not on disk: the record comes without images (a damaged or forged file is an error)
        return None
    pos = {int(i): r for r, i in enumerate(ds.indices.tolist())}
    rows = [pos.get(int(i)) for i in rec.indices.tolist()]
    missing = sum(r is None for r in rows)
    if missing:
        raise ConfigError(
            f"the record names {name}/{split}, but {missing} of its {rec.num_samples} sample indices are "
            f"not in that split ({len(ds)} samples, val_fraction {d.get('val_fraction', preset.data.val_fraction)}"
            f", split_seed {d.get('split_seed', preset.seed)}): record the split's own indices"
        )
    images = ds.subset(rows)
    check_images_match(rec, images)
    return images.to_imageset() if isinstance(images, FolderSet) else images


def check_images_match(rec: ExitRecord, images: ImageSet) -> None:
    """Refuse a record whose labels differ from its images' labels at the same indices (a record made in another
    sample order, or of another split, would otherwise show and analyse the wrong images): one line with the
    agreement rate."""
    if images.num_classes != rec.num_classes:
        raise ConfigError(
            f"the record has {rec.num_classes} classes but {images.name} has {images.num_classes}: it is "
            f"not a record of {images.name}"
        )
    if len(images) != rec.num_samples or not torch.equal(images.indices, rec.indices):
        raise ConfigError(
            f"record and images hold different samples ({rec.num_samples} vs {len(images)}): make the "
            f"record from {images.name}/{images.split}"
        )
    agree = (images.labels == rec.labels).double().mean().item()
    if not agree == 1:
        raise ConfigError(
            f"the record's labels agree with {images.name}/{images.split}'s labels at the same indices "
            f"for only {agree * 100:.1f} % of its {rec.num_samples} samples: its sample order (indices) "
            "is not the dataset's; give each sample's dataset index (indices=...) when making the record"
        )
