"""The SLURM executor: every task its own SLURM job, submitted through submitit, ordered by SLURM itself.

Each task is submitted at once with ``--dependency=afterok:<its predecessors' job ids>`` and
``--kill-on-invalid-dep=yes`` (a job whose predecessor failed is cancelled, never left pending), and runs the same
worker command as a local task (:func:`~overthink_lib.jobs.worker.run_logged`), its log in ``<jobs>/<stem>.log``
beside submitit's own files (``<jobs>/slurm/``). The notebooks run on the submitting machine, each as soon as the jobs
it reads are done: they are minutes of analysis that need no GPU, and there the person who started the run sees them.

States come from ``squeue`` while a job is queued or running; once it has left the queue, from the status file its
task leaves (done/failed, exit code) and, where accounting is on, ``sacct``; a job that left the queue without
finishing was cancelled, timed out or lost its node. Killed mid-run, a task resumes from its last checkpoint when
``reproduce`` runs again (training checkpoints every epoch and continues an unfinished run of the same hash), and with
``--requeue`` SLURM requeues a job whose node failed. Jobs still queued or running from an earlier ``reproduce`` of the
same spec (``<jobs>/slurm-jobs.json``) are followed, not submitted twice.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..config import ConfigError, Preset
from ..io import atomic_write_bytes
from .graph import Task
from .worker import job_command, read_status, status_path, worker_overrides

#: squeue's states that mean queued or running; anything else (or absence) means the job has left the queue.
_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"}
#: States after which SLURM requeues a job submitted with ``--requeue``: a step on the way, not the end, then.
_REQUEUED = {"PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "REQUEUED"}


def slurm_available() -> str:
    """'' when ``sbatch`` and ``squeue`` are on the PATH and the controller answers, else why not (one line)."""
    for tool in ("sbatch", "squeue", "scancel"):
        if shutil.which(tool) is None:
            return f"no {tool} on the PATH (install SLURM's client tools, or run on the cluster's login node)"
    try:
        r = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"squeue does not answer: {err}"
    if r.returncode != 0:
        return f"squeue failed: {(r.stderr or r.stdout).strip().splitlines()[-1] if (r.stderr or r.stdout).strip() else r.returncode}"
    return ""


def parse_time(text: str) -> int:
    """A time limit in sbatch's forms → minutes (at least 1): ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``; bad input is one ConfigError line."""
    try:
        days, dash, rest = text.strip().partition("-")
        if not dash:
            days, rest = "0", days
        parts = [int(p) for p in rest.split(":")]
        if any(p < 0 for p in parts) or int(days) < 0:
            raise ValueError
        if dash:  # D-H, D-H:M, D-H:M:S
            if len(parts) > 3:
                raise ValueError
            h, m, sec = [*parts, 0, 0][:3]
        elif len(parts) == 1:  # M
            h, m, sec = 0, parts[0], 0
        elif len(parts) == 2:  # M:S
            h, m, sec = 0, parts[0], parts[1]
        elif len(parts) == 3:  # H:M:S
            h, m, sec = parts
        else:
            raise ValueError
        minutes = int(days) * 24 * 60 + h * 60 + m + (1 if sec else 0)
    except ValueError:
        raise ConfigError(
            f"--time {text!r}: give it as sbatch does (minutes, H:MM:SS, D-HH or D-HH:MM:SS, e.g. 12:00:00)"
        ) from None
    if minutes <= 0:
        raise ConfigError(f"--time {text!r}: a job needs at least a minute")
    return minutes


def parse_slurm_args(pairs: list[str]) -> dict[str, str]:
    """``k=v`` strings → sbatch options (``account=abc`` → ``--account=abc``); bad input is one ConfigError line."""
    out = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        key = key.strip().lstrip("-")
        if not eq or not key:
            raise ConfigError(f"--slurm-args {p!r}: give key=value (e.g. account=myproject, qos=normal)")
        out[key.replace("-", "_")] = value
    return out


def meant_for_gpu(preset: Preset) -> bool:
    """``paper`` is: it leaves threads to torch and its device is not ``cpu``. ``smoke`` and ``cpu`` pin CPU threads
    (part of their run hashes): a CPU is what they mean."""
    return preset.training.device != "cpu" and not preset.training.threads


def resources(preset: Preset, gpus_per_job: int | None, cpus_per_job: int | None) -> dict[str, int]:
    """A job's resources: CPUs, the preset's training threads (or ``cpus_per_job``; 4 when the preset leaves threads to
    torch), and a GPU when the preset is meant for one (:func:`meant_for_gpu`), unless ``gpus_per_job`` says otherwise."""
    for flag, value, least in (("--gpus-per-job", gpus_per_job, 0), ("--cpus-per-job", cpus_per_job, 1)):
        if value is not None and value < least:
            raise ConfigError(f"{flag} {value}: give an integer >= {least}")
    cpus = cpus_per_job or preset.training.threads or 4
    gpus = gpus_per_job if gpus_per_job is not None else int(meant_for_gpu(preset))
    if preset.training.threads and cpus < preset.training.threads:
        raise ConfigError(
            f"--cpus-per-job {cpus}: the preset trains on {preset.training.threads} threads (part of its run hashes)"
        )
    return {"cpus": cpus, "gpus": gpus}


class SlurmExecutor:
    """Submit every task as a SLURM job through submitit (``partition``, ``time`` in minutes, ``gpus``/``cpus`` per
    job, ``extra``: further sbatch options, ``requeue``: let SLURM requeue a job whose node fails; ``params``: the job
    parameters, for the time limits estimated from them)."""

    name = "slurm"
    #: seconds between two looks at the queue (one squeue call each): gentle with the controller of a shared cluster
    poll_s = 15.0
    #: consecutive failed squeue calls tolerated before the run stops
    squeue_failures = 20

    def __init__(
        self,
        preset: Preset,
        *,
        partition: str | None = None,
        time_min: int | None = None,
        gpus: int = 0,
        cpus: int = 1,
        extra: dict[str, str] | None = None,
        requeue: bool = False,
        params: dict | None = None,
    ):
        self.preset, self.partition, self.time_min, self.gpus, self.cpus = preset, partition, time_min, gpus, cpus
        self.extra, self.requeue = dict(extra or {}), requeue
        self.ids: dict[Task, str] = {}
        self.state: dict[Task, tuple[str, str]] = {}
        self.params = dict(params or {})  # the job parameters (for the estimates of 07's seeds)
        self._failed_calls = 0
        self._unsure: dict[Task, int] = {}  # polls a task has been out of the queue without a final status

    def job_id(self, task: Task) -> str:
        return self.ids.get(task, "")

    def time_for(self, task: Task) -> int:
        """A task's time limit in minutes: the one given, else twice its estimated hours on a GPU (at least an hour),
        else (a CPU preset) the preset's cell timeout."""
        import math

        from .estimate import task_hours

        if self.time_min:
            return self.time_min
        if meant_for_gpu(self.preset):
            return max(60, math.ceil(2 * task_hours(self.preset, task, self.params) * 60))
        return max(1, math.ceil(self.preset.cell_timeout / 60))

    def _executor(self, folder: Path, name: str, dependency: str, time_min: int):
        import submitit

        ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=0)
        extra: dict[str, Any] = {"kill_on_invalid_dep": "yes", **self.extra}
        if self.requeue:
            extra["requeue"] = True
        params: dict[str, Any] = dict(
            job_name=name,
            time=time_min,
            cpus_per_task=self.cpus,
            ntasks_per_node=1,
            additional_parameters=extra,
            stderr_to_stdout=True,
        )
        if self.partition:
            params["partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if dependency:
            params["dependency"] = dependency
        ex.update_parameters(**params)
        return ex

    def start(self, tasks: list[Task], deps: dict[Task, list[Task]], logs: dict[Task, Path], spec_file: Path) -> None:
        from .worker import run_logged

        self.tasks, self.logs = list(tasks), logs
        self.state = {t: ("pending", "") for t in tasks}
        jobs_dir = Path(spec_file).parent
        book = jobs_dir / "slurm-jobs.json"
        try:
            earlier = json.loads(book.read_text())
            earlier_ids = dict(earlier.get("ids", {})) if earlier.get("spec") == spec_file.name else {}
        except (OSError, ValueError, AttributeError):
            earlier_ids = {}
        live = self._squeue(list(earlier_ids.values())) if earlier_ids else {}
        if live is None:
            raise ConfigError("squeue does not answer: cannot tell which jobs of the earlier run still run; try again")
        for t in tasks:  # submitted in the graph's order: every predecessor has its id first
            stem = logs[t].stem
            old = earlier_ids.get(stem)
            if old and live.get(old) in _PENDING | _RUNNING:  # still queued or running from an earlier reproduce
                self.ids[t] = old
                continue
            missing = [d for d in deps[t] if d not in self.ids]
            if missing:
                raise ConfigError(f"job {t.label()} comes after {missing[0].label()}, which has no SLURM job")
            dependency = ":".join(self.ids[d] for d in deps[t])
            status_path(logs[t]).unlink(missing_ok=True)
            logs[t].write_text("")
            ex = self._executor(
                jobs_dir / "slurm",
                f"overthink-{self.preset.name}-{stem}",
                f"afterok:{dependency}" if dependency else "",
                self.time_for(t),
            )
            cmd = job_command(spec_file, t.dataset, t.job, t.item)
            try:
                job = ex.submit(run_logged, cmd, str(logs[t]), worker_overrides(self.preset.training.threads))
            except Exception as err:  # submitit raises on sbatch's errors (bad partition, account, ...)
                lines = str(err).strip().splitlines()
                raise ConfigError(
                    f"sbatch refused job {t.label()}: {lines[-1] if lines else type(err).__name__}"
                ) from None
            self.ids[t] = str(job.job_id)
            atomic_write_bytes(
                book,
                json.dumps({"spec": spec_file.name, "ids": {logs[x].stem: i for x, i in self.ids.items()}}).encode(),
            )

    @staticmethod
    def _squeue(ids: list[str]) -> dict[str, str] | None:
        """job id → squeue state for the given jobs still in the queue; None when squeue fails or does not answer."""
        if not ids:
            return {}
        try:
            r = subprocess.run(
                ["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T"], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode != 0 and "Invalid job id" not in r.stderr:  # squeue: every id has left the queue
            return None
        out = {}
        for line in r.stdout.splitlines():
            jid, _, st = line.strip().partition("|")
            if jid:
                out[jid] = st
        return out

    @staticmethod
    def _sacct(jid: str) -> str:
        """The job's state from accounting ('' when accounting is off, fails, or knows nothing yet)."""
        if shutil.which("sacct") is None:
            return ""
        try:
            r = subprocess.run(
                ["sacct", "-n", "-X", "-P", "-j", jid, "-o", "State"], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return r.stdout.strip().splitlines()[0].split()[0] if r.returncode == 0 and r.stdout.strip() else ""

    def poll(self) -> dict[Task, tuple[str, str]]:
        open_ = [t for t in self.tasks if self.state[t][0] not in ("done", "failed")]
        queue = self._squeue([self.ids[t] for t in open_])
        if queue is None:  # the controller is busy or down for a moment: keep the states, ask again next time
            self._failed_calls += 1
            if self._failed_calls >= self.squeue_failures:
                raise ConfigError(f"squeue failed {self._failed_calls} times in a row: is the SLURM controller up?")
            return dict(self.state)
        self._failed_calls = 0
        held = _REQUEUED if self.requeue else set()
        for t in open_:
            st = queue.get(self.ids[t])
            if st in _PENDING or st in held:
                self.state[t] = ("pending", "")
                continue
            if st in _RUNNING:
                self.state[t] = ("running", "")
                continue
            status = read_status(self.logs[t])  # left the queue (or a final state squeue shows for a while)
            if status.get("state") == "done":
                self.state[t] = ("done", "")
                continue
            final = st or self._sacct(self.ids[t])
            if final in _PENDING | _RUNNING | held:  # accounting lags the queue by a second or so
                continue
            if status.get("state") == "failed":
                self.state[t] = (
                    "failed",
                    f"exit code {status.get('rc')}" + (f", SLURM state {final}" if final else ""),
                )
                continue
            if final == "COMPLETED" or not final:
                # finished without its status file yet (a shared filesystem shows it late): wait a few polls
                self._unsure[t] = self._unsure.get(t, 0) + 1
                if self._unsure[t] < 5:
                    continue
            if final == "COMPLETED":
                why = (
                    f"SLURM says COMPLETED but the job's status file {status_path(self.logs[t])} never appeared: is "
                    "runs/ on a filesystem the compute nodes share?"
                )
                self.state[t] = ("failed", why)
                continue
            self.state[t] = (
                "failed",
                f"SLURM state {final}"
                if final
                else f"it left the queue without finishing (cancelled, timed out or its node failed; sacct -j {self.ids[t]})",
            )
        return dict(self.state)

    def cancel(self) -> None:
        ids = [self.ids[t] for t in self.ids if self.state.get(t, ("",))[0] not in ("done", "failed")]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
