"""The jobs on a real SLURM: a one-node cluster on this machine (``scripts/slurm-local.sh``: munged, slurmctld and
slurmd, started here as root and stopped by PID at the end), the smoke suite's jobs submitted through submitit.

- every record and every network the SLURM jobs make is bit-identical to a local run's (same threads, same hashes);
- a job ``scancel``led mid-training fails the run with its name, and the next run resumes it from its last
  checkpoint, ending with the weights an uninterrupted run has;
- a job whose predecessor failed is cancelled by SLURM (``--kill-on-invalid-dep``), never left pending.

Under ``.ci/run`` (``OVERTHINK_REQUIRE_SLURM=1``) a missing SLURM fails these tests; elsewhere they skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from overthink_lib.config import ROOT, get_preset
from overthink_lib.jobs import JobFailed, JobSpec, LocalExecutor, SlurmExecutor, Task, plan, run_tasks
from overthink_lib.suite import list_notebooks

SCRIPT = ROOT / "scripts" / "slurm-local.sh"
BOOKS = [(b.name, None) for b in list_notebooks()]


#: What CI's log shows of these tests (.ci/run prints it): squeue/sacct of the jobs, timings, the resume line.
REPORT = ROOT / "runs" / "slurm-test-report.txt"


def _report(text: str) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with open(REPORT, "a") as fh:
        fh.write(text.rstrip() + "\n")


def _unavailable() -> str:
    if os.geteuid() != 0:
        return "starting a one-node SLURM needs root (scripts/slurm-local.sh start)"
    for tool in ("slurmctld", "slurmd", "munged", "sbatch"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"no {tool}: install SLURM with scripts/slurm-local.sh install"
    return ""


@pytest.fixture(scope="module")
def cluster():
    why = _unavailable()
    if why:
        if os.environ.get("OVERTHINK_REQUIRE_SLURM") == "1":
            pytest.fail(f"SLURM is required here (OVERTHINK_REQUIRE_SLURM=1) but {why}")
        pytest.skip(why)
    REPORT.unlink(missing_ok=True)
    import tempfile

    # under /tmp, not pytest's 0700 folders: munged wants every folder above its socket searchable by all
    state = Path(tempfile.mkdtemp(prefix="overthink-slurm-"))
    state.chmod(0o755)
    r = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    _report(f"one-node SLURM for the tests: {r.stdout.strip()}")
    conf = str(state / "slurm.conf")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield state
    finally:
        _report(_sh("squeue") + "\n" + _sh("sacct", "-X", "-o", "JobID,JobName%45,State,Elapsed,ExitCode"))
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _sh(*cmd: str) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    return f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}"


def _renamed(name: str, **parts):
    """The smoke preset under another name: its own runs/<name>/ (run hashes do not include the name)."""
    return get_preset("smoke").with_parts(name=name, figures_dir=f"runs/{name}/figures", **parts)


def _fresh(preset) -> None:
    shutil.rmtree(preset.run_dir, ignore_errors=True)


def _weights(run_dir: Path) -> dict[str, dict]:
    """Every finished network under run_dir/models (folder name → its state dict)."""
    out = {}
    for ckpt in sorted((run_dir / "models").rglob("checkpoint.pt")):
        out[str(ckpt.parent.relative_to(run_dir))] = torch.load(ckpt, weights_only=False)["model"]
    return out


def _arrays(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every record file under run_dir (path → its arrays, provenance text left out: it names the run folder)."""
    out = {}
    for f in sorted(run_dir.rglob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            out[str(f.relative_to(run_dir))] = {k: z[k] for k in z.files if k != "provenance"}
    return out


def _slurm(preset, **kw) -> SlurmExecutor:
    return SlurmExecutor(preset, time_min=20, cpus=preset.training.threads, **kw)


def _local_smoke_runs():
    """The local executor's smoke runs to hold the SLURM ones against: the smoke suite's own (``runs/smoke``, made by
    ``test_notebooks.py`` earlier in ``make test``: the same jobs, hashes and threads), or a fresh local run of the
    jobs when that suite did not run. Returns (run folder, seconds spent, jobs run)."""
    smoke = get_preset("smoke")
    if (smoke.run_dir / "jobs_timings.csv").exists():
        return smoke.run_dir, 0.0, 0
    local = _renamed("smoke-local")
    _fresh(local)
    t0 = time.perf_counter()
    run_tasks(local, JobSpec(local, {}), plan(local, BOOKS), LocalExecutor(local), poll=0.2)
    return local.run_dir, time.perf_counter() - t0, len(plan(local, BOOKS))


def test_smoke_jobs_through_slurm_match_a_local_run(cluster, capsys):
    remote = _renamed("smoke-slurm")
    _fresh(remote)
    tasks = plan(remote, BOOKS, fan_out=True, need_threads=False)
    t0 = time.perf_counter()
    rows = run_tasks(remote, JobSpec(remote, {}), tasks, _slurm(remote), poll=1.0)
    t_slurm = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert all(r["job_id"] for r in rows) and len(rows) == len(tasks) > len(plan(remote, BOOKS))
    assert "pending" in out or "running" in out
    _report(out[-4000:])
    local_dir, t_local, n_local = _local_smoke_runs()
    _report(
        f"smoke jobs: SLURM {t_slurm:.0f} s ({len(tasks)} jobs); compared with "
        + (
            f"a local run, {t_local:.0f} s ({n_local} jobs)"
            if n_local
            else f"the smoke suite's local runs in {local_dir}"
        )
    )
    # every network and record SLURM made, bit-identical to the local executor's (same folder names: same hashes;
    # the smoke suite's folder also holds what its notebooks made themselves, e.g. 09's runs)
    a, b = _weights(local_dir), _weights(remote.run_dir)
    assert b and set(b) <= set(a), sorted(set(b) - set(a))
    for name in b:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)
    ra, rb = _arrays(local_dir), _arrays(remote.run_dir)
    assert rb and set(rb) <= set(ra), sorted(set(rb) - set(ra))
    for f in rb:
        for k in rb[f]:
            assert np.array_equal(ra[f][k], rb[f][k]), (f, k)
    _report(
        f"SLURM vs local: identical weights of {len(b)} networks (torch.equal per tensor) and arrays of {len(rb)} record files (numpy.array_equal)"
    )


def test_a_cancelled_job_fails_the_run_and_resumes_where_it_stopped(cluster, capsys):
    # 2 epochs of the smoke network: the job is cancelled after the first one's checkpoint, the rerun trains the second
    p = _renamed("smoke-cancel", training={"epochs": 2})
    _fresh(p)
    spec = JobSpec(p, {})
    tasks = [Task("data", "fashion_mnist"), Task("main", "fashion_mnist")]
    ex = _slurm(p)
    log = p.run_dir / "jobs" / "main.log"
    import threading

    failure: list[BaseException] = []

    def go():
        try:
            run_tasks(p, spec, tasks, ex, poll=0.5)
        except BaseException as err:
            failure.append(err)

    th = threading.Thread(target=go)
    th.start()
    deadline = time.time() + 600
    while time.time() < deadline and not (log.exists() and "epoch 1/2:" in log.read_text() and "→" in log.read_text()):
        time.sleep(0.5)
    assert log.exists() and "epoch 1/2" in log.read_text(), "the main job never finished its first epoch"
    jid = ex.job_id(Task("main", "fashion_mnist"))
    subprocess.run(["scancel", jid], check=True)
    th.join(120)
    assert failure and isinstance(failure[0], JobFailed)
    assert f"job main (fashion_mnist) (SLURM job {jid}) failed" in str(failure[0])
    # run again: the job resumes from its last checkpoint
    run_tasks(p, spec, tasks, _slurm(p), poll=0.5)
    text = log.read_text()
    assert "resuming from" in text and "after epoch" in text, text[-2000:]
    _report(
        f"cancelled SLURM job {jid} after epoch 1; rerun: {next(ln for ln in text.splitlines() if 'resuming' in ln)}"
    )
    # the same weights as an uninterrupted run (a local one)
    q = _renamed("smoke-uninterrupted", training={"epochs": 2})
    _fresh(q)
    run_tasks(q, JobSpec(q, {}), tasks, LocalExecutor(q), poll=0.2)
    a, b = _weights(p.run_dir), _weights(q.run_dir)
    assert sorted(a) == sorted(b)
    for name in a:
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)
    _report(f"resumed run: the same weights as an uninterrupted one ({len(a)} network(s), torch.equal per tensor)")


def test_a_failed_predecessor_cancels_what_comes_after(cluster, tmp_path):
    p = _renamed("smoke-fail")
    _fresh(p)
    # a spec naming a dataset that does not exist: the data job fails with one line, main never runs
    bad = JobSpec(p.with_parts(data={"datasets": ("no_such_dataset",)}), {})
    tasks = [Task("data", "no_such_dataset"), Task("main", "no_such_dataset")]
    ex = _slurm(bad.preset)
    with pytest.raises(JobFailed, match=r"job data \(no_such_dataset\) \(SLURM job \d+\) failed: exit code 2"):
        run_tasks(bad.preset, bad, tasks, ex, poll=0.5)
    main_id = ex.job_id(Task("main", "no_such_dataset"))
    for _ in range(60):  # cancelled by SLURM or by the runner: gone from the queue
        if main_id not in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split():
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"job {main_id} is still queued after its predecessor failed")


def test_reproduce_through_slurm_from_the_command_line(cluster, capsys):
    """The CLI path: `reproduce --executor slurm` submits the jobs 02 reads, then runs 02 here once they are done."""
    from overthink_lib.__main__ import main

    assert (
        main(
            ["reproduce", "--preset", "smoke", "--only", "02", "--executor", "slurm", "--time", "0:20:00", "--no-html"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "through the slurm executor" in out and "job main (fashion_mnist) [" in out and "02_train.ipynb" in out
    _report("reproduce --executor slurm --only 02:\n" + "\n".join(ln for ln in out.splitlines() if "job" in ln)[-1500:])
