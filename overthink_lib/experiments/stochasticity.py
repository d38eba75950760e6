"""The stochasticity protocol (notebook 09, the thesis's open question): K runs per randomness source (init, data
order, both) of two networks on a seeded subset, everything else fixed.

Job: ``stochasticity`` (every distinct run; a task per run on a cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import Preset
from ..data import ImageSet
from ..records import ExitRecord
from .declare import Job, forward_macs, hours, seed_of, sizes
from .runs import model_spec, records_for, subset_splits, train_config, train_or_load


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


def stochastic_subset_splits(preset: Preset, seed: int) -> dict[str, ImageSet]:
    """The stochasticity experiment's data: a seeded ``preset.stochasticity.train``-image subset of the training split, and the
    whole test split."""
    return subset_splits(preset, seed, preset.stochasticity.train)


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


# ---- the job ahead of the notebook ----


def _items(preset: Preset, params: dict) -> list[str]:
    pairs = dict.fromkeys(p for ps in stochastic_seeds(preset).values() for p in ps)  # run (0, 0) is shared
    return [f"{m}-i{i}-d{d}" for m in STOCHASTICITY_MODELS for i, d in pairs]


def _run(preset: Preset, params: dict[str, Any], item: str) -> None:
    seed = seed_of(preset, params)
    if not item:
        for name in STOCHASTICITY_MODELS:
            stochastic_runs(preset, name, seed)
        return
    name, i, d = item.rsplit("-", 2)
    sub = stochastic_subset_splits(preset, seed)
    stochastic_run(preset, model_spec(sub["train"], name), sub, seed, int(i[1:]), int(d[1:]))


def _hours(preset: Preset, params: dict[str, Any], item: str) -> float:
    st = preset.stochasticity
    _, _, shape, classes = sizes(preset)
    models = [item.rsplit("-", 2)[0]] if item else list(STOCHASTICITY_MODELS)
    runs = 1 if item else 3 * st.runs - 2
    return sum(hours(forward_macs(m, shape, num_classes=classes), st.train, 0, st.epochs) for m in models) * runs


JOBS = (Job("stochasticity", ("data",), ("09",), _run, _hours, per_dataset=False, items=_items),)
