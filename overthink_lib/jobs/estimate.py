"""GPU-hours per task, estimated before a run that takes days (what ``reproduce --dry-run`` prints, and where SLURM
time limits come from). Each job declares its own cost next to what it runs (``overthink_lib/experiments/``; the
model, its anchor and the datasets' sizes in :mod:`overthink_lib.experiments.declare`); here the tasks are summed and
chained. ``benchmarks/gpu_hours.py`` prints the same model as a table per job.
"""

from __future__ import annotations

from ..config import Preset
from .graph import _JOB, Task, dependencies


def task_hours(preset: Preset, task: Task, params: dict | None = None) -> float:
    """Estimated H100 hours of one task (0 for the data job); ``params``: the job parameters (07's ``n_seeds``).
    A dataset or model the cost model does not know is refused (ConfigError), never given another's hours."""
    return _JOB[task.job].hours(preset.for_dataset(task.dataset), params or {}, task.item)


def critical_path(preset: Preset, tasks: list[Task], each: dict[Task, float]) -> tuple[float, list[Task]]:
    """The longest chain of dependent tasks (hours) and its tasks: a cluster run's wall time, given free GPUs."""
    deps = dependencies(tasks)
    best: dict[Task, tuple[float, list[Task]]] = {}
    for t in tasks:  # tasks come in the graph's order: predecessors first
        before = max((best[d] for d in deps[t]), key=lambda x: x[0], default=(0.0, []))
        best[t] = (before[0] + each[t], [*before[1], t])
    return max(best.values(), key=lambda x: x[0], default=(0.0, []))
