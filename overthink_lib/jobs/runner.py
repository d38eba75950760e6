"""Run planned tasks through an executor and follow them: states, progress lines, failures.

Whatever the executor, :func:`run_tasks` prints each task's state changes (with its SLURM job id where there is one),
each new epoch line of a running task's log as it appears, and for every running task at least one line a minute
(its latest progress line, or how long it has run). A failed task ends the run with :class:`JobFailed`: one line naming
the task, then the tail of its log; the CLI exits 1 on it (not 2, the bad-input status).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Protocol

from ..config import Preset
from .graph import JobSpec, Task, dependencies, notebook_needs

#: At least one line per running task this often (seconds).
HEARTBEAT_S = 50.0
#: States an executor reports per task.
STATES = ("waiting", "pending", "running", "done", "failed")


class JobFailed(RuntimeError):
    """A task failed (its process exited non-zero, was cancelled, timed out or lost its node)."""


class Executor(Protocol):
    """Where tasks run. :meth:`start` receives every task with its predecessors and log; :meth:`poll` returns each
    task's state (one of :data:`STATES`) and, for a failed one, why; :meth:`cancel` ends whatever still runs."""

    name: str

    def start(self, tasks: list[Task], deps: dict[Task, list[Task]], logs: dict[Task, Path], spec_file: Path) -> None:
        pass

    def poll(self) -> dict[Task, tuple[str, str]]:
        pass

    def job_id(self, task: Task) -> str:
        pass

    def cancel(self) -> None:
        pass


def say(text: str) -> None:
    """One line in one write, with the time (the notebook runner prints from another thread)."""
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stdout.flush()


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "".join(Path(log).read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return "(no log)\n"


class _Follower:
    """New progress lines of a log (epoch lines, 'resuming ...', 'reusing ...'), read incrementally."""

    KEEP = ("epoch ", "resuming", "reusing", "continuing", "no finished run", "IMTA protocol", "error", "Error")

    def __init__(self, log: Path):
        self.log, self.pos, self.last, self.last_t = log, 0, "", 0.0

    def new_lines(self) -> list[str]:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        self.pos += cut
        out = []
        for raw in data[:cut].decode(errors="replace").splitlines():
            line = raw.strip()
            if line and line.startswith(self.KEEP):
                out.append(line if len(line) < 200 else line[:197] + "...")
        if out:
            self.last = out[-1]
        return out


def run_tasks(
    preset: Preset,
    spec: JobSpec,
    tasks: list[Task],
    executor: Executor,
    *,
    log_dir: Path | None = None,
    progress: bool = True,
    poll: float | None = None,
    done: set | None = None,
    stop: threading.Event | None = None,
    heartbeat: float = HEARTBEAT_S,
) -> list[dict]:
    """Run ``tasks`` (each after its predecessors, :func:`~overthink_lib.jobs.graph.dependencies`) through
    ``executor``, looking every ``poll`` seconds (default the executor's ``poll_s``); logs in ``log_dir`` (default
    ``<run dir>/jobs/``). ``done`` receives each finished task as it ends;
    ``stop`` set from another thread cancels the rest and returns. Raises :class:`JobFailed` on the first failed task
    (after cancelling the others). Returns one row per task: job, dataset, item, seconds, log, job id."""
    deps = dependencies(tasks)
    poll = getattr(executor, "poll_s", 1.0) if poll is None else poll
    log_dir = Path(log_dir or preset.run_dir / "jobs")
    log_dir.mkdir(parents=True, exist_ok=True)
    spec_file = spec.write(log_dir)
    first = preset.datasets[0]
    logs = {t: log_dir / f"{t.stem(first)}.log" for t in tasks}
    done = set() if done is None else done
    follow = {t: _Follower(logs[t]) for t in tasks}
    state: dict[Task, str] = {}
    started: dict[Task, float] = {}
    rows = []
    t_all = time.perf_counter()
    if progress:
        say(f"{len(tasks)} job(s) through the {executor.name} executor; logs → {log_dir}")
    # what the loop keeps between polls (the helpers below read and update it)
    watch = SimpleNamespace(
        executor=executor,
        logs=logs,
        done=done,
        follow=follow,
        state=state,
        started=started,
        rows=rows,
        progress=progress,
    )
    try:
        executor.start(tasks, deps, logs, spec_file)
        while len(done) < len(tasks) and not (stop is not None and stop.is_set()):
            now = time.perf_counter()
            for t, (st, why) in executor.poll().items():
                if t not in done:
                    _on_state(watch, t, st, why, now)
            _follow_running(watch, now, heartbeat)
            time.sleep(poll)
    except BaseException:
        executor.cancel()
        raise
    if stop is not None and stop.is_set():
        executor.cancel()
    elif progress:
        say(f"jobs done in {time.perf_counter() - t_all:.1f} s")
    return rows


def _on_state(watch: SimpleNamespace, t: Task, st: str, why: str, now: float) -> None:
    """Task ``t`` is in state ``st``: say a change, raise :class:`JobFailed` on a failure (with its log's tail), and
    on completion add it to ``watch.done`` and its row to ``watch.rows``."""
    w = watch
    executor, state, started, follow, logs, progress = w.executor, w.state, w.started, w.follow, w.logs, w.progress
    if st != state.get(t):
        state[t] = st
        jid = executor.job_id(t)
        if st == "running":
            started.setdefault(t, now)
            follow[t].last_t = now
        if progress and st not in ("waiting", "done", "failed"):
            say(f"{'▶ ' if st == 'running' else '  '}job {t.label()}{f' [{jid}]' if jid else ''}: {st}")
    if st == "failed":
        follow[t].new_lines()
        raise JobFailed(
            f"job {t.label()}{f' (SLURM job {executor.job_id(t)})' if executor.job_id(t) else ''} "
            f"failed: {why}; its log {logs[t]} ends:\n{log_tail(logs[t])}"
        )
    if st == "done":
        watch.done.add(t)
        dt = now - started.get(t, now)
        watch.rows.append(
            {
                "job": t.job,
                "dataset": t.dataset,
                "item": t.item,
                "seconds": round(dt, 1),
                "log": str(logs[t]),
                "job_id": executor.job_id(t),
            }
        )
        if progress:
            say(f"  job {t.label()}: done in {dt:.0f} s")


def _follow_running(watch: SimpleNamespace, now: float, heartbeat: float) -> None:
    """Each running task's new log lines (the last three), or a line every ``heartbeat`` seconds when it is quiet."""
    progress, started = watch.progress, watch.started
    for t, st in watch.state.items():
        if st != "running" or t in watch.done:
            continue
        f = watch.follow[t]
        lines = f.new_lines()
        if progress and lines:
            for line in lines[-3:]:
                say(f"  {t.label()}: {line}")
            f.last_t = now
        elif progress and now - f.last_t >= heartbeat:
            what = f"last: {f.last}" if f.last else "no progress line yet"
            say(f"  {t.label()}: running for {now - started.get(t, now):.0f} s ({what})")
            f.last_t = now


class JobRunner:
    """:func:`run_tasks` in a background thread, so notebooks can run as soon as the tasks they read are done (the
    notebook runner waits on :meth:`wait_for` before each notebook)."""

    def __init__(self, preset: Preset, spec: JobSpec, tasks: list[Task], executor: Executor, **kwargs):
        self.preset, self.spec, self.tasks, self.executor = preset, spec, tasks, executor
        self.done: set[Task] = set()
        self.rows: list[dict] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)

    def _run(self, **kwargs) -> None:
        try:
            self.rows = run_tasks(
                self.preset, self.spec, self.tasks, self.executor, done=self.done, stop=self._stop, **kwargs
            )
        except BaseException as err:
            self.error = err

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def busy(self) -> bool:
        """Tasks are still running."""
        return self._thread.is_alive() and not set(self.tasks) <= self.done

    def needs(self, notebook: str, dataset: str | None) -> set[Task]:
        """The tasks notebook ``notebook`` (file name) reads for ``dataset`` (None: the preset's first)."""
        return notebook_needs(self.tasks, notebook, dataset, self.preset.datasets[0])

    def wait_for(self, notebook: str, dataset: str | None, poll: float = 0.2) -> float:
        """Block until every task ``notebook`` reads is done; raise a task's failure. Returns the seconds waited."""
        need, t0 = self.needs(notebook, dataset), time.perf_counter()
        while not need <= self.done and self._thread.is_alive():
            time.sleep(poll)
        if self.error is not None:
            raise self.error
        return time.perf_counter() - t0

    def stop(self) -> None:
        """Cancel the running tasks (after a notebook failed)."""
        self._stop.set()
        self._thread.join()

    def finish(self) -> list[dict]:
        """Wait for every task; raise a task's failure; the tasks' rows."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.rows


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
