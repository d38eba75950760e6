"""Train the suite's networks ahead of its notebooks as *jobs*, on this machine or on a SLURM cluster.

Training is most of the suite's time. ``reproduce`` first runs the notebooks' expensive, independent calls as jobs
(declared by each protocol in ``overthink_lib/experiments/``; :mod:`.graph` plans them), through an executor: :class:`LocalExecutor` (worker processes
on this machine, the default) or :class:`SlurmExecutor` (every task its own SLURM job through submitit, ordered by
``afterok`` dependencies). :func:`run_tasks` follows them whatever the executor (states, progress lines, failures);
each notebook waits only for the tasks it reads (:class:`JobRunner`) and then finds them cached under the same run
hashes. A task's process is the same everywhere (:mod:`.worker`): ``python -m overthink_lib job --spec FILE ...``,
the resolved preset and parameters travelling as JSON (:class:`JobSpec`).
"""

from .graph import JOB_PARAMS, JOBS, UNMODELLED, Job, JobSpec, Task, dependencies, job_params, plan, run_job
from .local import LocalExecutor, workers_for
from .runner import JobFailed, JobRunner, run_tasks
from .slurm import SlurmExecutor, slurm_available

__all__ = [
    "JOBS",
    "JOB_PARAMS",
    "UNMODELLED",
    "Job",
    "JobFailed",
    "JobRunner",
    "JobSpec",
    "LocalExecutor",
    "SlurmExecutor",
    "Task",
    "dependencies",
    "job_params",
    "plan",
    "run_job",
    "run_tasks",
    "slurm_available",
    "workers_for",
]
