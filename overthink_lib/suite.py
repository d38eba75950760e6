"""The driver: run the notebook suite headless with papermill (jobs first, then every notebook), export HTML.

papermill silently accepts parameters a notebook does not declare; we do not. Before a notebook runs, every
parameter given is checked against the notebook's ``parameters`` cell (name and type) and its declaration; inside
the notebook :func:`overthink_lib.notebooks.start` checks the values again (the kernel side).
"""

from __future__ import annotations

import ast
import contextlib
import csv
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .config import ROOT, ConfigError, get_preset
from .experiments import PARAMS
from .notebooks import check_values, declared_parameters, record_figure_dir, variant_dir

NOTEBOOK_DIR = ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook of the suite raised; the message names the notebook, the cell and the error."""


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The suite, in order: ``notebooks/NN_*.ipynb``."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


_TYPES = {"str": (str,), "int": (int,), "float": (float, int), "bool": (bool,)}


def check_declared(path: Path, params: dict[str, Any]) -> None:
    """Unknown or ill-typed parameters for notebook ``path`` → ConfigError naming it and what it accepts."""
    declared = declared_parameters(path)
    for name, value in params.items():
        if name not in declared:
            raise ConfigError(
                f"notebook {Path(path).name} has no parameter {name!r}; it takes: {', '.join(sorted(declared))}"
            )
        kind = declared[name].get("inferred_type_name", "None")
        if kind == "None":  # no annotation in the cell: the type of the default's literal
            try:
                kind = type(ast.literal_eval(declared[name]["default"])).__name__
            except (ValueError, SyntaxError):
                kind = "None"
        ok = _TYPES.get(kind)
        if ok and (not isinstance(value, ok) or (kind != "bool" and isinstance(value, bool))):
            raise ConfigError(
                f"notebook {Path(path).name}: parameter {name!r} must be {kind} "
                f"(default {declared[name]['default']}), got {value!r}"
            )


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value`` from the command line; the value is a Python literal when it parses as one, else a string."""
    if "=" not in text:
        raise ConfigError(f"parameter {text!r} must look like name=value")
    name, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name.strip(), value


def _running_cell(executed: Path) -> str:
    """The cell a timeout stopped in a partly executed notebook ("?" when it cannot tell)."""
    import json

    try:
        cells = json.loads(Path(executed).read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return "?"
    for i, c in enumerate(cells):  # papermill marks the stopped cell with an error output (or leaves it running)
        if c.get("metadata", {}).get("papermill", {}).get("status") == "running" or any(
            o.get("output_type") == "error" for o in c.get("outputs", [])
        ):
            return str(i)
    return "?"


class _Prefixed:
    """A text stream that writes each complete line to ``stream`` with a prefix (the kernel's output, streamed)."""

    def __init__(self, stream, prefix: str):
        self.stream, self.prefix, self.buf = stream, prefix, ""

    def write(self, text: str) -> int:
        self.buf += text.replace("\r", "\n")
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if line.strip():
                self.stream.write(f"{self.prefix}{line}\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _kernel_env(values: dict[str, str]):
    """Environment variables the notebook's kernel inherits (papermill starts it from this process)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _with_plotly_html(nb):
    """Give every plotly output an HTML rendering for the export: the first carries plotly.js, the rest reuse it."""
    import plotly.io as pio

    first = True
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME in data and "text/html" not in data:
                data["text/html"] = pio.to_html(data[PLOTLY_MIME], include_plotlyjs=first, full_html=False)
                first = False
    return nb


def export_notebooks(executed: list[Path], html_dir: Path, res: dict[str, Any] | None = None) -> Path:
    """Executed notebooks → ``html_dir/<name>.html`` (outputs and images embedded; plotly figures carry their own
    plotly.js, so nothing is fetched) and ``html_dir/index.html`` linking them beside the headline numbers."""
    import html

    import nbformat
    from nbconvert import HTMLExporter

    from .io import atomic_write_bytes

    html_dir = Path(html_dir)
    html_dir.mkdir(parents=True, exist_ok=True)
    # no CDN: MathJax, require.js and mermaid are left out (their URLs empty; the empty script tags removed)
    exporter = HTMLExporter(
        template_name="lab",
        mathjax_url="",
        require_js_url="",
        mermaid_js_url="",
        mermaid_layout_elk_js_url="",
        jquery_url="",
        widget_renderer_url="",
        jupyter_widgets_base_url="",
    )
    for nb in executed:
        body, _ = exporter.from_notebook_node(_with_plotly_html(nbformat.read(str(nb), as_version=4)))
        atomic_write_bytes(html_dir / f"{nb.stem}.html", body.replace('<script src=""></script>', "").encode())
    links = [
        f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>'
        for p in sorted(html_dir.glob("[0-9][0-9]_*.html"))
    ]
    rows_html = ""
    if res is not None:
        from .results import rows

        rows_html = (
            "<h2>Headline numbers</h2><table><tr><th>section</th><th>what</th><th>value</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
                for a, b, c in rows(res)
            )
            + "</table>"
        )
        meta = (
            f"<p>preset <b>{html.escape(res['preset'])}</b>, code {html.escape(res['code_version'])}, torch "
            f"{html.escape(res['torch'])}, CPU {html.escape(res['cpu'])}; 95 % CIs in brackets.</p>"
        )
    else:
        meta = ""
    page = (
        "<!doctype html><meta charset='utf-8'><title>overthink results</title><style>body{font-family:sans-serif;"
        "max-width:60em;margin:2em auto}td,th{padding:2px 10px;text-align:left}tr:nth-child(even){background:#f3f3f3}"
        "</style><h1>overthink: executed notebooks</h1>" + meta + "<ul>" + "".join(links) + "</ul>" + rows_html
    )
    index = html_dir / "index.html"
    atomic_write_bytes(index, page.encode())
    return index


def _run_books(
    jobs, runner, resolved, all_params, out_dir, parts_dir, timeout, kernel, progress
) -> list[dict[str, Any]]:
    """Execute (notebook, dataset) pairs in order; each waits for the jobs it reads (``runner``, or None)."""
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    from .results import ENV as RESULTS_ENV
    from .results import TAG_ENV as RESULTS_TAG_ENV
    from .train import HEADLESS_ENV

    rows = []
    for book, dataset in jobs:
        other = dataset is not None and dataset != resolved.datasets[0]
        stem = f"{book.stem}-{dataset}" if other else book.stem
        out = out_dir / f"{stem}{book.suffix}"
        part = parts_dir / f"{stem}.json"
        part.unlink(missing_ok=True)  # this notebook's numbers come from this run or not at all
        book_params = dict(all_params)
        if dataset is not None:
            book_params["dataset"] = dataset
        if "show_widgets" in declared_parameters(book) and "show_widgets" not in book_params:
            book_params["show_widgets"] = False  # headless: no frontend could show a widget (see README)
        if progress:
            print(f"▶ {out.name}", flush=True)
        if runner is not None:
            waited = runner.wait_for(book.name, dataset)
            if progress and waited > 1:
                print(f"  (waited {waited:.0f} s for the jobs it reads)", flush=True)
        t0 = time.perf_counter()
        env = {
            RESULTS_ENV: str(part),
            "TQDM_DISABLE": "1",
            HEADLESS_ENV: "1",
            RESULTS_TAG_ENV: dataset if other else "",
        }
        if runner is not None and runner.busy():  # share the cores with the job workers (records: thread-independent)
            env["OMP_NUM_THREADS"] = "1"
        try:
            with _kernel_env(env):
                papermill.execute_notebook(
                    str(book),
                    str(out),
                    parameters=book_params,
                    kernel_name=kernel,
                    cwd=str(book.parent),
                    progress_bar=False,
                    log_output=False,
                    execution_timeout=timeout,
                    # the kernel app's own log (a TCP-on-localhost warning per notebook) is not the notebook's output
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                    **(
                        {
                            "stdout_file": _Prefixed(sys.stdout, f"  [{book.name[:2]}] "),
                            "stderr_file": _Prefixed(sys.stderr, f"  [{book.name[:2]}] "),
                        }
                        if progress
                        else {}
                    ),
                )
        except CellTimeoutError:
            raise NotebookFailed(
                f"{book.name}: cell {_running_cell(out)} ran past the preset's cell timeout of "
                f"{timeout} s and was stopped — executed copy up to there: {out}"
            ) from None
        except PapermillExecutionError as err:
            raise NotebookFailed(
                f"{book.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
                f"{err.ename}: {err.evalue.splitlines()[0] if err.evalue else ''} — executed copy "
                f"with the traceback: {out}"
            ) from None
        dt = time.perf_counter() - t0
        rows.append({"notebook": out.name, "seconds": round(dt, 1), "output": str(out)})
        print(f"  {out.name}: {dt:.1f} s", flush=True)
    return rows


def _make_executor(kind: str, preset, slurm: dict[str, Any] | None, params: dict[str, Any]):
    from .jobs import LocalExecutor, SlurmExecutor, slurm_available

    if kind == "local":
        return LocalExecutor(preset)
    why = slurm_available()
    if why:
        raise ConfigError(f"--executor slurm: {why}")
    return SlurmExecutor(preset, **(slurm or {}), params=params)


def run_suite(
    preset: str,
    *,
    only: list[str] | None = None,
    params: dict[str, Any] | None = None,
    kernel: str = "python3",
    progress: bool = True,
    folder: Path = NOTEBOOK_DIR,
    out_dir: Path | None = None,
    cell_timeout: int | None = None,
    export_html: bool = True,
    datasets: list[str] | None = None,
    prefetch: bool = True,
    executor: str = "local",
    slurm: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Execute the suite's notebooks in order with papermill; stop at the first failure.

    Args:
        preset: preset name, injected as the ``preset`` parameter of every notebook.
        only: notebook name prefixes to run (e.g. ``["01"]``); all when None.
        params: extra parameters, each checked against every notebook that runs (so pass only shared ones).
        folder: where the numbered notebooks are (default ``notebooks/``).
        out_dir: where the executed copies and their timings go (default ``runs/<preset>/notebooks/``; a given
            record's: ``runs/<preset>/record-notebooks/<name>/``).
        cell_timeout: seconds a cell may run (default the preset's ``cell_timeout``); past it the run stops with
            :class:`NotebookFailed` naming the notebook and the cell.
        progress: stream what each notebook prints (epoch lines with loss, accuracy and ETA while a network
            trains), each line prefixed with the notebook's number.
        export_html: write ``html/`` beside the results: every executed notebook as a self-contained page and an
            ``index.html``.
        prefetch: first train the suite's networks in parallel worker processes (:mod:`overthink_lib.jobs`; only
            for a preset that pins ``training.threads`` and when no parameter beyond ``preset``/``dataset`` is given);
            their timings go to ``jobs_timings.csv`` beside the notebook timings.
        executor: where the jobs run: ``local`` (worker processes here; only for a preset that pins
            ``training.threads``) or ``slurm`` (every task its own SLURM job, :class:`~overthink_lib.jobs.SlurmExecutor`,
            with ``slurm``'s options: partition, time_min, gpus, cpus, extra, requeue; the notebooks the preset leaves
            out for its budget run too, and loops of independent runs fan out into a job per run).
        dry_run: print the planned jobs (dependencies, resources, estimated hours) and run nothing.
        datasets: the datasets to run (default: every dataset of the preset). A notebook that declares a
            ``dataset`` parameter runs once per dataset; for any dataset but the preset's first its executed copy,
            results part and figures carry the dataset's name (``07_imta-svhn.ipynb``, section ``imta@svhn``,
            ``<figures>/svhn/``).
    Notebooks that declare ``show_widgets`` get ``show_widgets=False`` unless it is given: nothing headless
    can display a widget. At the end the headline numbers the notebooks recorded (:mod:`overthink_lib.results`)
    are printed and written to ``results.json`` and ``results.md`` (``runs/<preset>/``, or beside the executed
    copies of a given record).
    Returns:
        One row per notebook: name, seconds, output path. Also written to ``runs/<preset>/notebook_timings.csv``.
    """
    resolved = get_preset(preset)
    if executor not in ("local", "slurm"):
        raise ConfigError(f"unknown executor {executor!r}: choose local or slurm")
    if executor == "slurm" and not prefetch:
        raise ConfigError("the slurm executor runs the jobs: it cannot go with prefetch off")
    if dry_run and not prefetch:
        raise ConfigError("--dry-run shows the planned jobs: it cannot go with prefetch off")
    books = _chosen_books(resolved, folder, only, executor)
    all_params, run_sets = _suite_params(resolved, params, datasets)
    for book in books:  # validate everything before running anything: names and types, then every value
        check_declared(book, all_params)
    check_values(all_params)
    where = _places(resolved, all_params, out_dir)
    print(
        f"running {len(books)} notebook(s) with preset {preset!r}; executed copies → {where.out_dir}, figures → "
        f"{where.fig_dir}",
        flush=True,
    )
    # a notebook that declares `dataset` runs once per dataset
    jobs = [(b, ds) for b in books for ds in (run_sets if "dataset" in declared_parameters(b) else [None])]
    runner = None
    if prefetch:
        runner = _start_jobs(resolved, jobs, all_params, executor, slurm, progress, where.base / "jobs", dry_run)
        if dry_run:
            return []
    timeout = resolved.cell_timeout if cell_timeout is None else cell_timeout
    try:
        rows = _run_books(jobs, runner, resolved, all_params, where.out_dir, where.parts_dir, timeout, kernel, progress)
    except BaseException:
        if runner is not None:
            runner.stop()
        raise
    ahead = runner.finish() if runner is not None else []
    _summarise(rows, ahead, where, preset, all_params, export_html)
    return rows


def _chosen_books(resolved, folder: Path, only: list[str] | None, executor: str) -> list[Path]:
    """The notebooks to run: ``only``'s, else the suite less what the preset leaves out on one machine."""
    books = list_notebooks(folder)
    if not only and resolved.suite_skip and executor == "slurm":
        print(
            f"on a cluster the suite includes {', '.join(resolved.suite_skip)} (one machine leaves it out)", flush=True
        )
    elif not only and resolved.suite_skip:
        skipped = [b.name for b in books if b.name.startswith(resolved.suite_skip)]
        books = [b for b in books if not b.name.startswith(resolved.suite_skip)]
        if skipped:
            print(
                f"preset {resolved.name!r} leaves out {', '.join(skipped)} (too long for its budget): run it with "
                f"--only {' --only '.join(p for p in resolved.suite_skip)}",
                flush=True,
            )
    if only:
        books = [b for b in books if any(b.name.startswith(o) for o in only)]
        if not books:
            raise ConfigError(
                f"no notebook matches {only}; the suite is: {', '.join(b.name for b in list_notebooks(folder))}"
            )
    return books


def _suite_params(
    resolved, params: dict[str, Any] | None, datasets: list[str] | None
) -> tuple[dict[str, Any], list[str]]:
    """Every parameter the notebooks get (``preset`` first; a given record's paths made absolute) and the datasets
    to run (``datasets``, a ``dataset`` parameter, or the preset's), each checked."""
    preset = resolved.name
    if "preset" in (params or {}) and params["preset"] != preset:
        raise ConfigError(
            f"the preset is given twice ({preset!r} and the parameter preset={params['preset']!r}): "
            "give it once, with --preset"
        )
    all_params = {"preset": preset, **(params or {})}
    if str(all_params.get("record") or "").strip():  # notebooks run in notebooks/: paths relative to the caller
        all_params["record"] = ",".join(
            str(Path(part.strip()).expanduser().resolve()) for part in str(all_params["record"]).split(",")
        )
    if "dataset" in all_params:  # one dataset named as a parameter: that one only ("": the preset's first)
        if datasets:
            raise ConfigError("give the datasets either with --datasets or as the parameter dataset, not both")
        datasets = [all_params.pop("dataset") or resolved.datasets[0]]
    run_sets = list(datasets) if datasets else list(resolved.datasets)
    for name in run_sets:
        PARAMS["dataset"].check(name)
        if not name:
            raise ConfigError("an empty dataset name in the list of datasets: leave it out")
    return all_params, run_sets


def _places(resolved, all_params: dict[str, Any], out_dir: Path | None) -> SimpleNamespace:
    """Where a run writes: ``base`` (the preset's run folder, or a variant's), ``out_dir`` (executed copies),
    ``summary_dir`` (results, html/, timings), ``parts_dir`` (each notebook's results part), ``fig_dir``."""
    given_record = str(all_params.get("record") or "").strip()
    variant = variant_dir(resolved, all_params)  # overrides: nothing of the preset's own outputs is touched
    base = resolved.run_dir if variant is None else variant
    own = out_dir is None and not given_record
    if out_dir is None:
        out_dir = base / "notebooks"
        if given_record:  # a given record: executed copies apart from the preset's
            out_dir = base / "record-notebooks" / record_figure_dir(Path("."), all_params["record"]).name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_dir = base if own else out_dir
    fig_dir = resolved.figure_dir if variant is None else variant / "figures"
    if given_record:
        fig_dir = record_figure_dir(fig_dir, all_params["record"])
    return SimpleNamespace(
        base=base, out_dir=out_dir, summary_dir=summary_dir, parts_dir=summary_dir / "results", fig_dir=fig_dir
    )


def _start_jobs(resolved, jobs, all_params, executor, slurm, progress, log_dir: Path, dry_run: bool):
    """Plan the jobs the notebooks ``jobs`` read and start them (a :class:`~overthink_lib.jobs.JobRunner`; None when
    none is planned); with ``dry_run`` print the plan instead."""
    from .jobs import JobRunner, JobSpec, job_params, plan
    from .jobs.graph import unmodelled

    tasks = plan(
        resolved,
        [(b.name, ds) for b, ds in jobs],
        all_params,
        fan_out=executor == "slurm",
        need_threads=executor == "local",
    )
    given = unmodelled(all_params)
    if given and executor == "slurm":
        raise ConfigError(
            f"--executor slurm with {', '.join(given)}: the jobs do not model {'it' if len(given) == 1 else 'them'}, "
            "so every network would train here, on the submitting machine; run it with the local executor"
        )
    if given:
        print(f"parameters given ({', '.join(given)}): the notebooks train what they need themselves", flush=True)
    spec = JobSpec(resolved, job_params(all_params))
    if dry_run:
        from .jobs.plan_view import describe_plan

        print(describe_plan(resolved, spec, tasks, executor, slurm or {}, all_params), flush=True)
        return None
    if not tasks:
        return None
    executor_ = _make_executor(executor, resolved, slurm, spec.params)
    return JobRunner(resolved, spec, tasks, executor_, progress=progress, log_dir=log_dir).start()


def _summarise(rows, ahead, where: SimpleNamespace, preset: str, all_params: dict[str, Any], export_html: bool):
    """The timings (CSV), the headline numbers the notebooks recorded (results.json/.md, printed) and the HTML."""
    from .results import collect, table

    summary_dir = where.summary_dir
    timings = summary_dir / "notebook_timings.csv"
    with open(timings, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["notebook", "seconds", "output"])
        w.writeheader()
        w.writerows(rows)
    if ahead:
        with open(summary_dir / "jobs_timings.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["job", "dataset", "item", "seconds", "log", "job_id"])
            w.writeheader()
            w.writerows(ahead)
    total = sum(r["seconds"] for r in rows)
    res = collect(
        where.parts_dir,
        summary_dir,
        preset=preset,
        timings=rows,
        params={k: v for k, v in all_params.items() if k != "preset"},
    )
    print(
        f"done: {len(rows)} notebook(s) in {total:.1f} s; timings in {timings}\n\nheadline numbers "
        f"(95 % CIs in brackets; {summary_dir / 'results.json'}, {summary_dir / 'results.md'}):\n{table(res)}",
        flush=True,
    )
    if export_html:
        index = export_notebooks([Path(r["output"]) for r in rows], summary_dir / "html", res)
        print(f"readable copies of the executed notebooks (images embedded, no server needed): {index}", flush=True)
