"""The jobs reproduce runs ahead of the notebooks: plan and fan-out, the spec that travels, the local executor's
scheduling, time limit, failure and progress lines, dying with the runner, and pinned training threads."""

import json
import sys
import time

import pytest
import torch

from helpers import random_set, tiny_spec
from overthink_lib.analysis.policy import DEFAULT_LAMBDA
from overthink_lib.config import ConfigError, get_preset
from overthink_lib.jobs import JOBS, JobFailed, JobRunner, JobSpec, LocalExecutor, Task, dependencies, plan, run_tasks
from overthink_lib.notebooks import declared_parameters
from overthink_lib.speed import cpu_threads
from overthink_lib.suite import list_notebooks
from overthink_lib.train import TrainConfig, fit

BOOKS = [(b.name, None) for b in list_notebooks()]


def _pairs(tasks):
    return [(t.job, t.dataset) for t in tasks]


def test_plan_covers_what_the_notebooks_use():
    cpu = get_preset("cpu")
    assert _pairs(plan(cpu, BOOKS)) == [
        ("data", "fashion_mnist"),
        ("main", "fashion_mnist"),
        ("maxmin", "fashion_mnist"),
        ("imta-seeds", "fashion_mnist"),
        ("imta", "fashion_mnist"),
        ("policy-binary", "fashion_mnist"),
        ("policy-binary-control", "fashion_mnist"),
        ("policy-binary-thesis", "fashion_mnist"),
        ("policy-binary-thesis-control", "fashion_mnist"),
        ("policy-maxmin", "fashion_mnist"),
        ("policy-maxmin-control", "fashion_mnist"),
        ("stochasticity", "fashion_mnist"),
    ]
    assert [t.job for t in plan(cpu, [("03_anytime_and_budgeted.ipynb", "fashion_mnist")])] == ["data", "main"]
    assert plan(cpu, [("01_data.ipynb", None)]) == []
    two = _pairs(
        plan(cpu, [(b, ds) for b in ("07_imta.ipynb", "08_policy_network.ipynb") for ds in ("fashion_mnist", "mnist")])
    )
    assert ("maxmin", "fashion_mnist") in two and ("maxmin", "mnist") not in two  # Max-Min is dataset-free
    assert ("imta", "mnist") in two and ("policy-binary", "mnist") in two
    # another dataset only: a notebook without a dataset parameter (10) still reads the preset's first dataset
    other = _pairs(plan(cpu, [("07_imta.ipynb", "mnist"), ("10_speed.ipynb", None)]))
    assert ("main", "mnist") in other and ("main", "fashion_mnist") in other and ("imta", "fashion_mnist") not in other
    # a preset that does not pin its training threads: no local jobs (a job would train another network) ...
    assert plan(cpu.with_parts(training={"threads": 0}), BOOKS) == []
    # ... but a cluster's jobs still run (each job's network is the one the notebook then reuses by hash)
    assert plan(get_preset("paper"), BOOKS, need_threads=False)


def test_fan_out_gives_one_task_per_run_and_parameters_travel():
    smoke = get_preset("smoke")
    whole = plan(smoke, BOOKS)
    fanned = plan(smoke, BOOKS, fan_out=True)
    seeds = [t.item for t in fanned if t.job == "imta-seeds"]
    assert seeds == [f"seed{i}" for i in range(smoke.imta.seeds)]
    stoch = [t.item for t in fanned if t.job == "stochasticity"]
    k = smoke.stochasticity.runs
    assert len(stoch) == 2 * (3 * k - 2) and len(set(stoch)) == len(stoch)  # run (0, 0) shared by the factors
    assert [t.item for t in whole if t.job in ("imta-seeds", "stochasticity")] == ["", ""]
    # n_seeds travels: 4 seeds, 4 tasks; a seed changes no plan, only the spec
    assert len([t for t in plan(smoke, BOOKS, {"n_seeds": 4}, fan_out=True) if t.job == "imta-seeds"]) == 4
    assert plan(smoke, BOOKS, {"seed": 1}) == whole
    # parameters the jobs do not model: the notebooks train for themselves
    assert plan(smoke, BOOKS, {"epochs": 3}) == [] and plan(smoke, BOOKS, {"record": "/x/val.npz"}) == []
    assert plan(smoke, BOOKS, {"epochs": 0, "record": ""}) == whole
    # every task's predecessors are planned; one that is not is an error, never skipped
    deps = dependencies(fanned)
    assert all(d.job == "data" for t in fanned if t.job == "stochasticity" for d in deps[t])
    with pytest.raises(ConfigError, match="comes after job 'main', which is not planned"):
        dependencies([Task("data", "fashion_mnist"), Task("imta", "fashion_mnist")])


def test_the_spec_travels_as_json_and_refuses_what_jobs_do_not_read(tmp_path):
    spec = JobSpec(get_preset("smoke").with_parts(training={"epochs": 3}), {"seed": 1, "lam": 7.5})
    path = spec.write(tmp_path)
    back = JobSpec.read(path)
    assert back == spec and back.seed == 1 and back.preset.training.epochs == 3
    assert spec.write(tmp_path) == path  # the same spec, the same file
    with pytest.raises(ConfigError, match="'n_boot' is not one jobs read"):
        JobSpec.from_json(json.dumps({"preset": spec.preset.to_dict(), "params": {"n_boot": 3}}))
    with pytest.raises(ConfigError, match="not a job spec"):
        JobSpec.from_json("[1, 2]")
    with pytest.raises(ConfigError, match="cannot read the job spec"):
        JobSpec.read(tmp_path / "missing.json")


def test_jobs_call_with_the_notebooks_defaults():
    """A job must ask for exactly what its notebook asks for, or the notebook trains again: every notebook default of
    a parameter the jobs read is the preset's value of its declared field (or 0 / "": the preset's), on every preset."""
    import ast

    from overthink_lib.experiments import PARAMS

    checked = set()
    for book in list_notebooks():
        for name, info in declared_parameters(book).items():
            param, default = PARAMS[name], ast.literal_eval(info["default"])
            if not param.job:
                continue
            checked.add(name)
            for preset in map(get_preset, ("smoke", "cpu", "paper")):
                if param.preset_field and default not in (0, ""):
                    assert default == param.preset_value(preset), (book.name, name, preset.name)
            if name == "seed":
                assert default == 0 == get_preset("cpu").seed  # 0: the preset's seed
            if name == "lam":  # λ: one default, written where papermill must see it
                assert default == DEFAULT_LAMBDA, book.name
    assert checked == {n for n, p in PARAMS.items() if p.job}  # every job parameter is some notebook's


def test_notebook_parameters_are_the_declared_ones():
    """Each name of a notebook's parameters cell is declared once (experiments.PARAMS), with the type of its default;
    every declared parameter is some notebook's."""
    import ast

    from overthink_lib.experiments import PARAMS

    used = set()
    for book in list_notebooks():
        for name, info in declared_parameters(book).items():
            assert name in PARAMS, (book.name, name)
            default = ast.literal_eval(info["default"])
            assert isinstance(default, PARAMS[name].kind) and not (
                isinstance(default, bool) and PARAMS[name].kind is not bool
            ), (book.name, name, default)
            PARAMS[name].check(default)  # a notebook's own default keeps its rule
            used.add(name)
    assert used == set(PARAMS)


def test_binary_policy_jobs_ask_for_the_notebooks_lambdas(monkeypatch):
    """Notebook 08's binary policies: one at the balancing λ of the validation record, one at the thesis's λ for the
    dataset (5 on CIFAR-100, 20 on SVHN, the thesis's default 5 elsewhere); the jobs must train those same two."""
    from types import SimpleNamespace

    from test_exits_overthinking import make_record as hand_record

    from overthink_lib.analysis import policy
    from overthink_lib.experiments import main as main_protocol
    from overthink_lib.experiments import policy as policy_protocol
    from overthink_lib.jobs import graph
    from overthink_lib.suite import list_notebooks

    rec = hand_record([[1, 1, 1], [0, 1, 1], [0, 0, 1], [1, 0, 0]], [[0.9] * 3] * 4, flops=[1e6, 2e6, 4e6])
    monkeypatch.setattr(
        main_protocol, "main_experiment", lambda *a, **k: SimpleNamespace(records={"val": rec}, splits={"val": None})
    )
    assert policy.THESIS_BINARY_LAMBDA == {"cifar100": 5.0, "svhn": 20.0}
    for ds, lam in (("cifar100", 5.0), ("svhn", 20.0), ("fashion_mnist", DEFAULT_LAMBDA), ("mnist", DEFAULT_LAMBDA)):
        preset = get_preset("smoke").for_dataset(ds)
        assert policy.thesis_binary_lambda(ds) == lam
        assert policy_protocol._thesis_binary_data(preset, {})[2:] == ("binary", lam)
        assert policy_protocol._binary_data(preset, {})[2:] == ("binary", policy.balancing_lambda(rec))
    assert {"policy-binary-thesis", "policy-binary-thesis-control"} <= {j.name for j in graph.JOBS}
    # the notebook asks for the same λ: the library's, for the dataset it runs on
    book = next(b for b in list_notebooks() if b.name.startswith("08"))
    code = "".join("".join(c["source"]) for c in json.loads(book.read_text())["cells"] if c["cell_type"] == "code")
    assert "policy.thesis_binary_lambda(conv_name)" in code and "policy.balancing_lambda(val)" in code


def _fake(tmp_path, fail: str = "", sleep: float = 0.4, say: str = ""):
    """A worker command that logs start/end times and sleeps; job ``fail`` exits 3."""

    def command(spec_file, dataset, name, item=""):
        code = (
            f"import json, time, sys; t0 = time.time(); print({say!r}, flush=True); time.sleep({sleep}); "
            f"open({str(tmp_path / 'events.jsonl')!r}, 'a').write(json.dumps([{name!r}, {dataset!r}, t0, time.time()]) + '\\n'); "
            f"print('bad input: no such thing'); sys.exit(3 if {name!r} == {fail!r} else 0)"
        )
        return [sys.executable, "-c", code]

    return command


def _run(tmp_path, tasks, workers=2, progress=False, **kwargs):
    preset = get_preset("smoke")
    ex = LocalExecutor(preset, workers=workers, command=kwargs.pop("command", _fake(tmp_path)), **kwargs)
    spec = JobSpec(preset, {})
    return run_tasks(preset, spec, tasks, ex, log_dir=tmp_path / "logs", progress=progress, poll=0.05)


def test_local_executor_respects_order_and_workers(tmp_path):
    tasks = [Task(j.name, "fashion_mnist") for j in JOBS]
    rows = _run(tmp_path, tasks)
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


def test_a_failed_job_stops_the_run_with_its_name_and_log(tmp_path):
    tasks = [Task("data", "fashion_mnist"), Task("main", "fashion_mnist")]
    t0 = time.perf_counter()
    with pytest.raises(
        JobFailed,
        match=r"job data \(fashion_mnist\) failed: exit code 3; its log .*data.log ends:\n\s*bad input: no such thing",
    ):
        _run(tmp_path, tasks, command=_fake(tmp_path, fail="data"))
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "logs" / "main.log").exists()  # what depends on it never started


def test_a_job_past_its_time_limit_is_killed_and_fails(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(JobFailed, match=r"job data \(fashion_mnist\) failed: ran past its time limit of 1 s"):
        _run(tmp_path, [Task("data", "fashion_mnist")], command=_fake(tmp_path, sleep=30), timeout=1)
    assert time.perf_counter() - t0 < 15


def test_progress_lines_reach_the_terminal_while_jobs_run(tmp_path, capsys):
    line = "epoch 1/2: step 5/10, loss 1.234, 99 img/s, epoch ETA 00:03"
    _run(tmp_path, [Task("data", "fashion_mnist")], command=_fake(tmp_path, sleep=1.0, say=line), progress=True)
    out = capsys.readouterr().out
    assert "job data (fashion_mnist): running" in out and f"data (fashion_mnist): {line}" in out
    assert "job data (fashion_mnist): done in" in out and "bad input" not in out  # only progress lines
    # with no progress line for a while: a heartbeat line per running job
    preset = get_preset("smoke")
    ex = LocalExecutor(preset, workers=1, command=_fake(tmp_path, sleep=1.5))
    run_tasks(
        preset,
        JobSpec(preset, {}),
        [Task("data", "fashion_mnist")],
        ex,
        log_dir=tmp_path / "l2",
        poll=0.05,
        heartbeat=0.5,
    )
    assert "running for" in capsys.readouterr().out


def test_a_worker_dies_with_its_runner(tmp_path):
    """The worker arms the parent-death signal itself (no preexec_fn in the runner's thread)."""
    import os
    import signal
    import subprocess

    runner = (
        "import os, subprocess, sys, time\n"
        "from overthink_lib.jobs.worker import PARENT_ENV\n"
        "child = subprocess.Popen([sys.executable, '-c', 'from overthink_lib.jobs.worker import die_with_parent; "
        "die_with_parent(); import time; time.sleep(60)'], env={**os.environ, PARENT_ENV: str(os.getpid())})\n"
        "print(child.pid, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    time.sleep(1.5)  # the child has armed the signal
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:  # reap it if it became ours
            os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the worker outlived its runner")


def _slow(tmp_path, job: str):
    """The fake worker of :func:`_fake`, but job ``job`` sleeps 3 s."""

    def command(spec_file, ds, name, item=""):
        if name == job:
            return [sys.executable, "-c", "import time; time.sleep(3)"]
        return _fake(tmp_path)(spec_file, ds, name)

    return command


def test_notebooks_wait_only_for_the_jobs_they_read(tmp_path):
    preset = get_preset("smoke")

    def runner_of(tasks, command, workers, logs):
        executor = LocalExecutor(preset, workers=workers, command=command)
        return JobRunner(
            preset, JobSpec(preset, {}), tasks, executor, log_dir=tmp_path / logs, progress=False, poll=0.05
        )

    # imta waits for main, which is not planned here: a plan error, raised when the runner starts
    runner = runner_of([Task("data", "fashion_mnist"), Task("imta", "fashion_mnist")], _slow(tmp_path, "imta"), 2, "l")
    runner.start()
    with pytest.raises(ConfigError, match="not planned"):
        runner.finish()
    tasks = [Task("data", "fashion_mnist"), Task("maxmin", "fashion_mnist"), Task("imta-seeds", "fashion_mnist")]
    runner = runner_of(tasks, _slow(tmp_path, "imta-seeds"), 3, "logs").start()
    assert {t.job for t in runner.needs("06_dct.ipynb", None)} == {"data", "maxmin"}
    assert runner.needs("01_data.ipynb", None) == set()
    runner.wait_for("06_dct.ipynb", "fashion_mnist", poll=0.05)
    assert Task("maxmin", "fashion_mnist") in runner.done and runner.busy()  # 06 may start while 07's seeds train
    runner.wait_for("07_imta.ipynb", None, poll=0.05)
    assert not runner.busy()
    assert sorted(r["job"] for r in runner.finish()) == ["data", "imta-seeds", "maxmin"]
    failing = runner_of([Task("data", "fashion_mnist")], _fake(tmp_path, fail="data"), 1, "logs2").start()
    with pytest.raises(JobFailed, match=r"job data \(fashion_mnist\) failed"):
        failing.wait_for("02_train.ipynb", None, poll=0.05)


def test_a_failed_job_exits_1_and_bad_input_2(monkeypatch, capsys):
    from overthink_lib import __main__ as cli
    from overthink_lib import suite

    def boom(*a, **k):
        raise JobFailed("job main (fashion_mnist) failed: exit code 1; its log x ends:\nTraceback")

    monkeypatch.setattr(suite, "run_suite", boom)
    assert cli.main(["reproduce", "--preset", "smoke"]) == 1
    assert capsys.readouterr().err.startswith("error: job main (fashion_mnist) failed")
    assert cli.main(["reproduce", "--preset", "smoke", "--partition", "x"]) == 2
    assert "go with --executor slurm" in capsys.readouterr().err
    assert cli.main(["reproduce", "--preset", "smoke", "--executor", "slurm", "--time", "soon"]) == 2
    assert "--time 'soon'" in capsys.readouterr().err


def test_dry_run_prints_the_cluster_plan(capsys):
    from overthink_lib import __main__ as cli

    assert cli.main(["reproduce", "--preset", "paper", "--executor", "slurm", "--dry-run", "--time", "2:00:00"]) == 0
    out = capsys.readouterr().out
    assert "59 job(s)" in out and "H100-hours in all" in out and "the longest chain" in out
    assert "stochasticity-sdn_resnet20-i4-d4" in out and "imta-seeds-svhn-seed2" in out
    assert "1 gpu, 2:00 h" in out


def test_unknown_job_is_one_error_line():
    from overthink_lib.jobs import run_job

    with pytest.raises(ConfigError, match="unknown job 'mian': choose one of data, main, maxmin"):
        run_job("smoke", "fashion_mnist", "mian")
    with pytest.raises(ConfigError, match="no item .seed9. of job .imta-seeds.: its items are seed0, seed1"):
        run_job("smoke", "fashion_mnist", "imta-seeds", "seed9")


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
    from overthink_lib.experiments.runs import train_config

    for name in ("smoke", "cpu"):
        assert train_config(get_preset(name)).threads == 1
    assert train_config(get_preset("paper")).threads == 0


def test_slurm_time_limits_and_resources_read_as_sbatch_does():
    from overthink_lib.jobs.slurm import parse_slurm_args, parse_time, resources

    assert parse_time("90") == 90 and parse_time("1:30") == 2 and parse_time("2:00:00") == 120
    assert parse_time("1-12") == 36 * 60 and parse_time("1-0:30") == 24 * 60 + 30 and parse_time("0-0:0:1") == 1
    for bad in ("soon", "0", "1:2:3:4", "-5", "1-2:3:4:5", ""):
        with pytest.raises(ConfigError, match="--time"):
            parse_time(bad)
    assert resources(get_preset("smoke"), None, None) == {"cpus": 1, "gpus": 0}  # a CPU preset
    assert resources(get_preset("paper"), None, None) == {"cpus": 4, "gpus": 1}  # meant for a GPU
    for gpus, cpus in ((-1, None), (None, 0)):
        with pytest.raises(ConfigError, match="give an integer"):
            resources(get_preset("paper"), gpus, cpus)
    assert parse_slurm_args(["account=abc", "--qos=normal"]) == {"account": "abc", "qos": "normal"}
    with pytest.raises(ConfigError, match="give key=value"):
        parse_slurm_args(["account"])


def test_slurm_states_survive_a_busy_controller_and_a_slow_filesystem(tmp_path, monkeypatch):
    """The executor's reading of squeue, sacct and the status files, without a cluster."""
    from overthink_lib.jobs.slurm import SlurmExecutor
    from overthink_lib.jobs.worker import write_status

    preset = get_preset("smoke")
    ex = SlurmExecutor(preset)
    tasks = [Task("data", "fashion_mnist"), Task("main", "fashion_mnist")]
    ex.tasks, ex.logs = tasks, {t: tmp_path / f"{t.job}.log" for t in tasks}
    ex.ids = {tasks[0]: "1", tasks[1]: "2"}
    ex.state = {t: ("pending", "") for t in tasks}
    answers = {"squeue": {"1": "RUNNING", "2": "PENDING"}, "sacct": {}}
    monkeypatch.setattr(SlurmExecutor, "_squeue", staticmethod(lambda ids: answers["squeue"]))
    monkeypatch.setattr(SlurmExecutor, "_sacct", staticmethod(lambda jid: answers["sacct"].get(jid, "")))
    assert ex.poll() == {tasks[0]: ("running", ""), tasks[1]: ("pending", "")}
    answers["squeue"] = None  # squeue failed: nothing changes ...
    assert ex.poll() == {tasks[0]: ("running", ""), tasks[1]: ("pending", "")}
    # ... and a job that left the queue while accounting still says RUNNING stays running
    answers["squeue"], answers["sacct"] = {"2": "PENDING"}, {"1": "RUNNING"}
    assert ex.poll()[tasks[0]] == ("running", "")
    # COMPLETED but its status file not there yet (a shared filesystem): a few polls' patience, then one clear line
    answers["sacct"] = {"1": "COMPLETED"}
    for _ in range(4):
        assert ex.poll()[tasks[0]] == ("running", "")
    state, why = ex.poll()[tasks[0]]
    assert state == "failed" and "never appeared" in why and "share" in why
    # with its status file: done; a failed one says its exit code and SLURM's state
    ex.state[tasks[0]] = ("running", "")
    write_status(ex.logs[tasks[0]], "done", rc=0)
    assert ex.poll()[tasks[0]] == ("done", "")
    answers["squeue"], answers["sacct"] = {}, {"2": "TIMEOUT"}
    write_status(ex.logs[tasks[1]], "failed", rc=-15)
    assert ex.poll()[tasks[1]] == ("failed", "exit code -15, SLURM state TIMEOUT")
    # a job cancelled while pending, with no accounting: it left the queue without finishing
    ex.state[tasks[1]] = ("pending", "")
    ex.logs[tasks[1]].with_suffix(".status").unlink()
    answers["sacct"] = {}
    for _ in range(5):
        state, why = ex.poll()[tasks[1]]
    assert state == "failed" and "left the queue without finishing" in why
    # requeue on: a node failure is a step on the way back to the queue, not the end
    rq = SlurmExecutor(preset, requeue=True)
    rq.tasks, rq.logs, rq.ids, rq.state = tasks[:1], ex.logs, {tasks[0]: "9"}, {tasks[0]: ("running", "")}
    answers["squeue"] = {"9": "NODE_FAIL"}
    assert rq.poll()[tasks[0]] == ("pending", "")
    # squeue down for good: one line, not an endless wait
    answers["squeue"] = None
    with pytest.raises(ConfigError, match="squeue failed 20 times in a row"):
        for _ in range(25):
            ex.poll()


def test_cluster_runs_refuse_what_would_train_on_the_login_node():
    from overthink_lib.suite import run_suite

    with pytest.raises(ConfigError, match="--executor slurm with epochs: the jobs do not model it"):
        run_suite("smoke", only=["02"], params={"epochs": 3}, executor="slurm")
    with pytest.raises(ConfigError, match="unknown executor 'ssh'"):
        run_suite("smoke", only=["02"], executor="ssh")
    from overthink_lib import __main__ as cli

    assert cli.main(["reproduce", "--preset", "smoke", "--time", "1:00:00"]) == 2
    from overthink_lib.jobs import run_job

    with pytest.raises(ConfigError, match="job 'main' is not a loop of runs: it takes no --item"):
        run_job("smoke", "fashion_mnist", "main", "seed1")
    with pytest.raises(ConfigError, match="'params' must be an object"):
        JobSpec.from_json(json.dumps({"preset": get_preset("smoke").to_dict(), "params": [1]}))


def test_hours_come_from_each_jobs_declaration_and_refuse_what_they_do_not_know():
    """The estimate is each job's own declared cost: the anchor reproduces itself (200 epochs of the main CIFAR-100
    MSDNet at 32.7 s each), and a dataset or model without declared sizes is refused, never given another's hours."""
    from overthink_lib.experiments.declare import forward_macs
    from overthink_lib.jobs.estimate import task_hours

    paper = get_preset("paper")
    assert task_hours(paper, Task("main", "cifar100")) == pytest.approx(paper.training.epochs * 32.7 / 3600)
    assert task_hours(paper, Task("data", "cifar100")) == 0
    assert all(callable(j.run) and callable(j.hours) for j in JOBS)
    with pytest.raises(ConfigError, match="no cost estimate for dataset 'imagenette'"):
        task_hours(paper, Task("main", "imagenette"))
    with pytest.raises(ConfigError, match="no cost estimate for model 'nope'"):
        forward_macs("nope", (3, 32, 32))
