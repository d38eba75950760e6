"""``reproduce --dry-run``: the planned jobs as a table (dependencies, resources, estimated hours), nothing run."""

from __future__ import annotations

from typing import Any

from ..config import Preset
from .estimate import critical_path, task_hours
from .graph import JobSpec, Task, dependencies


def describe_plan(
    preset: Preset, spec: JobSpec, tasks: list[Task], executor: str, slurm: dict[str, Any], spec_params: dict[str, Any]
) -> str:
    """The table; ``spec_params``: every parameter given (to say why nothing is planned)."""
    if not tasks:
        from .graph import unmodelled

        given = unmodelled(spec_params)
        why = (
            f"the parameters {', '.join(given)} are given"
            if given
            else "the local executor needs a preset that pins training.threads"
            if executor == "local" and not preset.training.threads
            else "none of the chosen notebooks trains anything"
        )
        return f"no jobs planned for preset {preset.name!r} with the {executor} executor ({why}): the notebooks train what they need themselves"
    deps = dependencies(tasks)
    first = preset.datasets[0]
    each = {t: task_hours(preset, t, spec.params) for t in tasks}
    limits = None
    if executor == "slurm":
        from .slurm import SlurmExecutor

        limits = SlurmExecutor(preset, **slurm, params=spec.params)
    gpus = slurm.get("gpus", 0) if executor == "slurm" else 0
    cpus = slurm.get("cpus", preset.training.threads or 1) if executor == "slurm" else (preset.training.threads or 1)
    lines = [
        f"planned jobs for preset {preset.name!r} ({executor} executor; parameters {spec.params or 'none'}):",
        f"{'job':<44} {'after':<40} {'resources':<16} est. H100 h",
    ]
    for t in tasks:
        after = ", ".join(d.stem(first) for d in deps[t]) or "-"
        if len(after) > 38:
            after = after[:35] + "..."
        res = f"{cpus} cpu" + (f", {gpus} gpu" if gpus else "")
        if limits is not None:
            res += f", {limits.time_for(t) // 60}:{limits.time_for(t) % 60:02d} h"
        lines.append(f"{t.stem(first):<44} {after:<40} {res:<16} {each[t]:8.2f}")
    total = sum(each.values())
    length, chain = critical_path(preset, tasks, each)
    lines.append(
        f"{len(tasks)} job(s); ≈{total:.1f} H100-hours in all (FLOP-ratio estimate from one measured epoch, "
        f"overthink_lib/jobs/estimate.py); the longest chain ≈{length:.1f} h: {' → '.join(t.stem(first) for t in chain)}"
    )
    return "\n".join(lines)
