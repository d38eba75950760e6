"""The local executor: tasks as worker processes on this machine, at most ``workers`` at once, each when its
predecessors are done, each within a time limit.

Small convolutions do not scale perfectly over threads: on a 2-core Zen 4 machine two one-thread trainings at once did
1.14× the work of one two-thread training (``benchmarks/threads.py``, median of 3 rounds), ≈1.2× in the real ``cpu``
suite; running the notebooks beside the jobs, each as soon as what it reads exists, saves the rest. So workers have
``Preset.training.threads`` threads each, as many as the cores allow (:func:`workers_for`).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..config import ROOT, Preset
from .graph import Task
from .runner import cores
from .worker import PARENT_ENV, job_command, worker_overrides


def workers_for(preset: Preset) -> int:
    """Worker processes: the cores this process may use divided by the preset's training threads (at least 1)."""
    return max(1, cores() // max(1, preset.training.threads))


class LocalExecutor:
    """Worker processes (``python -m overthink_lib job``). ``timeout``: seconds a task may run (past it, it is killed
    and fails); ``command(spec_file, dataset, name, item)`` makes a worker's command line; ``env``: the workers'
    environment (default a copy of this process's, taken now)."""

    name = "local"
    poll_s = 1.0

    def __init__(
        self,
        preset: Preset,
        *,
        workers: int | None = None,
        timeout: float | None = None,
        command: Callable[..., list[str]] = job_command,
        env: dict[str, str] | None = None,
    ):
        self.preset = preset
        self.workers = workers or workers_for(preset)
        self.timeout = timeout if timeout is not None else preset.cell_timeout
        self.command = command
        self.env = dict(os.environ) if env is None else dict(env)
        self.running: dict[Task, tuple[subprocess.Popen, float, object]] = {}
        self.state: dict[Task, tuple[str, str]] = {}

    def start(self, tasks: list[Task], deps: dict[Task, list[Task]], logs: dict[Task, Path], spec_file: Path) -> None:
        self.tasks, self.deps, self.logs, self.spec_file = list(tasks), deps, logs, spec_file
        self.state = {t: ("waiting", "") for t in tasks}

    def job_id(self, task: Task) -> str:
        return ""

    def poll(self) -> dict[Task, tuple[str, str]]:
        now = time.perf_counter()
        for t, (proc, t0, fh) in list(self.running.items()):
            rc = proc.poll()
            if rc is None and now - t0 > self.timeout:
                _kill(proc)
                rc, why = -9, f"ran past its time limit of {self.timeout:.0f} s and was killed"
            elif rc is None:
                continue
            else:
                why = f"exit code {rc}"
            fh.close()
            del self.running[t]
            self.state[t] = ("done", "") if rc == 0 else ("failed", why)
        for t in self.tasks:
            if len(self.running) >= self.workers:
                break
            if self.state[t][0] != "waiting" or any(self.state[d][0] != "done" for d in self.deps[t]):
                continue
            fh = open(self.logs[t], "w")
            env = {**self.env, **worker_overrides(self.preset.training.threads), PARENT_ENV: str(os.getpid())}
            proc = subprocess.Popen(  # its own process group: a time limit or a cancel ends whatever it started
                self.command(self.spec_file, t.dataset, t.job, t.item),
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(ROOT),
                start_new_session=True,
            )
            self.running[t] = (proc, now, fh)
            self.state[t] = ("running", "")
        return dict(self.state)

    def cancel(self) -> None:
        for proc, _, fh in self.running.values():
            _kill(proc)
            fh.close()
        self.running.clear()


def _kill(proc: subprocess.Popen) -> None:
    """End a worker and everything it started (its process group)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
