"""The protocols: one module each (``main``, ``imta``, ``maxmin``, ``policy``, ``stochasticity``,
``speed_equivalence``), holding the functions its notebook calls and, next to them, the jobs it needs ahead of the
notebook with their cost (:class:`~overthink_lib.experiments.declare.Job`). ``runs`` is what they all build on (data
splits, the train-or-reuse cache, records of a run).

:data:`JOBS` is every protocol's jobs in priority order: a free worker takes the first task whose ``after`` jobs are
done (longest first). ``jobs/`` plans and executes only these. :data:`PARAMS` is every notebook parameter, declared
once (:mod:`.params`; a protocol's own next to it).
"""

from __future__ import annotations

from . import imta, main, maxmin, policy, stochasticity
from .declare import Job
from .params import ALIASES, COMMON, Param

#: The protocols whose jobs and parameters the suite knows, in the jobs' priority order. A new protocol: its module
#: here (with ``JOBS`` and ``PARAMS`` where it has them).
PROTOCOLS = (main, maxmin, imta, policy, stochasticity)
JOBS: tuple[Job, ...] = tuple(job for m in PROTOCOLS for job in getattr(m, "JOBS", ()))
#: Every notebook parameter of the suite by name (:class:`~overthink_lib.experiments.params.Param`); a name not here
#: is refused. :data:`ALIASES`: names a notebook passes to ``start`` for a declared parameter of another name.
PARAMS: dict[str, Param] = {p.name: p for p in (*COMMON, *(p for m in PROTOCOLS for p in getattr(m, "PARAMS", ())))}

__all__ = ["ALIASES", "JOBS", "PARAMS", "PROTOCOLS", "Job", "Param"]
