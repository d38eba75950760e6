"""The preset's main experiment: which model, which data, which schedule — shared by the CLI and the notebooks.

Trained models live in ``runs/<preset>/models/<model>-<dataset>-<hash>/`` where the hash covers the model spec, the
training config and the training data's description: a finished run with the same hash is reused, anything else
trains anew (a cache can never be stale). Records live in ``runs/<preset>/records/``, keyed by the weights' hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import COMPUTE_VERSIONS, ConfigError, Preset, config_hash, get_device, get_preset, safe_name
from .data import ImageSet, get_dataset
from .recording import cached_record
from .records import ExitRecord
from .speed import Speed, cpu_info
from .train import (
    CHECKPOINT,
    PREDICTIONS,
    TrainConfig,
    build_model,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    resolve_speed,
)

if TYPE_CHECKING:  # for annotations only: pandas loads when a table is built
    import pandas as pd


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
    from .data.folders import NAMED

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


def model_spec(ds: ImageSet, name: str = "msdnet_cifar", **kwargs: Any) -> dict[str, Any]:
    """The registry spec of a model for ``ds`` (classes and input channels from the data)."""
    return {"name": name, "kwargs": {"num_classes": ds.num_classes, "in_channels": ds.channels, **kwargs}}


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


def train_main_model(
    name: str,
    *,
    dataset: str | None = None,
    epochs: int | None = None,
    resume: bool = False,
    progress: bool = True,
    speed: str | None = None,
):
    """The preset's MSDNet on its main dataset. Returns (model, history, run folder, splits).

    ``speed`` overrides the preset's speed settings (``fast``, ``bf16,compile``, ...): another run folder.
    """
    preset = get_preset(name)
    dataset = dataset or preset.datasets[0]
    splits = load_splits(preset, dataset)
    spec = model_spec(splits["train"])
    cfg = train_config(preset, epochs, **({"speed": Speed.parse(speed)} if speed is not None else {}))
    model, history, out = train_or_load(preset, spec, cfg, splits, resume=resume, progress=progress)
    return model, history, out, splits


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


def main_records(name: str, *, dataset: str | None = None, epochs: int | None = None) -> dict[str, ExitRecord]:
    """Validation and test records of preset ``name``'s main MSDNet (trains it first when needed)."""
    model, _, run, splits = train_main_model(name, dataset=dataset, epochs=epochs)
    return records_for(model, splits, get_preset(name), run)


def main_experiment(preset: Preset, seed: int | None = None, progress: bool = False) -> Experiment:
    """What the analysis notebooks start from: the main MSDNet's splits, run folder and val/test records.

    Trains only when no finished run with the same config exists (notebook 02 normally did it).
    """
    splits = load_splits(preset, preset.datasets[0], seed)
    spec = model_spec(splits["train"])
    model, history, run = train_or_load(preset, spec, train_config(preset, seed=seed), splits, progress=progress)
    return Experiment(model, history, run, splits, records_for(model, splits, preset, run))


def record_images(rec: ExitRecord, preset: Preset) -> ImageSet | None:
    """The images of a record's samples, when its provenance names a registered dataset and split whose samples
    (by index) it holds; else None (records from elsewhere may come without images)."""
    from .data import list_datasets

    d = rec.provenance.get("dataset") or {}
    name, split = d.get("name"), d.get("split")
    if name not in list_datasets() or name == "maxmin" or split not in ("train", "val", "test"):
        return None
    from .data import FolderSet
    from .data.folders import NAMED
    from .data.sources import DatasetMissing

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


def analysis_experiment(
    preset: Preset, seed: int | None = None, record: str = "", progress: bool = False
) -> Experiment:
    """What an analysis notebook analyses: the preset's main MSDNet (``record`` empty, :func:`main_experiment`) or
    the validation and test records named by ``record`` (a folder or ``VAL,TEST``; see
    :func:`~overthink_lib.records.load_records`) — then ``model`` and ``history`` are None and ``splits`` holds the
    records' images where their provenance names a dataset of the registry (else None)."""
    if not record:
        return main_experiment(preset, seed, progress)
    from .records import load_records

    recs = load_records(record)
    splits = {s: record_images(r, preset) for s, r in recs.items()}
    return Experiment(
        None, None, None, splits if all(v is not None for v in splits.values()) else None, recs, foreign=True
    )


def require_images(exp: Experiment, what: str) -> dict[str, ImageSet]:
    """The splits of an :func:`analysis_experiment`, or one ConfigError saying that ``what`` needs the images."""
    if exp.splits is None:
        raise ConfigError(
            f"{what} needs the images of the record's samples, and the record's provenance names no "
            "dataset of the registry holding them (provenance['dataset'] = {'name', 'split'}, as "
            "record_from_model writes for an ImageSet)"
        )
    return exp.splits


@dataclass
class PolicyRun:
    """One policy experiment (thesis ch. 4): D_ee labels, the policy and its shuffled-label control, on the test set.

    Attributes:
        labels_train, labels_test: the D_ee labels (:class:`~overthink_lib.analysis.policy.ExitLabels`) of the validation
            record (training set of the policy) and of the test record.
        train_set, test_set: the D_ee image sets.
        policy, shuffled: :func:`~overthink_lib.analysis.policy.evaluate_policy` of the policy and of the control.
        preds: the policy's label for every D_ee test sample.
        exit_policy: the policy used as an exit rule on every test sample (accuracy, expected FLOPs).
    """

    labels_train: Any
    labels_test: Any
    train_set: ImageSet
    test_set: ImageSet
    policy: dict[str, Any]
    shuffled: dict[str, Any]
    preds: torch.Tensor
    exit_policy: dict[str, Any]


def policy_experiment(
    preset: Preset,
    rec_val: ExitRecord,
    rec_test: ExitRecord,
    sets: dict[str, ImageSet],
    method: str,
    lam: float,
    seed: int | None = None,
    *,
    n_boot: int = 1000,
    progress: bool = True,
) -> PolicyRun:
    """Steps 3–4 of the thesis's method on a trained M: D_ee from the validation record (``method`` labels with
    λ = ``lam``), the policy ResNet and its shuffled-label control trained on it (cached runs), both evaluated on
    the test record's D_ee with bootstrap CIs; the policy also as an exit rule for every test sample."""
    from .analysis.policy import as_exit_policy, evaluate_policy, exit_labels
    from .train import predict

    seed = preset.seed_or_own(seed)
    lab_tr, d_tr, source = policy_training_set(rec_val, sets["val"], method, lam)
    lab_te = exit_labels(rec_test, method, lam)
    d_te = policy_set(sets["test"], rec_test, lab_te)
    results, preds, exit_policy = {}, None, None
    for shuffle in (False, True):
        m, _, _ = train_policy(preset, d_tr, seed, source=source, shuffle=shuffle, progress=progress)
        p = predict(m, d_te, batch_size=preset.training.eval_batch_size)[0][:, 0].argmax(-1)
        results[shuffle] = evaluate_policy(p, d_te.labels, d_tr.labels, lab_tr.num_labels, n_boot=n_boot, seed=seed)
        if not shuffle:
            preds = p
            all_logits = predict(m, sets["test"], batch_size=preset.training.eval_batch_size)[0]
            exit_policy = as_exit_policy(all_logits[:, 0].argmax(-1), rec_test, method)
    return PolicyRun(lab_tr, lab_te, d_tr, d_te, results[False], results[True], preds, exit_policy)


def policy_set(split_set: ImageSet, rec: ExitRecord, labels):
    """The images of ``split_set`` that D_ee keeps, labelled with their D_ee labels (``labels``: an
    :class:`~overthink_lib.analysis.policy.ExitLabels`), as an :class:`ImageSet` for training the policy network."""
    if not torch.equal(rec.indices, split_set.indices):
        raise ConfigError(
            "the record and the dataset split do not hold the same samples in the same order: make the "
            "record from this split"
        )
    if len(labels.rows) == 0:
        raise ConfigError(
            f"D_ee is empty: no exit classifies any sample of {split_set.name}/{split_set.split} correctly"
        )
    sub = split_set.subset(labels.rows)
    return ImageSet(
        sub.name,
        sub.split,
        sub.images,
        labels.labels.clone(),
        sub.indices,
        labels.num_labels,
        sub.mean,
        sub.std,
        {},
        sub.extras,
        {**sub.info, "dee": {"method": labels.method, "lam": labels.lam, "dropped": labels.dropped}},
        tuple(f"exit {i + 1}" for i in range(labels.num_labels))
        if labels.method != "binary"
        else ("first exit", "last exit"),
    )


def policy_training_set(rec_val: ExitRecord, val_set: ImageSet, method: str, lam: float):
    """The policy's training data of :func:`policy_experiment`: the validation record's D_ee labels (``method``,
    λ = ``lam``), the D_ee image set, and the ``source`` tag that names its policy runs (for :func:`train_policy`).
    Returns (labels, D_ee set, source)."""
    import hashlib

    from .analysis.policy import check_training_record, exit_labels

    check_training_record(rec_val)
    labels = exit_labels(rec_val, method, lam)
    # the D_ee set itself (which samples, which labels) names the run: a record's model name alone may be "unknown"
    # or anything a file says, and two records must never share a trained policy
    dee = hashlib.sha256(rec_val.indices[labels.rows].numpy().tobytes() + labels.labels.numpy().tobytes()).hexdigest()
    # float(lam): λ = 10 given as an integer (``--param lam=10``) names the same runs as 10.0
    return labels, policy_set(val_set, rec_val, labels), f"{rec_val.model_key()}-{method}-{float(lam)}-{dee[:12]}"


def load_maxmin_splits(preset: Preset, seed: int | None = None) -> dict[str, ImageSet]:
    """train / val / test Max-Min composites of the preset (sizes ``preset.maxmin``, base ``preset.maxmin.base``), each built
    from the base dataset's same split, so no base image appears in two splits."""
    from .data.maxmin import get_maxmin

    seed = preset.seed_or_own(seed)
    return {
        s: get_maxmin(
            s,
            base=preset.maxmin.base,
            size=getattr(preset.maxmin.sizes, s),
            seed=seed,
            val_fraction=preset.data.val_fraction,
            split_seed=seed,
            canvas=preset.maxmin.canvas,
            item_size=preset.maxmin.item,
        )
        for s in ("train", "val", "test")
    }


def maxmin_experiment(preset: Preset, seed: int | None = None, progress: bool = True) -> Experiment:
    """The Max-Min MSDNet M (``preset.maxmin.epochs`` epochs, the thesis's "trained briefly") and its val/test records.

    Notebooks 06 (clutter per exit on Max-Min, Fig A.5) and 08 (the policy network) share it: whichever runs first
    trains it, the other reuses the run and the cached records.
    """
    seed = preset.seed_or_own(seed)
    splits = load_maxmin_splits(preset, seed)
    spec = model_spec(splits["train"])
    model, history, run = train_or_load(
        preset, spec, train_config(preset, preset.maxmin.epochs, seed), splits, progress=progress
    )
    return Experiment(model, history, run, splits, records_for(model, splits, preset, run))


def maxmin_short_and_long(preset: Preset, seed: int | None = None, progress: bool = True) -> dict[str, ExitRecord]:
    """Test records of the Max-Min M trained for two lengths (Fig 4.4's two panels; the thesis: 5 and 200 epochs).

    With ``preset.maxmin.long_epochs`` > 0: M (``maxmin.epochs``) and a second M trained that long. Without (the
    ``cpu`` preset: no time for a long M): M and its own half-way snapshot (``maxmin.epochs`` / 2 epochs, when even), so
    the figure compares shorter with short. Keys name the epochs.
    """
    from .train import HALFWAY

    seed = preset.seed_or_own(seed)
    mmx = maxmin_experiment(preset, seed, progress=progress)
    e = preset.maxmin.epochs
    out = {}
    if preset.maxmin.long_epochs:
        long_model, _, long_run = train_or_load(
            preset,
            model_spec(mmx.splits["train"]),
            train_config(preset, preset.maxmin.long_epochs, seed),
            mmx.splits,
            progress=progress,
        )
        out[f"{e} epochs"] = mmx.records["test"]
        out[f"{preset.maxmin.long_epochs} epochs"] = records_for(long_model, mmx.splits, preset, long_run, ("test",))[
            "test"
        ]
        return out
    if not (mmx.run / HALFWAY).exists():
        raise ConfigError(
            f"the Max-Min run {mmx.run} has no half-way snapshot (odd maxmin.epochs = {e}) and the preset "
            f"sets no maxmin.long_epochs: nothing to compare M with"
        )
    half, _ = model_from_checkpoint(mmx.run / HALFWAY, get_device(preset.training.device))
    out[f"{e // 2} epochs (half-way)"] = records_for(
        half, mmx.splits, preset, mmx.run, ("test",), checkpoint=mmx.run / HALFWAY
    )["test"]
    out[f"{e} epochs"] = mmx.records["test"]
    return out


def training_record(preset: Preset, seed: int | None = None) -> ExitRecord:
    """The main MSDNet's record on (a seeded ``preset.data.train_record_size``-image subset of; 0 = all) its own training
    split, without augmentation: what the thesis's Fig 4.1 builds D_ee from before it moves to the validation split."""
    exp = main_experiment(preset, seed)
    sub = subset_splits(preset, preset.seed_or_own(seed), preset.data.train_record_size, salt=31)["train"]
    rec = records_for(exp.model, {"train": sub}, preset, exp.run, ("train",))["train"]
    return rec


IMTA_PARENTS = ("branch", "separate")


@dataclass
class ImtaProtocol:
    """The three arms of Table 3.1, each by name (``E``, ``2E``, ``E + E ISC+OFA``, in that order).

    Attributes:
        records: validation and test records per arm.
        runs: run folder per arm (the ``E`` arm under ``branch``: the 2E run, whose half-way snapshot it is).
        histories: per-epoch training rows per arm.
        parent: where the E-epoch network came from (``branch`` or ``separate``).
    """

    records: dict[str, dict[str, ExitRecord]]
    runs: dict[str, Path]
    histories: dict[str, list]
    parent: str


def imta_protocol(
    preset: Preset,
    seed: int | None = None,
    *,
    freeze: str | None = None,
    teacher: str | None = None,
    kl: str | None = None,
    ge: bool = False,
    parent: str | None = None,
    frozen_bn: str | None = None,
    progress: bool = True,
    splits: dict[str, ImageSet] | None = None,
) -> ImtaProtocol:
    """The thesis's Table 3.1 protocol on the preset's main dataset (E = ``preset.imta.epochs``):

    - ``2E``: the plain MSDNet after 2E epochs (the same run as notebook 02's when the preset's epochs are 2E);
    - ``E``: the plain MSDNet after E epochs. ``parent="branch"`` (default, ``preset.imta.parent``): the 2E run's own
      weights at epoch E — the thesis fine-tunes "for the final 50 epochs of the training process", i.e. the E + E
      arm leaves the 2E run half-way; this trains nothing extra. ``"separate"``: its own run with an E-epoch
      schedule (fully annealed at E; costs E more epochs of training);
    - ``E + E ISC+OFA``: the E-epoch network with IMTA heads fine-tuned for E more epochs with the OFA loss. By
      default as the official stage 2 (preset fields ``imta_freeze``/``imta_teacher``/``imta_kl``, see
      :mod:`overthink_lib.models.imta`): the pretrained network frozen whole, only the new classifiers and ISC
      train, the teacher is the pretrained final exit, KL averaged over every element; lr ×0.1 at 50 % and 75 % of
      the E epochs (``preset.imta.milestones``, as ``main_IMTA.py``; ``()``: the preset's schedule). ``frozen_bn``
      (default ``preset.imta.frozen_bn``): ``eval`` keeps the frozen network's BatchNorm statistics fixed (ours),
      ``train`` runs it in training mode as the official code does.
    ``splits``: the data (default: the preset's main dataset); the seed-level protocol passes subsets.
    Returns an :class:`ImtaProtocol`.
    """
    from .models.imta import FREEZE, FROZEN_BN, KL_REDUCTIONS, TEACHERS, load_backbone, ofa_loss
    from .train import HALFWAY, state_hash

    parent = preset.imta.parent if parent is None else parent
    freeze = preset.imta.freeze if freeze is None else freeze
    teacher = preset.imta.teacher if teacher is None else teacher
    kl = preset.imta.kl if kl is None else kl
    frozen_bn = preset.imta.frozen_bn if frozen_bn is None else frozen_bn
    for what, value, allowed in (
        ("parent", parent, IMTA_PARENTS),
        ("freeze", freeze, FREEZE),
        ("teacher", teacher, TEACHERS),
        ("KL reduction", kl, KL_REDUCTIONS),
        ("frozen BatchNorm mode", frozen_bn, FROZEN_BN),
    ):
        if value not in allowed:
            raise ConfigError(f"IMTA {what} must be one of {', '.join(allowed)}, got {value!r}")
    stones = tuple(preset.imta.milestones)
    if not all(0 < m < 1 for m in stones) or list(stones) != sorted(set(stones)):
        raise ConfigError(
            f"preset field imta.milestones must be increasing fractions of the fine-tuning's epochs in (0, 1), "
            f"got {stones!r} (official: (0.5, 0.75); () for the preset's schedule)"
        )
    stage2 = dict(schedule="step", milestones=stones) if stones else {}
    splits = load_splits(preset, preset.datasets[0], seed) if splits is None else splits
    spec = model_spec(splits["train"])
    e = preset.imta.epochs
    out = ImtaProtocol({}, {}, {}, parent)
    long_cfg = train_config(preset, 2 * e, seed)
    model, hist, run = train_or_load(preset, spec, long_cfg, splits, progress=progress)
    if parent == "branch":
        if not (run / HALFWAY).exists():  # a run from before half-way snapshots were kept: the same run again
            if progress:
                print(f"{run} has no half-way snapshot ({HALFWAY}); training it again to keep one", flush=True)
            model = build_model(spec, long_cfg.init_seed).to(get_device(preset.training.device))
            hist = fit(
                model, splits["train"], splits.get("val"), long_cfg, out_dir=run, progress=progress, extra={"tag": ""}
            )
        half, _ = model_from_checkpoint(run / HALFWAY, get_device(preset.training.device))
        out.records["E"] = records_for(half, splits, preset, run, checkpoint=run / HALFWAY)
        out.runs["E"], out.histories["E"] = run, hist[:e]
        parent_model, parent_ckpt = half, run / HALFWAY
    else:
        parent_model, hist_e, run_e = train_or_load(
            preset, spec, train_config(preset, e, seed), splits, progress=progress
        )
        out.records["E"] = records_for(parent_model, splits, preset, run_e)
        out.runs["E"], out.histories["E"] = run_e, hist_e
        parent_ckpt = run_e / CHECKPOINT
    out.records["2E"] = records_for(model, splits, preset, run)
    out.runs["2E"], out.histories["2E"] = run, hist
    ispec = {
        "name": "imta",
        "kwargs": {"backbone": spec, "freeze": freeze, "teacher": teacher, "ge": ge, "frozen_bn": frozen_bn},
    }
    built = {}

    def init(m):
        built["model"] = m
        return load_backbone(m, parent_model)

    def loss(outs, y, idx):
        return ofa_loss(outs, y, teacher=built["model"].teacher_logits(), reduction=kl)

    model, hist, run = train_or_load(
        preset,
        ispec,
        train_config(preset, e, seed, **stage2),
        splits,
        progress=progress,
        tag=f"from-{state_hash(parent_model)}-kl-{kl}",
        init=init,
        loss_fn=loss,
        extra={"parent_checkpoint": str(parent_ckpt), "kl_reduction": kl},
    )
    name = "E + E ISC+OFA"
    out.records[name] = records_for(model, splits, preset, run)
    out.runs[name], out.histories[name] = run, hist
    out.records = {k: out.records[k] for k in ("E", "2E", name)}  # table order
    return out


def train_policy(
    preset: Preset, train_set: ImageSet, seed: int | None, *, source: str, shuffle: bool = False, progress: bool = True
):
    """Train the preset's policy ResNet on a D_ee set (class-weighted CE, Eq 4.3); ``shuffle``: the permuted-label
    control. ``source`` (e.g. the record's weights hash) goes into the run's hash, so new labels train anew.
    At ``preset.policy.lr``, for ``preset.policy.epochs`` epochs, or ``preset.policy.maxmin_epochs`` (when set) on
    Max-Min composites (a D_ee set of the dataset ``maxmin``): the thesis trains that policy 60 epochs, the binary
    one 100."""
    from .analysis.policy import class_weights, shuffled, weighted_ce

    seed = preset.seed_or_own(seed)
    data = shuffled(train_set, seed) if shuffle else train_set
    spec = {
        "name": "policy_resnet",
        "kwargs": {
            "depth": preset.policy.depth,
            "width": preset.policy.width,
            "in_channels": train_set.channels,
            "num_classes": train_set.num_classes,
        },
    }
    pol = preset.policy
    epochs = pol.maxmin_epochs if (pol.maxmin_epochs and train_set.name == "maxmin") else pol.epochs
    cfg = train_config(
        preset,
        epochs,
        seed,
        lr=pol.lr,
        augment=False,
        milestones=(0.5, 0.75) if preset.training.lr_schedule == "step" else (),
    )
    weights = class_weights(data.labels, data.num_classes)
    model, hist, run = train_or_load(
        preset,
        spec,
        cfg,
        {"train": data},
        progress=progress,
        tag=f"{source}-{'shuffled' if shuffle else 'true'}",
        loss_fn=weighted_ce(weights),
        extra={"class_weights": weights.tolist()},
    )
    return model, hist, run


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


def stochastic_subset_splits(preset: Preset, seed: int) -> dict[str, ImageSet]:
    """The stochasticity experiment's data: a seeded ``preset.stochasticity.train``-image subset of the training split, and the
    whole test split."""
    return subset_splits(preset, seed, preset.stochasticity.train)


def imta_seed_splits(preset: Preset, seed: int) -> dict[str, ImageSet]:
    """The fixed seeded subset every seed of :func:`imta_over_seeds` trains and tests on (its run ``i`` is
    ``imta_protocol(preset, seed + i, splits=imta_seed_splits(preset, seed))``: one job each on a cluster)."""
    return subset_splits(preset, seed, preset.imta.seed_train, preset.imta.seed_test, salt=23)


def imta_over_seeds(
    preset: Preset, seed: int | None = None, *, seeds: int | None = None, progress: bool = True, **imta_options: Any
) -> pd.DataFrame:
    """Table 3.1 at the level of a training recipe: the IMTA protocol (:func:`imta_protocol`, same options) for
    ``seeds`` (default ``preset.imta.seeds``) init/data-order seeds on one fixed seeded subset
    (``preset.imta.seed_train`` training images, ``preset.imta.seed_test`` test images; 0 = all).

    Returns one row per (seed, arm): test overthinking rate and final-exit accuracy (fractions); the arm's paired
    difference in overthinking to the 2E arm of the same seed with its bootstrap 95 % CI over that seed's test samples
    (``minus_2E``, ``minus_2E_low``, ``minus_2E_high``: how sure one network's number is); the run folder.
    """
    from .analysis.overthinking import arms_over_seeds

    seed = preset.seed_or_own(seed)
    k = preset.imta.seeds if seeds is None else seeds
    if k < 2:
        raise ConfigError(f"a verdict over seeds needs at least 2 seeds, got {k} (preset field imta.seeds)")
    sub = imta_seed_splits(preset, seed)
    tests, runs = {}, {}
    for i in range(k):
        if progress:
            print(f"IMTA protocol, seed {i + 1} of {k} ({len(sub['train'])} training images)", flush=True)
        res = imta_protocol(preset, seed + i, splits=sub, progress=progress, **imta_options)
        tests[seed + i] = {arm: recs["test"] for arm, recs in res.records.items()}
        runs.update({(seed + i, arm): str(run) for arm, run in res.runs.items()})
    table = arms_over_seeds(tests)
    table["run"] = [runs[s, a] for s, a in zip(table["seed"], table["arm"], strict=True)]
    return table


def paired_over_seeds(
    table: pd.DataFrame, metric: str, a: str, b: str, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``metric``(arm a) − ``metric``(arm b) over the seeds of an :func:`imta_over_seeds` table, with its
    Student-t CI over seeds (the seeds are the unit of replication)."""
    from .analysis.stats import t_interval

    wide = table.pivot(index="seed", columns="arm", values=metric)
    return t_interval((wide[a] - wide[b]).to_numpy(), level)


@dataclass
class StochasticRuns:
    """K runs per randomness source of one model on one subset (:func:`stochastic_runs`).

    Attributes:
        records: test records per factor (``init``, ``data``, ``both``), K each, in seed order.
        seeds: the (init seed, data seed) pairs per factor, offsets to the experiment's seed.
        spec: the model's registry spec.
        train_size: training images per run.
        test_set: the test split the records cover.
        first_model: the model of run (0, 0), shared by the three factors (for GradCAM).
        models_trained: distinct runs (3K − 2).
    """

    records: dict[str, list[ExitRecord]]
    seeds: dict[str, list[tuple[int, int]]]
    spec: dict[str, Any]
    train_size: int
    test_set: ImageSet
    first_model: torch.nn.Module | None = None
    models_trained: int = 0


#: The two networks of notebook 09 (its cells call :func:`stochastic_runs` with each; a cluster runs each run as a job).
STOCHASTICITY_MODELS = ("msdnet_cifar", "sdn_resnet20")


def stochastic_seeds(preset: Preset) -> dict[str, list[tuple[int, int]]]:
    """The (init seed, data seed) offsets of each factor of :func:`stochastic_runs` (K = ``stochasticity.runs``)."""
    k = preset.stochasticity.runs
    return {"init": [(i, 0) for i in range(k)], "data": [(0, d) for d in range(k)], "both": [(i, i) for i in range(k)]}


def stochastic_run(
    preset: Preset,
    spec: dict[str, Any],
    splits: dict[str, ImageSet],
    seed: int,
    init_seed: int,
    data_seed: int,
    progress: bool = True,
) -> tuple[torch.nn.Module, ExitRecord]:
    """One run of :func:`stochastic_runs` (seed offsets ``init_seed``, ``data_seed``): its model and test record."""
    cfg = train_config(
        preset, preset.stochasticity.epochs, seed, init_seed=init_seed + seed, data_seed=data_seed + seed
    )
    model, _, run = train_or_load(preset, spec, cfg, splits, progress=progress, tag="stoch")
    return model, records_for(model, splits, preset, run, which=("test",))["test"]


def stochastic_runs(
    preset: Preset,
    model_name: str = "msdnet_cifar",
    seed: int | None = None,
    progress: bool = True,
    **model_kwargs: Any,
) -> StochasticRuns:
    """K runs per randomness source on a seeded subset of the training set, everything else fixed.

    Factor ``init``: init seeds 0..K−1 with data seed 0; ``data``: data seeds 0..K−1 with init seed 0; ``both``: both
    seeds = i. Run (0, 0) is shared by the three factors. Returns the test records per factor (K each), the seeds and
    the first run's model (:class:`StochasticRuns`).
    """
    seed = preset.seed_or_own(seed)
    sub = stochastic_subset_splits(preset, seed)
    n = len(sub["train"])
    spec = model_spec(sub["train"], model_name, **model_kwargs)
    seeds = stochastic_seeds(preset)
    cache: dict[tuple[int, int], ExitRecord] = {}
    out = StochasticRuns({}, seeds, spec, n, sub["test"])
    for factor, pairs in seeds.items():
        recs = []
        for init_seed, data_seed in pairs:
            if (init_seed, data_seed) not in cache:
                model, cache[(init_seed, data_seed)] = stochastic_run(
                    preset, spec, sub, seed, init_seed, data_seed, progress=progress
                )
                if (init_seed, data_seed) == (0, 0):
                    out.first_model = model
            recs.append(cache[(init_seed, data_seed)])
        out.records[factor] = recs
    out.models_trained = len(cache)
    return out


def speed_equivalence(
    preset: Preset, speed: Speed, seeds: int = 4, *, seed: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """Does training with ``speed`` reach the accuracy of fp32 within seed-to-seed noise?

    For each seed i < ``seeds``: one fp32 eager run and one ``speed`` run with init and data seed i, the stochasticity
    experiment's schedule (``preset.stochasticity.train`` images, ``preset.stochasticity.epochs`` epochs), evaluated on the whole test set —
    the ``speed`` run both in fp32 and with its own inference settings. Returns one row per (seed, arm) with the test
    accuracy per exit, the overthinking rate and the training seconds; runs and records are cached like any other.
    """
    import pandas as pd

    from .analysis.overthinking import overthought

    seed = preset.seed_or_own(seed)
    sub = stochastic_subset_splits(preset, seed)
    spec = model_spec(sub["train"])
    out = []
    for i in range(seeds):
        for arm_speed in (Speed(), speed):
            cfg = train_config(
                preset, preset.stochasticity.epochs, seed, init_seed=i + seed, data_seed=i + seed, speed=arm_speed
            )
            model, hist, run = train_or_load(preset, spec, cfg, sub, progress=progress, tag="speedcheck")
            evals = [("fp32", Speed())] + (
                []
                if arm_speed.is_default
                else [(replace(arm_speed, compile=False).describe(), replace(arm_speed, compile=False))]
            )
            for eval_name, eval_speed in evals:
                rec = cached_record(
                    model,
                    sub["test"],
                    preset.run_dir / "records",
                    batch_size=preset.training.eval_batch_size,
                    speed=eval_speed,
                    provenance={"checkpoint": str(run / CHECKPOINT)},
                )
                acc = rec.correct.float().mean(0).tolist()
                out.append(
                    {
                        "seed": i,
                        "train": arm_speed.describe(),
                        "eval": eval_name,
                        **{f"acc_{k + 1}": a for k, a in enumerate(acc)},
                        "acc_mean": sum(acc) / len(acc),
                        "overthought": float(overthought(rec).float().mean()),
                        "train_seconds": float(sum(h["seconds"] for h in hist)),
                    }
                )
    return pd.DataFrame(out)
