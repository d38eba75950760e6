"""A task's process, whoever starts it: the command line, the environment, the log, and dying with its parent.

Local workers and SLURM jobs run the same command (``python -m overthink_lib job --spec FILE --dataset D NAME``)
with the same environment, its output going to ``<jobs>/<stem>.log``; a SLURM job runs it from
:func:`run_logged`, which also leaves ``<stem>.status`` (JSON: state, exit code) beside the log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..config import ROOT
from ..io import atomic_write_bytes

#: Set in a local worker's environment: the runner's pid, so that the worker can end itself when the runner dies.
PARENT_ENV = "OVERTHINK_JOB_PARENT"


def job_command(spec_file: Path, dataset: str, name: str, item: str = "") -> list[str]:
    """The worker's command line for one task."""
    cmd = [sys.executable, "-m", "overthink_lib", "job", "--spec", str(spec_file), "--dataset", dataset]
    return cmd + (["--item", item] if item else []) + [name]


def worker_overrides(threads: int) -> dict[str, str]:
    """What a worker's environment adds to the one it starts in: no progress bars (the log gets one line per epoch and
    a status line at least every minute instead), unbuffered output, and its thread count."""
    from ..train import HEADLESS_ENV

    env = {"TQDM_DISABLE": "1", HEADLESS_ENV: "1", "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def die_with_parent() -> None:
    """In a local worker, first thing: ask Linux to end this process when the runner that started it dies (killed,
    or a CI timeout), so no orphaned training goes on writing checkpoints. Set here, in the worker itself, rather than
    with ``preexec_fn`` from the runner's thread (unsafe in a threaded parent). A no-op outside a local worker and
    where ``prctl`` does not exist."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the runner died before the signal was armed
        os._exit(1)


def status_path(log: Path) -> Path:
    return Path(log).with_suffix(".status")


def write_status(log: Path, state: str, **extra) -> None:
    atomic_write_bytes(status_path(log), json.dumps({"state": state, **extra}).encode())


def read_status(log: Path) -> dict:
    try:
        return json.loads(status_path(log).read_text())
    except (OSError, ValueError):
        return {}


class TaskFailed(RuntimeError):
    """Raised inside a SLURM job when its task's process fails (the job then ends FAILED)."""


def run_logged(command: list[str], log: str, overrides: dict[str, str]) -> int:
    """Run ``command`` in this process's environment (the compute node's: its GPUs, ``SLURM_*``, ``TMPDIR``) plus
    ``overrides``, its output to ``log``, from the repository root; leave ``<log>.status``. What a SLURM job executes
    (submitit pickles this call). A failure raises :class:`TaskFailed`."""
    log_path = Path(log)
    env = {**os.environ, **overrides}
    attempt = os.environ.get("SLURM_RESTART_COUNT", "0")
    write_status(
        log_path, "running", host=os.uname().nodename, slurm_job=os.environ.get("SLURM_JOB_ID", ""), attempt=attempt
    )
    with open(log_path, "a") as fh:
        fh.write(f"[{os.environ.get('SLURM_JOB_ID', '')}] {' '.join(command)}\n")
        fh.flush()
        rc = subprocess.call(command, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    write_status(log_path, "done" if rc == 0 else "failed", rc=rc, attempt=attempt)
    if rc != 0:
        raise TaskFailed(f"exit code {rc}; see {log_path}")
    return rc
