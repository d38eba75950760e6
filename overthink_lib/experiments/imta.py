"""The IMTA protocol (thesis Table 3.1, notebook 07): E, 2E and E + E epochs of ISC+OFA fine-tuning on one network,
and the same over seeds on a fixed subset (a verdict about the recipe, not one network).

Jobs: ``imta-seeds`` (the seeds, from both parents; a task per seed on a cluster) and ``imta`` (the protocol on the
main dataset, after ``main``: its 2E run is the main network when the preset's epochs are 2E).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, Preset, get_device
from ..data import ImageSet
from ..records import ExitRecord
from ..train import CHECKPOINT, build_model, fit, model_from_checkpoint
from .declare import Job, hours, item_index, main_macs, seed_of, sizes
from .params import Param, choice
from .runs import load_splits, main_spec, records_for, subset_splits, train_config, train_or_load

if TYPE_CHECKING:  # for annotations only: pandas loads when a table is built
    import pandas as pd


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
    opts = _options(preset, parent=parent, freeze=freeze, teacher=teacher, kl=kl, frozen_bn=frozen_bn)
    splits = load_splits(preset, preset.datasets[0], seed) if splits is None else splits
    spec = main_spec(preset, splits["train"])
    out = ImtaProtocol({}, {}, {}, opts["parent"])
    model, hist, run = train_or_load(
        preset, spec, train_config(preset, 2 * preset.imta.epochs, seed), splits, progress=progress
    )
    if opts["parent"] == "branch":
        parent = _branch_parent(preset, spec, splits, seed, run, hist, out, progress)
    else:
        parent = _separate_parent(preset, spec, splits, seed, out, progress)
    out.records["2E"] = records_for(model, splits, preset, run)
    out.runs["2E"], out.histories["2E"] = run, hist
    name = "E + E ISC+OFA"
    model, hist, run = _fine_tune(preset, spec, splits, seed, parent, {**opts, "ge": ge}, progress)
    out.records[name] = records_for(model, splits, preset, run)
    out.runs[name], out.histories[name] = run, hist
    out.records = {k: out.records[k] for k in ("E", "2E", name)}  # table order
    return out


def _options(preset: Preset, **given: str | None) -> dict[str, Any]:
    """The protocol's options (the preset's ``imta`` fields where not given), checked, with the fine-tuning's lr
    schedule (``stage2``: ×0.1 at ``imta.milestones`` of its epochs; none: the preset's schedule)."""
    from ..models.imta import FREEZE, FROZEN_BN, KL_REDUCTIONS, TEACHERS

    opts = {k: getattr(preset.imta, k) if v is None else v for k, v in given.items()}
    allowed = {
        "parent": IMTA_PARENTS,
        "freeze": FREEZE,
        "teacher": TEACHERS,
        "kl": KL_REDUCTIONS,
        "frozen_bn": FROZEN_BN,
    }
    what = {"kl": "KL reduction", "frozen_bn": "frozen BatchNorm mode"}
    for key in ("parent", "freeze", "teacher", "kl", "frozen_bn"):
        if opts[key] not in allowed[key]:
            raise ConfigError(f"IMTA {what.get(key, key)} must be one of {', '.join(allowed[key])}, got {opts[key]!r}")
    stones = tuple(preset.imta.milestones)
    if not all(0 < m < 1 for m in stones) or list(stones) != sorted(set(stones)):
        raise ConfigError(
            f"preset field imta.milestones must be increasing fractions of the fine-tuning's epochs in (0, 1), "
            f"got {stones!r} (official: (0.5, 0.75); () for the preset's schedule)"
        )
    opts["stage2"] = dict(schedule="step", milestones=stones) if stones else {}
    return opts


def _branch_parent(preset, spec, splits, seed, run: Path, hist: list, out: ImtaProtocol, progress: bool):
    """The ``E`` arm under ``branch``: the 2E run's half-way snapshot (trained again when an old run kept none).
    Fills ``out``'s E entries; returns (the E-epoch model, its checkpoint)."""
    from ..train import HALFWAY

    e, device = preset.imta.epochs, get_device(preset.training.device)
    if not (run / HALFWAY).exists():  # a run from before half-way snapshots were kept: the same run again
        if progress:
            print(f"{run} has no half-way snapshot ({HALFWAY}); training it again to keep one", flush=True)
        long_cfg = train_config(preset, 2 * e, seed)
        model = build_model(spec, long_cfg.init_seed).to(device)
        hist = fit(
            model, splits["train"], splits.get("val"), long_cfg, out_dir=run, progress=progress, extra={"tag": ""}
        )
    half, _ = model_from_checkpoint(run / HALFWAY, device)
    out.records["E"] = records_for(half, splits, preset, run, checkpoint=run / HALFWAY)
    out.runs["E"], out.histories["E"] = run, hist[:e]
    return half, run / HALFWAY


def _separate_parent(preset, spec, splits, seed, out: ImtaProtocol, progress: bool):
    """The ``E`` arm under ``separate``: its own E-epoch run. Fills ``out``'s E entries; returns (model, checkpoint)."""
    model, hist, run = train_or_load(
        preset, spec, train_config(preset, preset.imta.epochs, seed), splits, progress=progress
    )
    out.records["E"] = records_for(model, splits, preset, run)
    out.runs["E"], out.histories["E"] = run, hist
    return model, run / CHECKPOINT


def _fine_tune(preset, spec, splits, seed, parent: tuple, opts: dict, progress: bool):
    """The ``E + E ISC+OFA`` arm: IMTA heads on ``parent`` (its model and checkpoint), E epochs of the OFA loss (a
    cached run keyed by the parent's weights; ``opts``: :func:`_options`' and ``ge``). Returns (model, history, run
    folder)."""
    from ..models.imta import load_backbone, ofa_loss
    from ..train import state_hash

    options = {k: opts[k] for k in ("freeze", "teacher", "frozen_bn")}
    parent_model, parent_ckpt = parent
    ispec = {"name": "imta", "kwargs": {"backbone": spec, "ge": opts["ge"], **options}}
    built = {}

    def init(m):
        built["model"] = m
        return load_backbone(m, parent_model)

    def loss(outs, y, idx):
        return ofa_loss(outs, y, teacher=built["model"].teacher_logits(), reduction=opts["kl"])

    return train_or_load(
        preset,
        ispec,
        train_config(preset, preset.imta.epochs, seed, **opts["stage2"]),
        splits,
        progress=progress,
        tag=f"from-{state_hash(parent_model)}-kl-{opts['kl']}",
        init=init,
        loss_fn=loss,
        extra={"parent_checkpoint": str(parent_ckpt), "kl_reduction": opts["kl"]},
    )


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
    from ..analysis.overthinking import arms_over_seeds

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


# ---- the jobs ahead of the notebooks ----


def _seed_count_rule(v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v == 1:
        raise ConfigError(
            f"parameter n_seeds must be 0 (the preset's imta.seeds) or an integer >= 2 (a CI over seeds "
            f"needs two), got {v!r}"
        )


#: Notebook 07's parameters that change what it trains: :func:`imta_protocol`'s options (each a preset field of
#: ``imta``, the keyword of the same name) and the number of seeds.
PARAMS: tuple[Param, ...] = (
    Param("imta_freeze", str, choice("imta_freeze", "models.imta", "FREEZE"), job=True, preset_field="imta.freeze"),
    Param(
        "imta_teacher", str, choice("imta_teacher", "models.imta", "TEACHERS"), job=True, preset_field="imta.teacher"
    ),
    Param("imta_kl", str, choice("imta_kl", "models.imta", "KL_REDUCTIONS"), job=True, preset_field="imta.kl"),
    Param(
        "imta_parent",
        str,
        choice("imta_parent", "experiments.imta", "IMTA_PARENTS"),
        job=True,
        preset_field="imta.parent",
    ),
    Param("imta_bn", str, choice("imta_bn", "models.imta", "FROZEN_BN"), job=True, preset_field="imta.frozen_bn"),
    Param("n_seeds", int, _seed_count_rule, job=True, preset_field="imta.seeds"),
)


def job_options(preset: Preset, params: dict[str, Any]) -> dict[str, str]:
    """:func:`imta_protocol`'s options from notebook 07's parameters (the preset's where not given)."""
    return {p.preset_field.split(".")[1]: params.get(p.name) or p.preset_value(preset) for p in PARAMS if p.kind is str}


def seed_count(preset: Preset, params: dict[str, Any]) -> int:
    """Notebook 07's number of seeds: its ``n_seeds`` parameter, else the preset's ``imta.seeds``."""
    return int(params.get("n_seeds") or preset.imta.seeds)


def _seed_items(preset: Preset, params: dict) -> list[str]:
    k = seed_count(preset, params)
    return [f"seed{i}" for i in range(k)] if k >= 2 else []


def _run_imta(preset: Preset, params: dict[str, Any], item: str) -> None:
    imta_protocol(preset, seed_of(preset, params), **job_options(preset, params))


def _run_imta_seeds(preset: Preset, params: dict[str, Any], item: str) -> None:
    k, seed = seed_count(preset, params), seed_of(preset, params)
    if k < 2:
        return
    # notebook 07 runs the seeds from both parents of the E-epoch network (its imta_parent first, then the other)
    options = job_options(preset, params)
    parents = [options["parent"], *(p for p in IMTA_PARENTS if p != options["parent"])]
    if not item:  # the whole loop, as notebook 07 runs it
        for parent in parents:
            imta_over_seeds(preset, seed, seeds=k, **{**options, "parent": parent})
        return
    i = item_index(item, "seed", k)
    for parent in parents:
        imta_protocol(preset, seed + i, splits=imta_seed_splits(preset, seed), **{**options, "parent": parent})


def _imta_hours(preset: Preset, params: dict[str, Any], item: str) -> float:
    train, val, _, _ = sizes(preset)
    return hours(main_macs(preset), train, val, 3 * preset.imta.epochs)  # the 2E run, then E epochs of fine-tuning


def _imta_seeds_hours(preset: Preset, params: dict[str, Any], item: str) -> float:
    n = preset.imta.seed_train or sizes(preset)[0]
    # per seed and parent: branch = the 2E run + E of fine-tuning; separate = E more + E of fine-tuning
    per_seed = hours(main_macs(preset), n, 0, 5 * preset.imta.epochs)
    return per_seed * (1 if item else max(seed_count(preset, params), 0))


JOBS = (
    Job("imta-seeds", ("data",), ("07",), _run_imta_seeds, _imta_seeds_hours, items=_seed_items),
    Job("imta", ("main",), ("07",), _run_imta, _imta_hours),
)
