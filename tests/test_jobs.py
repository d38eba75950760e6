"""The jobs reproduce runs ahead of the notebooks: plan, scheduling, failure, and pinned training threads."""

import json
import sys
import time

import pytest
import torch

from helpers import random_set, tiny_spec
from overthink_lib.analysis.policy import DEFAULT_LAMBDA
from overthink_lib.config import ConfigError, get_preset
from overthink_lib.jobs import JOBS, Job, plan, run_jobs
from overthink_lib.notebooks import declared_parameters, list_notebooks
from overthink_lib.speed import cpu_threads
from overthink_lib.train import TrainConfig, fit

BOOKS = [(b.name, None) for b in list_notebooks()]


def test_plan_covers_what_the_notebooks_use():
    cpu = get_preset("cpu")
    assert [(j.name, d) for j, d in plan(cpu, BOOKS)] == [
        ("data", "fashion_mnist"),
        ("main", "fashion_mnist"),
        ("maxmin", "fashion_mnist"),
        ("imta-seeds", "fashion_mnist"),
        ("imta", "fashion_mnist"),
        ("policy-binary", "fashion_mnist"),
        ("policy-binary-control", "fashion_mnist"),
        ("policy-maxmin", "fashion_mnist"),
        ("policy-maxmin-control", "fashion_mnist"),
    ]
    assert [j.name for j, _ in plan(cpu, [("03_anytime_and_budgeted.ipynb", "fashion_mnist")])] == ["data", "main"]
    assert plan(cpu, [("01_data.ipynb", None)]) == []
    two = [
        (j.name, d)
        for j, d in plan(
            cpu, [(b, ds) for b in ("07_imta.ipynb", "08_policy_network.ipynb") for ds in ("fashion_mnist", "mnist")]
        )
    ]
    assert ("maxmin", "fashion_mnist") in two and ("maxmin", "mnist") not in two  # Max-Min is dataset-free
    assert ("imta", "mnist") in two and ("policy-binary", "mnist") in two
    # another dataset only: a notebook without a dataset parameter (10) still reads the preset's first dataset
    other = [(j.name, d) for j, d in plan(cpu, [("07_imta.ipynb", "mnist"), ("10_speed.ipynb", None)])]
    assert ("main", "mnist") in other and ("main", "fashion_mnist") in other and ("imta", "fashion_mnist") not in other
    # a preset that does not pin its training threads: the notebooks train (a job would train another network)
    assert plan(cpu.with_parts(training={"threads": 0}), BOOKS) == []


def test_jobs_call_with_the_notebooks_defaults():
    """A job must ask for exactly what its notebook asks for, or the notebook trains again."""
    import ast

    def defaults(prefix):
        book = next(b for b in list_notebooks() if b.name.startswith(prefix))
        return {k: ast.literal_eval(v["default"]) for k, v in declared_parameters(book).items()}

    p06, p07, p08 = defaults("06"), defaults("07"), defaults("08")
    for name in ("smoke", "cpu", "paper"):
        preset = get_preset(name)
        assert (p07["imta_freeze"], p07["imta_teacher"], p07["imta_kl"], p07["imta_parent"]) == (
            preset.imta.freeze,
            preset.imta.teacher,
            preset.imta.kl,
            preset.imta.parent,
        )
        assert p07["n_seeds"] == 0 and p07["seed"] == 0 == preset.seed  # 0: the preset's seeds and seed
    assert p06["lam"] == p08["lam"] == DEFAULT_LAMBDA  # λ: one default, written where papermill must see it


def _fake(tmp_path, fail: str = ""):
    """A worker command that logs start/end times and sleeps; job ``fail`` exits 3."""

    def command(preset, dataset, name):
        code = (
            f"import json, time, sys; t0 = time.time(); time.sleep(0.4); "
            f"open({str(tmp_path / 'events.jsonl')!r}, 'a').write(json.dumps([{name!r}, {dataset!r}, t0, time.time()]) + '\\n'); "
            f"print('bad input: no such thing'); sys.exit(3 if {name!r} == {fail!r} else 0)"
        )
        return [sys.executable, "-c", code]

    return command


def test_run_jobs_respects_order_and_workers(tmp_path):
    preset = get_preset("smoke")
    pairs = [(j, "fashion_mnist") for j in JOBS]
    rows = run_jobs(
        preset, pairs, workers=2, log_dir=tmp_path / "logs", progress=False, poll=0.05, command=_fake(tmp_path)
    )
    assert sorted(r["job"] for r in rows) == sorted(j.name for j in JOBS)
    ev = {e[0]: e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())}
    for job in JOBS:  # every job starts after the ones it reads have ended
        for dep in job.after:
            assert ev[job.name][2] >= ev[dep][3], (job.name, dep)
    times = sorted([(e[2], 1) for e in ev.values()] + [(e[3], -1) for e in ev.values()])
    running = peak = 0
    for _, d in times:
        running += d
        peak = max(peak, running)
    assert peak == 2  # two at once, never more
    assert (tmp_path / "logs" / "main.log").exists()


def test_a_failed_job_stops_the_run_with_its_log(tmp_path):
    preset = get_preset("smoke")
    pairs = [(Job("a", (), ("02",)), "fashion_mnist"), (Job("b", ("a",), ("02",)), "fashion_mnist")]
    t0 = time.perf_counter()
    with pytest.raises(
        ConfigError,
        match=r"job a \(fashion_mnist\) failed with exit code 3; its log .*a.log ends:\n"
        r"bad input: no such thing",
    ):
        run_jobs(
            preset,
            pairs,
            workers=2,
            log_dir=tmp_path / "logs",
            progress=False,
            poll=0.05,
            command=_fake(tmp_path, fail="a"),
        )
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "logs" / "b.log").exists()  # what depends on it never started


def test_notebooks_wait_only_for_the_jobs_they_read(tmp_path):
    from overthink_lib.jobs import JobRunner

    preset = get_preset("smoke")

    def slow(preset, ds, name):
        return (
            _fake(tmp_path)(preset, ds, name) if name != "b" else [sys.executable, "-c", "import time; time.sleep(3)"]
        )

    pairs = [(Job("a", (), ("02",)), "fashion_mnist"), (Job("b", (), ("07",)), "fashion_mnist")]
    runner = JobRunner(
        preset, pairs, workers=2, log_dir=tmp_path / "logs", progress=False, poll=0.05, command=slow
    ).start()
    assert (
        runner.needs("02_train.ipynb", None) == {("a", "fashion_mnist")}
        and runner.needs("01_data.ipynb", None) == set()
    )
    runner.wait_for("02_train.ipynb", "fashion_mnist", poll=0.05)
    assert ("a", "fashion_mnist") in runner.done and runner.busy()  # 02 may start while b still trains
    runner.wait_for("07_imta.ipynb", None, poll=0.05)
    assert not runner.busy()  # every job done: the next notebook gets all threads, even before the thread ends
    assert [r["job"] for r in runner.finish()] == ["a", "b"]
    failing = JobRunner(
        preset,
        [(Job("a", (), ("02",)), "fashion_mnist")],
        workers=1,
        log_dir=tmp_path / "logs2",
        progress=False,
        poll=0.05,
        command=_fake(tmp_path, fail="a"),
    ).start()
    with pytest.raises(ConfigError, match="job a .* failed"):
        failing.wait_for("02_train.ipynb", None, poll=0.05)


def test_unknown_job_is_one_error_line():
    from overthink_lib.jobs import run_job

    with pytest.raises(ConfigError, match="unknown job 'mian': choose one of data, main, maxmin"):
        run_job("smoke", "fashion_mnist", "mian")


def test_training_runs_on_the_pinned_threads_and_restores_them(tmp_path):
    seen = []

    def loss_fn(outputs, y, index):
        seen.append(torch.get_num_threads())
        losses = [torch.nn.functional.cross_entropy(o, y) for o in outputs]
        return sum(losses), losses

    before = torch.get_num_threads()
    ds = random_set(64)
    from overthink_lib.models import model_from_spec

    cfg = TrainConfig(epochs=1, batch_size=32, threads=1)
    fit(model_from_spec(tiny_spec()), ds, None, cfg, out_dir=tmp_path / "a", progress=False, loss_fn=loss_fn)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
    assert "threads" in cfg.hashed_fields() and "threads" not in TrainConfig(epochs=1).hashed_fields()
    with pytest.raises(ConfigError, match="threads must be an integer >= 0"):
        TrainConfig(epochs=1, threads=-1)
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_presets_with_jobs_pin_training_threads():
    from overthink_lib.experiment import train_config

    for name in ("smoke", "cpu"):
        assert train_config(get_preset(name)).threads == 1
    assert train_config(get_preset("paper")).threads == 0
