"""Train the suite's networks ahead of its notebooks, several at a time, so the notebooks only analyse.

Training is most of the suite's time, and small convolutions do not scale perfectly over threads: on a 2-core Zen 4
machine two one-thread trainings at once did 1.14× the work of one two-thread training (``benchmarks/threads.py``,
median of 3 rounds; 1.41× in a one-off measurement at a busier moment of this shared machine), and in the real ``cpu``
suite ≈1.2×. Running the notebooks beside the jobs, each as soon as what it reads exists, saves the rest. So ``reproduce``
first runs the expensive, independent work of the notebooks as *jobs*, in worker processes of
``Preset.training.threads`` threads each (as many as the cores allow), then runs the notebooks, which find every network
and record cached under the same run hashes and reuse them ("reusing the finished run ...").

A job calls exactly the library functions its notebooks call, with the notebooks' default parameters. Because a
preset with jobs pins its training threads (``TrainConfig.threads``, part of the run hash), a network is the same
whether a job or a notebook trained it. Records do not depend on threads (checked: identical logits on 1 and 2).

Jobs run only for a plain suite: with ``--param`` overrides (another seed, λ, ...) the notebooks train what they need
themselves, as before; with ``--only`` only the jobs the chosen notebooks use run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import ROOT, ConfigError, Preset, get_preset


@dataclass(frozen=True)
class Job:
    """One unit of prefetched work.

    Attributes:
        name: the job's name (``python -m overthink_lib job NAME``).
        after: jobs that must finish first (it reads what they trained).
        notebooks: name prefixes of the notebooks that use what it makes.
        per_dataset: runs once per dataset of the suite (else once, with the first).
    """

    name: str
    after: tuple[str, ...]
    notebooks: tuple[str, ...]
    per_dataset: bool = True


#: In priority order: a free worker takes the first job whose ``after`` jobs are done (longest first).
JOBS: tuple[Job, ...] = (
    # loads (installs, where Debian's copy must be unpacked) the dataset and the Max-Min base once, before any
    # two workers could do it at the same time
    Job("data", (), ("02", "03", "04", "05", "06", "07", "08", "10")),
    Job("main", ("data",), ("02", "03", "04", "05", "06", "07", "08", "10")),
    Job("maxmin", ("data",), ("06", "08"), per_dataset=False),
    Job("imta-seeds", ("data",), ("07",)),
    Job("imta", ("main",), ("07",)),
    # each policy network and its shuffled-label control: two jobs, so that the last minutes keep both workers busy
    Job("policy-binary", ("main",), ("08",)),
    Job("policy-binary-control", ("main",), ("08",)),
    Job("policy-maxmin", ("maxmin",), ("08",), per_dataset=False),
    Job("policy-maxmin-control", ("maxmin",), ("08",), per_dataset=False),
)


def _job_data(preset: Preset) -> None:
    from .data import get_dataset
    from .experiment import load_splits

    load_splits(preset, preset.datasets[0])
    get_dataset(preset.maxmin.base, "train")


def _job_main(preset: Preset) -> None:
    from .experiment import main_experiment, training_record

    main_experiment(preset, progress=True)
    if preset.data.train_record_size >= 0:
        training_record(preset)


def _job_maxmin(preset: Preset) -> None:
    from .experiment import maxmin_experiment, maxmin_short_and_long

    maxmin_experiment(preset)
    maxmin_short_and_long(preset)


def _imta_options(preset: Preset) -> dict:
    # notebook 07's parameter defaults (imta_freeze="all", imta_teacher="pretrained", imta_kl="mean",
    # imta_parent="branch") are the preset's; test_jobs checks that they agree
    return dict(freeze=preset.imta.freeze, teacher=preset.imta.teacher, kl=preset.imta.kl, parent=preset.imta.parent)


def _job_imta(preset: Preset) -> None:
    from .experiment import imta_protocol

    imta_protocol(preset, **_imta_options(preset))


def _job_imta_seeds(preset: Preset) -> None:
    from .experiment import imta_over_seeds

    if preset.imta.seeds:
        imta_over_seeds(preset, **_imta_options(preset))


def _binary_policy_data(preset: Preset):
    from .analysis import policy
    from .experiment import main_experiment

    exp = main_experiment(preset)
    return exp.records["val"], exp.splits["val"], "binary", policy.balancing_lambda(exp.records["val"])


def _maxmin_policy_data(preset: Preset):
    from .experiment import maxmin_experiment

    mmx = maxmin_experiment(preset)
    from .analysis.policy import DEFAULT_LAMBDA

    return mmx.records["val"], mmx.splits["val"], "score", DEFAULT_LAMBDA


def _policy_job(data: Callable[[Preset], tuple], shuffle: bool) -> Callable[[Preset], None]:
    """Train the policy network of notebook 08's :func:`~overthink_lib.experiment.policy_experiment` on ``data``
    (``shuffle``: its shuffled-label control); the notebook evaluates both from the cached runs."""

    def run(preset: Preset) -> None:
        from .experiment import policy_training_set, train_policy

        rec_val, val_set, method, lam = data(preset)
        _, d_tr, source = policy_training_set(rec_val, val_set, method, lam)
        train_policy(preset, d_tr, None, source=source, shuffle=shuffle)

    return run


RUNNERS: dict[str, Callable[[Preset], None]] = {
    "data": _job_data,
    "main": _job_main,
    "maxmin": _job_maxmin,
    "imta-seeds": _job_imta_seeds,
    "imta": _job_imta,
    "policy-binary": _policy_job(_binary_policy_data, False),
    "policy-binary-control": _policy_job(_binary_policy_data, True),
    "policy-maxmin": _policy_job(_maxmin_policy_data, False),
    "policy-maxmin-control": _policy_job(_maxmin_policy_data, True),
}


def run_job(preset: str, dataset: str, name: str) -> None:
    """Run job ``name`` in this process on ``Preset.training.threads`` threads (the worker's entry point)."""
    import torch

    if name not in RUNNERS:
        raise ConfigError(f"unknown job {name!r}: choose one of {', '.join(RUNNERS)}")
    preset = get_preset(preset).for_dataset(dataset)
    if preset.training.threads:
        torch.set_num_threads(preset.training.threads)
    RUNNERS[name](preset)


def plan(preset: Preset, books: list[tuple[str, str | None]]) -> list[tuple[Job, str]]:
    """The (job, dataset) pairs that the given (notebook file name, dataset) runs use, in priority order (a notebook
    without a ``dataset`` parameter, None, reads the preset's first dataset; a dataset-free job runs once, with the
    first dataset it is needed for); none when the preset does not pin its training threads (jobs would then train
    other networks than the notebooks)."""
    if not preset.training.threads:
        return []
    out: list[tuple[Job, str]] = []
    for job in JOBS:
        needed = [ds or preset.datasets[0] for name, ds in books if name.startswith(job.notebooks)]
        for ds in dict.fromkeys(needed if job.per_dataset else needed[:1]):
            out.append((job, ds))
    return out


def workers_for(preset: Preset) -> int:
    """Worker processes: the cores this process may use divided by the preset's training threads (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, preset.training.threads))


def _say(text: str) -> None:
    """One line in one write (the notebook runner prints from another thread)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    """In the worker, before it starts: ask Linux to end it when the runner dies (killed, or a CI timeout), so no
    orphaned training goes on writing checkpoints. Elsewhere a no-op."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def job_command(preset: str, dataset: str, name: str) -> list[str]:
    """The worker's command line for one job."""
    return [sys.executable, "-m", "overthink_lib", "job", "--preset", preset, "--dataset", dataset, name]


def run_jobs(
    preset: Preset,
    pairs: list[tuple[Job, str]],
    *,
    workers: int | None = None,
    log_dir: Path | None = None,
    progress: bool = True,
    poll: float = 0.5,
    command: Callable[[str, str, str], list[str]] = job_command,
    done: set | None = None,
    stop: threading.Event | None = None,
    env: dict[str, str] | None = None,
) -> list[dict]:
    """Run ``pairs`` in worker processes (``python -m overthink_lib job``), at most ``workers`` at once, each when
    the jobs it comes after (same dataset, or the only run of a dataset-free job) are done. Each job's output goes to
    ``log_dir/<job>[-<dataset>].log`` (default ``runs/<preset>/jobs/``); ``command`` makes a worker's command line. A failed job stops the others and raises
    :class:`ConfigError` with the end of its log. ``done`` (a set) receives each finished (job, dataset) as it
    ends; ``stop`` set from another thread kills the running jobs and returns; ``env``: the workers' environment
    (default a copy of this process's, taken now). Returns one row per job: name, dataset, seconds, log."""
    from .train import HEADLESS_ENV

    base_env = dict(os.environ) if env is None else dict(env)
    workers = workers or workers_for(preset)
    log_dir = Path(log_dir or preset.run_dir / "jobs")
    log_dir.mkdir(parents=True, exist_ok=True)
    free = {j.name: d for j, d in pairs if not j.per_dataset}  # a dataset-free job's one run
    key = {(j.name, d): (j.name, d) for j, d in pairs}
    pending = list(pairs)
    running: dict[tuple[str, str], tuple[subprocess.Popen, float, Path, object]] = {}
    done = set() if done is None else done
    rows = []
    if progress:
        _say(
            f"training ahead of the notebooks: {len(pairs)} job(s) in {workers} worker(s) of "
            f"{preset.training.threads} thread(s); logs → {log_dir}"
        )
    t_all = time.perf_counter()
    try:
        while (pending or running) and not (stop is not None and stop.is_set()):
            for (name, ds), (proc, t0, log, fh) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                fh.close()
                del running[(name, ds)]
                dt = time.perf_counter() - t0
                if rc != 0:
                    tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
                    raise ConfigError(f"job {name} ({ds}) failed with exit code {rc}; its log {log} ends:\n{tail}")
                done.add((name, ds))
                rows.append({"job": name, "dataset": ds, "seconds": round(dt, 1), "log": str(log)})
                if progress:
                    _say(f"  job {name} ({ds}): {dt:.1f} s")
            for pair in list(pending):
                if len(running) >= workers:
                    break
                job, ds = pair
                deps = [(a, free.get(a, ds)) for a in job.after]
                if any(d in key and d not in done for d in deps):
                    continue
                pending.remove(pair)
                stem = job.name if not job.per_dataset or ds == preset.datasets[0] else f"{job.name}-{ds}"
                log = log_dir / f"{stem}.log"
                fh = open(log, "w")
                wenv = {
                    **base_env,
                    "TQDM_DISABLE": "1",
                    HEADLESS_ENV: "1",
                    "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": str(preset.training.threads),
                }
                proc = subprocess.Popen(
                    command(preset.name, ds, job.name),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=wenv,
                    cwd=str(ROOT),
                    preexec_fn=_die_with_parent,
                )
                running[(job.name, ds)] = (proc, time.perf_counter(), log, fh)
                if progress:
                    _say(f"▶ job {job.name} ({ds}) → {log}")
            if pending and not running:
                raise ConfigError(f"jobs {[j.name for j, _ in pending]} wait for jobs that are not planned")
            time.sleep(poll)
    finally:
        for proc, _, _, fh in running.values():
            proc.kill()
            proc.wait()
            fh.close()
    if progress and not (stop is not None and stop.is_set()):
        _say(f"jobs done in {time.perf_counter() - t_all:.1f} s")
    return rows


class JobRunner:
    """:func:`run_jobs` in a background thread, so notebooks can run as soon as the jobs they read are done (the
    notebook runner waits on :meth:`wait_for` before each notebook)."""

    def __init__(self, preset: Preset, pairs: list[tuple[Job, str]], **kwargs):
        self.preset, self.pairs = preset, pairs
        kwargs.setdefault("env", dict(os.environ))  # taken now, before any notebook sets its own variables
        self.done: set[tuple[str, str]] = set()
        self.rows: list[dict] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)

    def _run(self, **kwargs) -> None:
        try:
            self.rows = run_jobs(self.preset, self.pairs, done=self.done, stop=self._stop, **kwargs)
        except BaseException as err:
            self.error = err

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def busy(self) -> bool:
        """Jobs are still running."""
        return self._thread.is_alive() and not {(j.name, d) for j, d in self.pairs} <= self.done

    def needs(self, notebook: str, dataset: str | None) -> set[tuple[str, str]]:
        """The (job, dataset) pairs notebook ``notebook`` (file name) reads for ``dataset`` (None: the preset's
        first)."""
        ds = dataset or self.preset.datasets[0]
        return {
            (j.name, d) for j, d in self.pairs if notebook.startswith(j.notebooks) and (d == ds or not j.per_dataset)
        }

    def wait_for(self, notebook: str, dataset: str | None, poll: float = 0.2) -> float:
        """Block until every job ``notebook`` reads is done; raise a job's failure. Returns the seconds waited."""
        need, t0 = self.needs(notebook, dataset), time.perf_counter()
        while not need <= self.done and self._thread.is_alive():
            time.sleep(poll)
        if self.error is not None:
            raise self.error
        return time.perf_counter() - t0

    def stop(self) -> None:
        """Kill the running jobs (after a notebook failed)."""
        self._stop.set()
        self._thread.join()

    def finish(self) -> list[dict]:
        """Wait for every job; raise a job's failure; the jobs' rows."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.rows
