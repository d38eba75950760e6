"""The main protocol: the preset's MSDNet on its main dataset (notebook 02 trains it; 03–08, 10 and 11 analyse its
records), a given record in its place (the ``record`` parameter), and its record on its own training split (Fig 4.1).

Jobs: ``data`` loads (installs, where Debian's copy must be unpacked) each dataset and the Max-Min base once, before
any two workers could do it at the same time; ``main`` trains the network and makes its records.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, Preset, get_preset
from ..data import ImageSet, get_dataset
from ..records import ExitRecord
from ..speed import Speed
from .declare import Job, hours, main_macs, no_hours, seed_of, sizes
from .runs import (
    Experiment,
    load_splits,
    main_spec,
    record_images,
    records_for,
    subset_splits,
    train_config,
    train_or_load,
)


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
    spec = main_spec(preset, splits["train"])
    cfg = train_config(preset, epochs, **({"speed": Speed.parse(speed)} if speed is not None else {}))
    model, history, out = train_or_load(preset, spec, cfg, splits, resume=resume, progress=progress)
    return model, history, out, splits


def main_records(name: str, *, dataset: str | None = None, epochs: int | None = None) -> dict[str, ExitRecord]:
    """Validation and test records of preset ``name``'s main MSDNet (trains it first when needed)."""
    model, _, run, splits = train_main_model(name, dataset=dataset, epochs=epochs)
    return records_for(model, splits, get_preset(name), run)


def main_experiment(preset: Preset, seed: int | None = None, progress: bool = False) -> Experiment:
    """What the analysis notebooks start from: the main MSDNet's splits, run folder and val/test records.

    Trains only when no finished run with the same config exists (notebook 02 normally did it).
    """
    splits = load_splits(preset, preset.datasets[0], seed)
    spec = main_spec(preset, splits["train"])
    model, history, run = train_or_load(preset, spec, train_config(preset, seed=seed), splits, progress=progress)
    return Experiment(model, history, run, splits, records_for(model, splits, preset, run))


def analysis_experiment(
    preset: Preset, seed: int | None = None, record: str = "", progress: bool = False
) -> Experiment:
    """What an analysis notebook analyses: the preset's main MSDNet (``record`` empty, :func:`main_experiment`) or
    the validation and test records named by ``record`` (a folder or ``VAL,TEST``; see
    :func:`~overthink_lib.records.load_records`) — then ``model`` and ``history`` are None and ``splits`` holds the
    records' images where their provenance names a dataset of the registry (else None)."""
    if not record:
        return main_experiment(preset, seed, progress)
    from ..records import load_records

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


def training_record(preset: Preset, seed: int | None = None) -> ExitRecord:
    """The main MSDNet's record on (a seeded ``preset.data.train_record_size``-image subset of; 0 = all) its own training
    split, without augmentation: what the thesis's Fig 4.1 builds D_ee from before it moves to the validation split."""
    exp = main_experiment(preset, seed)
    sub = subset_splits(preset, preset.seed_or_own(seed), preset.data.train_record_size, salt=31)["train"]
    rec = records_for(exp.model, {"train": sub}, preset, exp.run, ("train",))["train"]
    return rec


# ---- the jobs ahead of the notebooks ----


def _run_data(preset: Preset, params: dict[str, Any], item: str) -> None:
    load_splits(preset, preset.datasets[0], seed_of(preset, params))
    get_dataset(preset.maxmin.base, "train")


def _run_main(preset: Preset, params: dict[str, Any], item: str) -> None:
    seed = seed_of(preset, params)
    main_experiment(preset, seed, progress=True)
    if preset.data.train_record_size >= 0:
        training_record(preset, seed)


def _main_hours(preset: Preset, params: dict[str, Any], item: str) -> float:
    train, val, _, _ = sizes(preset)
    return hours(main_macs(preset), train, val, preset.training.epochs)


ANALYSES = ("02", "03", "04", "05", "06", "07", "08", "10", "11")
JOBS = (
    Job("data", (), (*ANALYSES, "09"), _run_data, no_hours),
    Job("main", ("data",), ANALYSES, _run_main, _main_hours),
)
