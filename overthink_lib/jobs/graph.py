"""What the jobs are: the graph of the notebooks' expensive, independent calls, its fan-out, and a job's own run.

A job calls exactly the library functions its notebooks call, with the notebooks' parameters, so the notebooks find
every network and record cached under the same run hashes ("reusing the finished run ..."). A job is planned as
*tasks*: one per dataset it serves (``per_dataset``), and, where the job is a loop of independent runs (07's seeds,
09's K runs per randomness source and network), one per run when the executor fans out (a cluster: each run its own
SLURM job) or one for the whole loop (one machine: fewer process starts). Either way the same runs are trained.

The preset and the parameters travel to each task as data (:class:`JobSpec`, JSON), never by name only: a preset
with ``--param`` overrides runs as jobs too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, Preset, atomic_write_bytes, get_preset

#: Notebook parameters the jobs read (their notebooks' defaults when absent): the seed, λ of the Max-Min policy, 07's
#: IMTA options and its number of seeds. Every other parameter but those of :data:`UNMODELLED` changes no training.
JOB_PARAMS = ("seed", "lam", "n_seeds", "imta_freeze", "imta_teacher", "imta_kl", "imta_parent", "imta_bn")
#: Parameters that change what the notebooks train or read in ways the jobs do not model: with one of them given,
#: the notebooks train what they need themselves (02's ``epochs``; a given ``record`` replaces the preset's model).
UNMODELLED = ("epochs", "record")


@dataclass(frozen=True)
class Job:
    """One kind of prefetched work.

    Attributes:
        name: the job's name (``python -m overthink_lib job NAME``).
        after: jobs that must finish first (it reads what they trained).
        notebooks: name prefixes of the notebooks that use what it makes.
        per_dataset: runs once per dataset of the suite (else once, with the first).
        items: for a loop of independent runs, ``items(preset, params)`` lists them (a task each when fanned out).
    """

    name: str
    after: tuple[str, ...]
    notebooks: tuple[str, ...]
    per_dataset: bool = True
    items: Callable[[Preset, dict], list[str]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Task:
    """One planned run of a job: for ``dataset``, and one ``item`` of its loop ("" = the whole loop, or no loop)."""

    job: str
    dataset: str
    item: str = ""

    def stem(self, first_dataset: str) -> str:
        """Its log's name: ``main``, ``main-svhn``, ``imta-seeds-seed1``."""
        parts = [self.job]
        if self.dataset != first_dataset and _JOB[self.job].per_dataset:
            parts.append(self.dataset)
        if self.item:
            parts.append(self.item)
        return "-".join(parts)

    def label(self) -> str:
        return f"{self.job}{f' {self.item}' if self.item else ''} ({self.dataset})"


@dataclass(frozen=True)
class JobSpec:
    """What a task needs besides its name: the resolved preset and the job parameters (:data:`JOB_PARAMS`)."""

    preset: Preset
    params: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"preset": self.preset.to_dict(), "params": self.params}, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        try:
            d = json.loads(text)
            preset, params = d["preset"], d["params"]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"not a job spec (JSON with 'preset' and 'params'): {err}") from None
        if not isinstance(params, dict):
            raise ConfigError(f"job spec 'params' must be an object of parameters, got {type(params).__name__}")
        unknown = sorted(set(params) - set(JOB_PARAMS))
        if unknown:
            raise ConfigError(f"job spec parameter {unknown[0]!r} is not one jobs read ({', '.join(JOB_PARAMS)})")
        return cls(Preset.from_dict(preset), dict(params))

    def write(self, folder: Path) -> Path:
        """``folder/spec-<hash>.json`` (atomic; the same spec, the same file)."""
        text = self.to_json()
        path = Path(folder) / f"spec-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, text.encode())
        return path

    @classmethod
    def read(cls, path: Path) -> JobSpec:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"cannot read the job spec {path}: {err}") from None
        return cls.from_json(text)

    @property
    def seed(self) -> int:
        return self.preset.seed_or_own(self.params.get("seed"))


def unmodelled(params: dict[str, Any]) -> list[str]:
    """The given parameters of :data:`UNMODELLED` (a value that is not empty or 0)."""
    return [k for k in UNMODELLED if str(params.get(k) or "").strip() not in ("", "0")]


def job_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a suite run that the jobs read (the rest changes no training)."""
    return {k: v for k, v in params.items() if k in JOB_PARAMS}


def _imta_options(spec: JobSpec) -> dict[str, str]:
    # notebook 07's parameter defaults (imta_freeze="all", imta_teacher="pretrained", imta_kl="mean",
    # imta_parent="branch", imta_bn="eval") are the preset's; test_jobs checks that they agree
    p, imta = spec.params, spec.preset.imta
    return dict(
        freeze=p.get("imta_freeze") or imta.freeze,
        teacher=p.get("imta_teacher") or imta.teacher,
        kl=p.get("imta_kl") or imta.kl,
        parent=p.get("imta_parent") or imta.parent,
        frozen_bn=p.get("imta_bn") or imta.frozen_bn,
    )


def _imta_seed_count(spec: JobSpec) -> int:
    return int(spec.params.get("n_seeds") or spec.preset.imta.seeds)


def _imta_seed_items(preset: Preset, params: dict) -> list[str]:
    k = _imta_seed_count(JobSpec(preset, params))
    return [f"seed{i}" for i in range(k)] if k >= 2 else []


def _stoch_items(preset: Preset, params: dict) -> list[str]:
    from ..experiment import STOCHASTICITY_MODELS, stochastic_seeds

    pairs = dict.fromkeys(p for ps in stochastic_seeds(preset).values() for p in ps)  # run (0, 0) is shared
    return [f"{m}-i{i}-d{d}" for m in STOCHASTICITY_MODELS for i, d in pairs]


#: In priority order: a free worker takes the first task whose ``after`` jobs are done (longest first).
JOBS: tuple[Job, ...] = (
    # loads (installs, where Debian's copy must be unpacked) the dataset and the Max-Min base once, before any
    # two workers could do it at the same time
    Job("data", (), ("02", "03", "04", "05", "06", "07", "08", "09", "10", "11")),
    Job("main", ("data",), ("02", "03", "04", "05", "06", "07", "08", "10", "11")),
    Job("maxmin", ("data",), ("06", "08"), per_dataset=False),
    Job("imta-seeds", ("data",), ("07",), items=_imta_seed_items),
    Job("imta", ("main",), ("07",)),
    # each policy network and its shuffled-label control: two jobs, so that the last minutes keep both workers busy
    Job("policy-binary", ("main",), ("08",)),
    Job("policy-binary-control", ("main",), ("08",)),
    # the same at the thesis's fixed λ (analysis.policy.thesis_binary_lambda), beside the balancing λ
    Job("policy-binary-thesis", ("main",), ("08",)),
    Job("policy-binary-thesis-control", ("main",), ("08",)),
    Job("policy-maxmin", ("maxmin",), ("08",), per_dataset=False),
    Job("policy-maxmin-control", ("maxmin",), ("08",), per_dataset=False),
    # notebook 09: K runs per randomness source and network (3K − 2 distinct runs each)
    Job("stochasticity", ("data",), ("09",), per_dataset=False, items=_stoch_items),
)
_JOB = {j.name: j for j in JOBS}


# ---- what each job runs (in the worker process) ----


def _job_data(spec: JobSpec, item: str) -> None:
    from ..data import get_dataset
    from ..experiment import load_splits

    load_splits(spec.preset, spec.preset.datasets[0], spec.seed)
    get_dataset(spec.preset.maxmin.base, "train")


def _job_main(spec: JobSpec, item: str) -> None:
    from ..experiment import main_experiment, training_record

    main_experiment(spec.preset, spec.seed, progress=True)
    if spec.preset.data.train_record_size >= 0:
        training_record(spec.preset, spec.seed)


def _job_maxmin(spec: JobSpec, item: str) -> None:
    from ..experiment import maxmin_experiment, maxmin_short_and_long

    maxmin_experiment(spec.preset, spec.seed)
    maxmin_short_and_long(spec.preset, spec.seed)


def _job_imta(spec: JobSpec, item: str) -> None:
    from ..experiment import imta_protocol

    imta_protocol(spec.preset, spec.seed, **_imta_options(spec))


def _job_imta_seeds(spec: JobSpec, item: str) -> None:
    from ..experiment import IMTA_PARENTS, imta_over_seeds, imta_protocol, imta_seed_splits

    k = _imta_seed_count(spec)
    if k < 2:
        return
    # notebook 07 runs the seeds from both parents of the E-epoch network (its imta_parent first, then the other)
    options = _imta_options(spec)
    parents = [options["parent"], *(p for p in IMTA_PARENTS if p != options["parent"])]
    if not item:  # the whole loop, as notebook 07 runs it
        for parent in parents:
            imta_over_seeds(spec.preset, spec.seed, seeds=k, **{**options, "parent": parent})
        return
    i = _item_index(item, "seed", k)
    for parent in parents:
        imta_protocol(
            spec.preset,
            spec.seed + i,
            splits=imta_seed_splits(spec.preset, spec.seed),
            **{**options, "parent": parent},
        )


def _job_stochasticity(spec: JobSpec, item: str) -> None:
    from ..experiment import STOCHASTICITY_MODELS, model_spec, stochastic_run, stochastic_runs, stochastic_subset_splits

    if not item:
        for name in STOCHASTICITY_MODELS:
            stochastic_runs(spec.preset, name, spec.seed)
        return
    name, i, d = item.rsplit("-", 2)
    sub = stochastic_subset_splits(spec.preset, spec.seed)
    stochastic_run(spec.preset, model_spec(sub["train"], name), sub, spec.seed, int(i[1:]), int(d[1:]))


def _item_index(item: str, prefix: str, count: int) -> int:
    if not (item.startswith(prefix) and item[len(prefix) :].isdigit() and int(item[len(prefix) :]) < count):
        raise ConfigError(f"no item {item!r}: this job's are {prefix}0 .. {prefix}{count - 1}")
    return int(item[len(prefix) :])


def _binary_policy_data(spec: JobSpec):
    from ..analysis import policy
    from ..experiment import main_experiment

    exp = main_experiment(spec.preset, spec.seed)
    return exp.records["val"], exp.splits["val"], "binary", policy.balancing_lambda(exp.records["val"])


def _thesis_binary_policy_data(spec: JobSpec):
    """Notebook 08's second binary policy: the same D_ee rows, labelled at the thesis's λ for the dataset."""
    from ..analysis import policy
    from ..experiment import main_experiment

    exp = main_experiment(spec.preset, spec.seed)
    return exp.records["val"], exp.splits["val"], "binary", policy.thesis_binary_lambda(spec.preset.datasets[0])


def _maxmin_policy_data(spec: JobSpec):
    from ..analysis.policy import DEFAULT_LAMBDA
    from ..experiment import maxmin_experiment

    mmx = maxmin_experiment(spec.preset, spec.seed)
    return mmx.records["val"], mmx.splits["val"], "score", float(spec.params.get("lam", DEFAULT_LAMBDA))


def _policy_job(data: Callable[[JobSpec], tuple], shuffle: bool) -> Callable[[JobSpec, str], None]:
    """Train the policy network of notebook 08's :func:`~overthink_lib.experiment.policy_experiment` on ``data``
    (``shuffle``: its shuffled-label control); the notebook evaluates both from the cached runs."""

    def run(spec: JobSpec, item: str) -> None:
        from ..experiment import policy_training_set, train_policy

        rec_val, val_set, method, lam = data(spec)
        _, d_tr, source = policy_training_set(rec_val, val_set, method, lam)
        train_policy(spec.preset, d_tr, spec.seed, source=source, shuffle=shuffle)

    return run


RUNNERS: dict[str, Callable[[JobSpec, str], None]] = {
    "data": _job_data,
    "main": _job_main,
    "maxmin": _job_maxmin,
    "imta-seeds": _job_imta_seeds,
    "imta": _job_imta,
    "policy-binary": _policy_job(_binary_policy_data, False),
    "policy-binary-control": _policy_job(_binary_policy_data, True),
    "policy-binary-thesis": _policy_job(_thesis_binary_policy_data, False),
    "policy-binary-thesis-control": _policy_job(_thesis_binary_policy_data, True),
    "policy-maxmin": _policy_job(_maxmin_policy_data, False),
    "policy-maxmin-control": _policy_job(_maxmin_policy_data, True),
    "stochasticity": _job_stochasticity,
}


def run_job(spec: JobSpec | str, dataset: str, name: str, item: str = "") -> None:
    """Run job ``name`` (one ``item`` of its loop, or all of it) for ``dataset`` in this process, on
    ``Preset.training.threads`` threads (the worker's entry point). ``spec``: a :class:`JobSpec` or a preset name."""
    import torch

    if name not in RUNNERS:
        raise ConfigError(f"unknown job {name!r}: choose one of {', '.join(RUNNERS)}")
    if item and _JOB[name].items is None:
        raise ConfigError(f"job {name!r} is not a loop of runs: it takes no --item (given {item!r})")
    if isinstance(spec, str):
        spec = JobSpec(get_preset(spec), {})
    spec = JobSpec(spec.preset.for_dataset(dataset), spec.params)
    if item:
        known = _JOB[name].items(spec.preset, spec.params)
        if item not in known:
            raise ConfigError(f"no item {item!r} of job {name!r}: its items are {', '.join(known) or 'none'}")
    if spec.preset.training.threads:
        torch.set_num_threads(spec.preset.training.threads)
    RUNNERS[name](spec, item)


def plan(
    preset: Preset,
    books: list[tuple[str, str | None]],
    params: dict[str, Any] | None = None,
    *,
    fan_out: bool = False,
    need_threads: bool = True,
) -> list[Task]:
    """The tasks that the given (notebook file name, dataset) runs use, in priority order (a notebook without a
    ``dataset`` parameter, None, reads the preset's first dataset; a dataset-free job runs once, with the first
    dataset it is needed for). ``fan_out``: one task per item of a loop job (a cluster), else one per loop.
    None when ``need_threads`` and the preset does not pin its training threads (on one machine, jobs would then
    train other networks than the notebooks), or when a parameter of :data:`UNMODELLED` is given."""
    params = params or {}
    if need_threads and not preset.training.threads:
        return []
    if unmodelled(params):
        return []
    jp = job_params(params)
    out: list[Task] = []
    for job in JOBS:
        needed = [ds or preset.datasets[0] for name, ds in books if name.startswith(job.notebooks)]
        for ds in dict.fromkeys(needed if job.per_dataset else needed[:1]):
            if job.items is None:
                out.append(Task(job.name, ds))
                continue
            items = job.items(preset.for_dataset(ds), jp)
            if items:
                out += [Task(job.name, ds, i) for i in items] if fan_out else [Task(job.name, ds)]
    return out


def dependencies(tasks: list[Task]) -> dict[Task, list[Task]]:
    """Each task's planned predecessors: the tasks of its ``after`` jobs for the same dataset (or the one run of a
    dataset-free job). A predecessor job that is not planned at all is an error, never skipped."""
    by_job: dict[str, list[Task]] = {}
    for t in tasks:
        by_job.setdefault(t.job, []).append(t)
    out = {}
    for t in tasks:
        deps = []
        for a in _JOB[t.job].after:
            if a not in by_job:
                raise ConfigError(f"job {t.label()} comes after job {a!r}, which is not planned")
            mine = [d for d in by_job[a] if d.dataset == t.dataset or not _JOB[a].per_dataset]
            if not mine:
                raise ConfigError(f"job {t.label()} comes after job {a!r}, which is not planned for {t.dataset}")
            deps += mine
        out[t] = deps
    return out


def notebook_needs(tasks: list[Task], notebook: str, dataset: str | None, first: str) -> set[Task]:
    """The tasks notebook ``notebook`` (file name) reads for ``dataset`` (None: the preset's first)."""
    ds = dataset or first
    return {
        t
        for t in tasks
        if notebook.startswith(_JOB[t.job].notebooks) and (t.dataset == ds or not _JOB[t.job].per_dataset)
    }
