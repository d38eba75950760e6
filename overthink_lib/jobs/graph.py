"""The graph of the jobs the protocols declare (``overthink_lib/experiments/``): tasks, their fan-out and order.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, Preset, get_preset
from ..experiments import JOBS as PROTOCOL_JOBS
from ..experiments import PARAMS
from ..experiments.declare import Job
from ..io import atomic_write_bytes

#: Notebook parameters the jobs read (``Param.job``; their notebooks' defaults when absent): the seed, λ of the
#: Max-Min policy, 07's IMTA options and its number of seeds. Every other parameter but those of :data:`UNMODELLED`
#: changes no training.
JOB_PARAMS = tuple(name for name, p in PARAMS.items() if p.job)
#: Parameters that change what the notebooks train or read in ways the jobs do not model (``Param.unmodelled``):
#: with one of them given, the notebooks train what they need themselves (02's ``epochs``; a given ``record``
#: replaces the preset's model).
UNMODELLED = tuple(name for name, p in PARAMS.items() if p.unmodelled)


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


#: Every protocol's jobs, in priority order (declared in ``overthink_lib/experiments/``, next to what they run).
JOBS: tuple[Job, ...] = PROTOCOL_JOBS
_JOB = {j.name: j for j in JOBS}


def run_job(spec: JobSpec | str, dataset: str, name: str, item: str = "") -> None:
    """Run job ``name`` (one ``item`` of its loop, or all of it) for ``dataset`` in this process, on
    ``Preset.training.threads`` threads (the worker's entry point). ``spec``: a :class:`JobSpec` or a preset name."""
    import torch

    if name not in _JOB:
        raise ConfigError(f"unknown job {name!r}: choose one of {', '.join(_JOB)}")
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
    _JOB[name].run(spec.preset, spec.params, item)


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
