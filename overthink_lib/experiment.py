"""The preset's main experiment: which model, which data, which schedule — shared by the CLI and the notebooks.

Trained models live in ``runs/<preset>/models/<model>-<dataset>-<hash>/`` where the hash covers the model spec, the
training config and the training data's description: a finished run with the same hash is reused, anything else
trains anew (a cache can never be stale). Records live in ``runs/<preset>/records/``, keyed by the weights' hash.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .config import Preset, config_hash, get_device, get_preset
from .data import ImageSet, get_dataset
from .records import ExitRecord, cached_record
from .speed import Speed
from .train import CHECKPOINT, TrainConfig, build_model, fit, load_checkpoint, model_from_checkpoint


def load_splits(P: Preset, dataset: str, seed: int | None = None) -> dict[str, ImageSet]:
    """train / val / test of ``dataset`` with the preset's split and subset settings."""
    seed = P.seed if seed is None else seed
    return {s: get_dataset(dataset, s, val_fraction=P.val_fraction, split_seed=seed, fraction=P.data_fraction)
            for s in ("train", "val", "test")}


def model_spec(ds: ImageSet, name: str = "msdnet_cifar", **kwargs: Any) -> dict[str, Any]:
    """The registry spec of a model for ``ds`` (classes and input channels from the data)."""
    return {"name": name, "kwargs": {"num_classes": ds.num_classes, "in_channels": ds.channels, **kwargs}}


def train_config(P: Preset, epochs: int | None = None, seed: int | None = None, **overrides: Any) -> TrainConfig:
    """The preset's training schedule (thesis: lr 0.1, batch 64, ×0.1 at 75 and 150 of 200 epochs)."""
    seed = P.seed if seed is None else seed
    base = dict(epochs=P.epochs if epochs is None else epochs, batch_size=P.batch_size, lr=P.lr,
                schedule=P.lr_schedule, milestones=P.lr_milestones, init_seed=seed, data_seed=seed,
                eval_batch_size=P.eval_batch_size, speed=Speed.parse(P.speed))
    return TrainConfig(**{**base, **overrides})


def run_folder(P: Preset, spec: dict[str, Any], cfg: TrainConfig, train_ds: ImageSet, tag: str = "") -> Path:
    key = config_hash({"spec": spec, "train": cfg.identity(), "data": train_ds.describe(), "tag": tag})
    return P.run_dir / "models" / f"{spec['name']}-{train_ds.name}{('-' + tag) if tag else ''}-{key}"


def train_or_load(P: Preset, spec: dict[str, Any], cfg: TrainConfig, splits: dict[str, ImageSet], *,
                  resume: bool = False, progress: bool = True, tag: str = "", init=None, loss_fn=None,
                  extra: dict[str, Any] | None = None) -> tuple[torch.nn.Module, list, Path]:
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
    device = get_device(P.device)
    out = run_folder(P, spec, cfg, splits["train"], tag)
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
    if progress:
        print(f"training {spec['name']} on {splits['train'].name} ({len(splits['train'])} images, {cfg.epochs} "
              f"epochs, device {device}) → {out}", flush=True)
    history = fit(model, splits["train"], splits.get("val"), cfg, out_dir=out, resume=resume, device=device,
                  progress=progress, loss_fn=loss_fn, params=[p for p in model.parameters() if p.requires_grad],
                  extra={"tag": tag, **(extra or {})})
    return model.eval(), history, out


def train_main_model(preset: str, *, dataset: str | None = None, epochs: int | None = None, resume: bool = False,
                     progress: bool = True, speed: str | None = None):
    """The preset's MSDNet on its main dataset. Returns (model, history, run folder, splits).

    ``speed`` overrides the preset's speed settings (``fast``, ``bf16,compile``, ...): another run folder.
    """
    P = get_preset(preset)
    dataset = dataset or P.datasets[0]
    splits = load_splits(P, dataset)
    spec = model_spec(splits["train"])
    cfg = train_config(P, epochs, **({"speed": Speed.parse(speed)} if speed is not None else {}))
    model, history, out = train_or_load(P, spec, cfg, splits, resume=resume, progress=progress)
    return model, history, out, splits


def records_for(model: torch.nn.Module, splits: dict[str, ImageSet], P: Preset, run: Path,
                which: tuple[str, ...] = ("val", "test"), progress: bool = False) -> dict[str, ExitRecord]:
    """Validation and test ExitRecords of ``model``, cached in ``runs/<preset>/records/``."""
    ckpt = load_checkpoint(run / CHECKPOINT)
    prov = {"checkpoint": str(run / CHECKPOINT), "train_config": ckpt["train_config"],
            "init_seed": ckpt.get("init_seed"), "data_seed": ckpt.get("data_seed"), "preset": P.name}
    return {s: cached_record(model, splits[s], P.run_dir / "records", batch_size=P.eval_batch_size,
                             provenance=prov, progress=progress) for s in which}


def main_records(preset: str, *, dataset: str | None = None, epochs: int | None = None) -> dict[str, ExitRecord]:
    """Validation and test records of the preset's main MSDNet (trains it first when needed)."""
    model, _, run, splits = train_main_model(preset, dataset=dataset, epochs=epochs)
    return records_for(model, splits, get_preset(preset), run)


def main_experiment(P: Preset, seed: int | None = None, progress: bool = False) -> dict[str, Any]:
    """What the analysis notebooks start from: the main MSDNet's splits, run folder and val/test records.

    Trains only when no finished run with the same config exists (notebook 02 normally did it).
    """
    splits = load_splits(P, P.datasets[0], seed)
    spec = model_spec(splits["train"])
    model, history, run = train_or_load(P, spec, train_config(P, seed=seed), splits, progress=progress)
    return {"model": model, "history": history, "run": run, "splits": splits,
            "records": records_for(model, splits, P, run)}


def imta_protocol(P: Preset, seed: int | None = None, *, frozen: bool = True, ge: bool = False,
                  progress: bool = True) -> dict[str, Any]:
    """The thesis's Table 3.1 protocol on the preset's main dataset (E = ``P.imta_epochs``):

    - ``E``: the plain MSDNet after E epochs (its own run with an E-epoch schedule);
    - ``2E``: the plain MSDNet after 2E epochs;
    - ``E + E ISC+OFA``: the E-epoch network with IMTA heads fine-tuned for E more epochs with the OFA loss
      (``frozen``: only heads and ISC train — the official stage 2; else everything trains).
    Returns ``{"records": {name: {"val", "test"}}, "runs": {name: folder}, "histories": {name: rows}}``.
    """
    from .models.imta import load_backbone, ofa_loss
    from .train import state_hash

    splits = load_splits(P, P.datasets[0], seed)
    spec = model_spec(splits["train"])
    e = P.imta_epochs
    out: dict[str, Any] = {"records": {}, "runs": {}, "histories": {}}
    plain = {}
    for name, epochs in (("E", e), ("2E", 2 * e)):
        model, hist, run = train_or_load(P, spec, train_config(P, epochs, seed), splits, progress=progress)
        plain[name] = model
        out["records"][name] = records_for(model, splits, P, run)
        out["runs"][name], out["histories"][name] = run, hist
    parent = plain["E"]
    ispec = {"name": "imta", "kwargs": {"backbone": spec, "frozen": frozen, "ge": ge}}
    model, hist, run = train_or_load(
        P, ispec, train_config(P, e, seed), splits, progress=progress, tag=f"from-{state_hash(parent)}",
        init=lambda m: load_backbone(m, parent), loss_fn=lambda outs, y, idx: ofa_loss(outs, y),
        extra={"parent_checkpoint": str(out["runs"]["E"] / CHECKPOINT)})
    name = "E + E ISC+OFA"
    out["records"][name] = records_for(model, splits, P, run)
    out["runs"][name], out["histories"][name] = run, hist
    return out


def train_policy(P: Preset, train_set: ImageSet, seed: int | None, *, source: str, shuffle: bool = False,
                 progress: bool = True):
    """Train the preset's policy ResNet on a D_ee set (class-weighted CE, Eq 4.3); ``shuffle``: the permuted-label
    control. ``source`` (e.g. the record's weights hash) goes into the run's hash, so new labels train anew."""
    from .policy import class_weights, shuffled, weighted_ce

    seed = P.seed if seed is None else seed
    data = shuffled(train_set, seed) if shuffle else train_set
    spec = {"name": "policy_resnet", "kwargs": {"depth": P.policy_depth, "width": P.policy_width,
                                                "in_channels": train_set.channels,
                                                "num_classes": train_set.num_classes}}
    cfg = train_config(P, P.policy_epochs, seed, augment=False,
                       milestones=(0.5, 0.75) if P.lr_schedule == "step" else ())
    weights = class_weights(data.labels, data.num_classes)
    model, hist, run = train_or_load(P, spec, cfg, {"train": data}, progress=progress,
                                     tag=f"{source}-{'shuffled' if shuffle else 'true'}",
                                     loss_fn=weighted_ce(weights), extra={"class_weights": weights.tolist()})
    return model, hist, run


FACTORS = ("init", "data", "both")


def short_schedule_splits(P: Preset, seed: int) -> dict[str, ImageSet]:
    """The stochasticity experiment's data: a seeded ``P.stoch_train``-image subset of the training split, and the
    whole test split."""
    import numpy as np

    splits = load_splits(P, P.datasets[0], seed)
    train = splits["train"]
    n = min(P.stoch_train, len(train))
    rows = np.sort(np.random.default_rng(seed + 11).permutation(len(train))[:n])
    sub = {"train": train.subset(rows), "test": splits["test"]}
    sub["train"].info = {**train.info, "stoch_subset": {"size": n, "seed": seed + 11}}
    return sub


def stochastic_runs(P: Preset, model_name: str = "msdnet_cifar", seed: int | None = None,
                    progress: bool = True, **model_kwargs: Any) -> dict[str, Any]:
    """K runs per randomness source on a seeded subset of the training set, everything else fixed.

    Factor ``init``: init seeds 0..K−1 with data seed 0; ``data``: data seeds 0..K−1 with init seed 0; ``both``: both
    seeds = i. Run (0, 0) is shared by the three factors. Returns the test records per factor (K each) and the seeds.
    """
    seed = P.seed if seed is None else seed
    sub = short_schedule_splits(P, seed)
    n = len(sub["train"])
    spec = model_spec(sub["train"], model_name, **model_kwargs)
    seeds = {"init": [(i, 0) for i in range(P.stoch_runs)], "data": [(0, d) for d in range(P.stoch_runs)],
             "both": [(i, i) for i in range(P.stoch_runs)]}
    cache: dict[tuple[int, int], ExitRecord] = {}
    out: dict[str, Any] = {"records": {}, "seeds": seeds, "spec": spec, "train_size": n, "test_set": sub["test"]}
    for factor, pairs in seeds.items():
        recs = []
        for init_seed, data_seed in pairs:
            if (init_seed, data_seed) not in cache:
                cfg = train_config(P, P.stoch_epochs, seed, init_seed=init_seed + seed, data_seed=data_seed + seed)
                model, _, run = train_or_load(P, spec, cfg, sub, progress=progress, tag="stoch")
                cache[(init_seed, data_seed)] = records_for(model, sub, P, run, which=("test",))["test"]
                if (init_seed, data_seed) == (0, 0):
                    out["first_model"] = model
            recs.append(cache[(init_seed, data_seed)])
        out["records"][factor] = recs
    out["models_trained"] = len(cache)
    return out


def speed_equivalence(P: Preset, speed: Speed, seeds: int = 4, *, seed: int | None = None,
                      progress: bool = True) -> "pd.DataFrame":
    """Does training with ``speed`` reach the accuracy of fp32 within seed-to-seed noise?

    For each seed i < ``seeds``: one fp32 eager run and one ``speed`` run with init and data seed i, the stochasticity
    experiment's schedule (``P.stoch_train`` images, ``P.stoch_epochs`` epochs), evaluated on the whole test set —
    the ``speed`` run both in fp32 and with its own inference settings. Returns one row per (seed, arm) with the test
    accuracy per exit, the overthinking rate and the training seconds; runs and records are cached like any other.
    """
    import pandas as pd

    from .overthinking import overthought

    seed = P.seed if seed is None else seed
    sub = short_schedule_splits(P, seed)
    spec = model_spec(sub["train"])
    out = []
    for i in range(seeds):
        for arm_speed in (Speed(), speed):
            cfg = train_config(P, P.stoch_epochs, seed, init_seed=i + seed, data_seed=i + seed, speed=arm_speed)
            model, hist, run = train_or_load(P, spec, cfg, sub, progress=progress, tag="speedcheck")
            evals = [("fp32", Speed())] + ([] if arm_speed.is_default else
                                          [(replace(arm_speed, compile=False).describe(),
                                            replace(arm_speed, compile=False))])
            for eval_name, eval_speed in evals:
                rec = cached_record(model, sub["test"], P.run_dir / "records", batch_size=P.eval_batch_size,
                                    speed=eval_speed, provenance={"checkpoint": str(run / CHECKPOINT)})
                acc = rec.correct.float().mean(0).tolist()
                out.append({"seed": i, "train": arm_speed.describe(), "eval": eval_name,
                            **{f"acc_{k + 1}": a for k, a in enumerate(acc)},
                            "acc_mean": sum(acc) / len(acc),
                            "overthought": float(overthought(rec).float().mean()),
                            "train_seconds": float(sum(h["seconds"] for h in hist))})
    return pd.DataFrame(out)
