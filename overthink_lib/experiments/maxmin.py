"""The Max-Min protocol (thesis ch. 4): the MSDNet M trained briefly on Max-Min composites of the preset's base
dataset (notebooks 06 and 08), and M at two training lengths (Fig 4.4).

Job: ``maxmin`` trains M and the long M.
"""

from __future__ import annotations

from ..config import ConfigError, Preset, get_device
from ..data import ImageSet
from ..records import ExitRecord
from ..train import model_from_checkpoint
from .declare import Job, forward_macs, hours, seed_of
from .runs import Experiment, main_spec, records_for, train_config, train_or_load


def load_maxmin_splits(preset: Preset, seed: int | None = None) -> dict[str, ImageSet]:
    """train / val / test Max-Min composites of the preset (sizes ``preset.maxmin``, base ``preset.maxmin.base``), each built
    from the base dataset's same split, so no base image appears in two splits."""
    from ..data.maxmin import get_maxmin

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
    spec = main_spec(preset, splits["train"])
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
    from ..train import HALFWAY

    seed = preset.seed_or_own(seed)
    mmx = maxmin_experiment(preset, seed, progress=progress)
    e = preset.maxmin.epochs
    out = {}
    if preset.maxmin.long_epochs:
        long_model, _, long_run = train_or_load(
            preset,
            main_spec(preset, mmx.splits["train"]),
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


def maxmin_test_images(preset: Preset, seed: int | None = None) -> dict:
    """What notebook 06's sanity check reads of M (:func:`maxmin_experiment`): the test composites (``images``), each
    one's level name (``levels``), M's test ``record``, the level ``names`` in order and the ``items`` per level (the
    ``maxmin`` argument of :func:`overthink_lib.analysis.dct_study.study`)."""
    import numpy as np

    from ..data.maxmin import ITEMS_PER_LEVEL, LEVELS

    mmx = maxmin_experiment(preset, seed)
    test = mmx.splits["test"]
    levels = np.array(LEVELS)[test.extras["level"].numpy()]
    return dict(
        images=test.images.numpy(), levels=levels, record=mmx.records["test"], names=LEVELS, items=ITEMS_PER_LEVEL
    )


# ---- the job ahead of the notebooks ----


def _run_maxmin(preset: Preset, params: dict, item: str) -> None:
    seed = seed_of(preset, params)
    maxmin_experiment(preset, seed)
    maxmin_short_and_long(preset, seed)


def maxmin_macs(preset: Preset, name: str = "msdnet_cifar", **kwargs) -> float:
    """Forward multiply-adds per Max-Min composite of model ``name`` (10 classes unless ``kwargs`` say otherwise)."""
    mm = preset.maxmin
    return forward_macs(name, (1, mm.canvas, mm.canvas), **{"num_classes": 10, **kwargs})


def _maxmin_hours(preset: Preset, params: dict, item: str) -> float:
    mm = preset.maxmin
    return hours(maxmin_macs(preset), mm.sizes.train, mm.sizes.val, mm.epochs + mm.long_epochs)


JOBS = (Job("maxmin", ("data",), ("06", "08"), _run_maxmin, _maxmin_hours, per_dataset=False),)
