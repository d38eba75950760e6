"""Headline numbers of a run: notebooks :func:`put` them, the runner collects them into one table.

While ``reproduce`` executes a notebook it sets ``OVERTHINK_RESULTS`` to that notebook's part file
(``runs/<preset>/results/<notebook>.json``, deleted before the notebook starts, so no number outlives the run that
made it); :func:`put` writes there and does nothing when the variable is unset (a notebook opened in JupyterLab).
At the end, :func:`collect` merges the parts into ``runs/<preset>/results.json`` and ``results.md`` (and one long
table, ``results.csv``/``results.parquet``: :func:`tidy`) and the runner
prints the table. Values: a number, a string, or ``[estimate, low, high]`` (a 95 % CI); fractions stay fractions
(0.1234, not 12.34) — the ``unit`` given to :func:`put` says how the table shows them.

:func:`compare` checks a smoke run's results against the committed reference (``tests/reference/smoke.json``):
every metric present everywhere, every value exact on the kernel kinds it records (:func:`kind_of`);
:func:`write_reference` makes a new one from a run, :func:`add_kind` adds a kind.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .config import ConfigError, code_version
from .io import atomic_write_bytes

ENV = "OVERTHINK_RESULTS"
#: Set by ``reproduce`` for a notebook run on a dataset other than the preset's first: sections become ``<section>@<tag>``.
TAG_ENV = "OVERTHINK_RESULTS_TAG"
UNITS = {"%": 100.0, "pts": 100.0, "": 1.0, "s": 1.0, "×": 1.0, "MFLOPs": 1.0, "img/s": 1.0}
#: Sections never put in a reference: throughput depends on the machine, not on the code.
NOT_REFERENCED = ("speed",)


_HEADER = (
    "preset",
    "params",
    "code_version",
    "cpu",
    "cpu_id",
    "capability",
    "torch",
    "threads",
    "numerics",
    "malloc",
    "python",
    "timings",
    "meta",
)
#: Within this of the reference counts as the same number on the machine kind that made the reference.
EXACT_TOL = 1e-9


def plain(value: Any) -> Any:
    """numpy / torch scalars and tuples → JSON numbers and lists; NaN → None."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, int):
        return value
    value = float(value)
    return None if math.isnan(value) else value


def put(section: str, key: str, value: Any, label: str = "", unit: str = "") -> Any:
    """Record one headline number of the running notebook (no-op outside ``reproduce``); returns ``value``.

    Args:
        section: the table's group, e.g. ``"overthinking"``, ``"maxmin"``.
        key: the metric's name within it (``results.json[section][key]``).
        value: a number, a string, or ``(estimate, low, high)``.
        label: what the number is, for the table (default: the key).
        unit: ``"%"`` or ``"pts"`` for fractions shown ×100, ``""`` for plain numbers, or ``"s"``, ``"×"``,
            ``"MFLOPs"``.
    """
    if unit not in UNITS:
        raise ConfigError(f"unknown unit {unit!r}: use one of {', '.join(repr(u) for u in UNITS)}")
    if isinstance(value, (list, tuple)) and len(value) != 3:
        raise ConfigError(f"result {section}.{key}: give a number, a string or (estimate, low, high), got {value!r}")
    target = os.environ.get(ENV)
    if not target:
        return value
    tag = os.environ.get(TAG_ENV, "").strip()
    if tag:
        section = f"{section}@{tag}"
    path = Path(target)
    part = json.loads(path.read_text()) if path.exists() else {"values": {}, "meta": {}}
    part["values"].setdefault(section, {})[key] = plain(value)
    part["meta"][f"{section}.{key}"] = {"label": label or key, "unit": unit}
    part["code_version"] = code_version()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(part, indent=1).encode())
    return value


def put_all(section: str, headlines) -> None:
    """:func:`put` each ``(key, value, label, unit)`` of an analysis's headline numbers (a study's ``headlines``)."""
    for key, value, label, unit in headlines:
        put(section, key, value, label, unit)


def fmt_value(value: Any, unit: str = "") -> str:
    """How the table shows a value: fractions ×100 for ``%``/``pts``, CIs in brackets."""
    scale = UNITS.get(unit, 1.0)

    def num(v):
        if v is None:
            return "n/a"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, int) and scale == 1.0:
            return str(v)
        x = v * scale
        return f"{x:.2f}" if scale != 1.0 or abs(x) >= 1 else f"{x:.3g}"

    suffix = f" {unit}" if unit else ""
    if isinstance(value, list):
        return f"{num(value[0])}{suffix} [{num(value[1])}, {num(value[2])}]"
    return f"{num(value)}{suffix}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def collect(
    parts_dir: Path, out_dir: Path, *, preset: str, timings: list[dict[str, Any]], params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Merge every part under ``parts_dir`` (in notebook order) into ``out_dir/results.json`` and ``results.md``.

    ``timings``: the runner's rows of this run (notebook, seconds); notebooks not run this time keep their parts
    (from an earlier ``--only`` run), and the file names the code version each part came from. ``params``: the
    notebook parameters of the run beyond the preset (recorded as ``params``; empty for a plain run).
    """
    import platform

    import torch

    from . import malloc
    from .speed import cpu_info, numerics

    parts = sorted(Path(parts_dir).glob("*.json"))
    values: dict[str, dict[str, Any]] = {}
    meta: dict[str, dict[str, str]] = {}
    sources: dict[str, str] = {}
    for p in parts:
        part = json.loads(p.read_text())
        for section, kv in part["values"].items():
            values.setdefault(section, {}).update(kv)
        meta.update(part["meta"])
        sources[p.stem] = part.get("code_version", "?")
    seconds = {r["notebook"]: r["seconds"] for r in timings}
    res = {
        "preset": preset,
        "params": dict(params or {}),
        "code_version": code_version(),
        "cpu": cpu_info().describe(),
        "cpu_id": cpu_info().id,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "numerics": {**numerics(), "threads": torch.get_num_threads()},
        "malloc": malloc.state(),
        "python": platform.python_version(),
        **values,
        "timings": {"notebook_seconds": seconds, "total_seconds": round(sum(seconds.values()), 1)},
        "meta": {"labels": meta, "sources": sources},
    }
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / "results.json", (json.dumps(res, indent=1) + "\n").encode())
    atomic_write_bytes(out_dir / "results.md", markdown(res).encode())
    write_tidy(res, out_dir)
    return res


#: Columns of the long table of headline numbers (``results.csv`` / ``results.parquet``).
TIDY_COLUMNS = ("preset", "dataset", "section", "metric", "seed", "estimate", "low", "high", "text", "unit", "commit")


def tidy(res: dict[str, Any]):
    """Every headline number of a results dict as one long pandas table (:data:`TIDY_COLUMNS`), so runs of seeds,
    presets and datasets compare with one ``pd.concat``: a CI fills ``low``/``high``, a string fills ``text``;
    ``dataset`` comes from a section's ``@dataset`` tag, else the run's ``dataset`` parameter or the preset's first."""
    import pandas as pd

    from .config import PRESETS

    params = res.get("params", {})
    preset = PRESETS.get(res["preset"])
    main = params.get("dataset") or (preset.datasets[0] if preset is not None else "")
    seed = params.get("seed", preset.seed if preset is not None else None)
    units = res.get("meta", {}).get("labels", {})
    rows = []
    for section, kv in res.items():
        if section in _HEADER or not isinstance(kv, dict):
            continue
        base, _, tag = section.partition("@")
        for key, value in kv.items():
            est = low = high = None
            text = None
            if isinstance(value, list):
                est, low, high = value
            elif isinstance(value, str):
                text = value
            else:
                est = value
            rows.append(
                {
                    "preset": res["preset"],
                    "dataset": tag or main,
                    "section": base,
                    "metric": key,
                    "seed": seed,
                    "estimate": est,
                    "low": low,
                    "high": high,
                    "text": text,
                    "unit": units.get(f"{section}.{key}", {}).get("unit", ""),
                    "commit": res.get("code_version", ""),
                }
            )
    frame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    for col in ("estimate", "low", "high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def write_tidy(res: dict[str, Any], out_dir: Path) -> None:
    """``results.csv`` and ``results.parquet`` beside ``results.json`` (atomic writes)."""
    import io

    frame = tidy(res)
    atomic_write_bytes(Path(out_dir) / "results.csv", frame.to_csv(index=False).encode())
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(Path(out_dir) / "results.parquet", buf.getvalue())


def rows(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, what, value) rows of a results dict, in file order, timings last."""
    labels = res.get("meta", {}).get("labels", {})
    out = []
    for section, kv in res.items():
        if section in _HEADER:
            continue
        for key, value in kv.items():
            m = labels.get(f"{section}.{key}", {})
            out.append((section, m.get("label", key), fmt_value(value, m.get("unit", ""))))
    for nb, s in res.get("timings", {}).get("notebook_seconds", {}).items():
        out.append(("timings", nb, f"{s:.0f} s"))
    if "timings" in res:
        out.append(("timings", "all notebooks", f"{res['timings']['total_seconds']:.0f} s"))
    return out


def markdown(res: dict[str, Any]) -> str:
    given = ", ".join(f"{k}={v!r}" for k, v in sorted(res.get("params", {}).items()))
    head = (
        f"# Results of the `{res['preset']}` run{f' with {given}' if given else ''}\n\n"
        f"code {res['code_version']}, torch {res['torch']}, "
        f"{res['threads']} threads, malloc {res.get('malloc', 'default')}, CPU {res['cpu']}. 95 % CIs in brackets.\n\n"
    )
    lines = ["| section | what | value |", "|---|---|---|"]
    lines += [f"| {s} | {w} | {v} |" for s, w, v in rows(res)]
    mixed = sorted(set(res.get("meta", {}).get("sources", {}).values()))
    note = f"\nParts come from more than one code version: {', '.join(mixed)}.\n" if len(mixed) > 1 else ""
    return head + "\n".join(lines) + "\n" + note


def table(res: dict[str, Any]) -> str:
    """The same rows as plain aligned text, for the terminal."""
    r = rows(res)
    if not r:
        return "(no headline numbers were recorded)"
    w0, w1 = max(len(a) for a, _, _ in r), max(len(b) for _, b, _ in r)
    return "\n".join(f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in r)


def flat(res: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a results dict as ``{"<section>.<key>": value}`` (the run's description left out)."""
    return {f"{s}.{k}": v for s, kv in res.items() if s not in _HEADER and isinstance(kv, dict) for k, v in kv.items()}


def kind_of(res: dict[str, Any]) -> dict[str, Any]:
    """What selected the kernels of the run that wrote ``res`` (:func:`~overthink_lib.speed.numerics` and the
    runner's thread count): two runs with the same kind give the same bits; ``{}`` for a file from before it was
    recorded (no kind matches it)."""
    return dict(res.get("numerics") or {})


def recorded_kind(res: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any] | None:
    """The entry of ``reference["kinds"]`` whose kernels are ``res``'s, or None (a kind nobody recorded)."""
    mine = kind_of(res)
    return next((k for k in reference.get("kinds", []) if mine and k.get("numerics") == mine), None)


def not_compared_line(res: dict[str, Any]) -> str:
    """The one line a machine of an unrecorded kind prints instead of comparing trained numbers."""
    from .speed import describe_numerics

    return (
        f"smoke reference: exact trained numbers not compared on this kind ({describe_numerics(kind_of(res))}): "
        "no reference run recorded it; the analysis regression and the learning check still ran "
        "(record it with `python -m overthink_lib reference --add-kind` after a smoke run)"
    )


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, list) or isinstance(have, list):
        return (
            isinstance(have, list)
            and isinstance(want, list)
            and len(have) == len(want)
            and all(_same(a, b) for a, b in zip(have, want, strict=True))
        )
    if isinstance(want, (str, bool)) or isinstance(have, (str, bool)) or want is None or have is None:
        return have == want
    return abs(have - want) <= EXACT_TOL


def compare(res: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """``res`` (a smoke run's results.json) against the committed reference: one line per problem, empty when all hold.

    Everywhere: every metric the reference names is in ``res`` (a headline number that vanished is a drift). On a
    machine kind the reference records (:func:`recorded_kind`: the same torch build, ATen capability, oneDNN ISA,
    MKL path and threads), every number must match to :data:`EXACT_TOL` and every string exactly: the same code
    trains the same networks bit for bit there. On another kind the trained numbers are not compared at all (one
    line, :func:`not_compared_line`): a network that has not learned moves by several points between kernels, and a
    tolerance wide enough for that catches nothing. The analyses of those numbers are checked on every kind by the
    analysis regression (``tests/test_analysis_regression.py``), training by ``tests/test_learning.py``.
    """
    got = flat(res)
    problems = [
        f"{name}: in the reference but not in this run's results" for name in reference["metrics"] if name not in got
    ]
    kind = recorded_kind(res, reference)
    if kind is None:
        return problems
    for name, want in kind["values"].items():
        if name in got and not _same(got[name], want):
            problems.append(
                f"{name}: {got[name]!r} here, reference {want!r} (same kernels, recorded as {kind['label']}: must match)"
            )
    return problems


def _reference_values(res: dict[str, Any]) -> dict[str, Any]:
    return {n: v for n, v in flat(res).items() if n.split(".")[0] not in NOT_REFERENCED}


def _kind_entry(res: dict[str, Any], label: str | None) -> dict[str, Any]:
    if not kind_of(res):
        raise ConfigError(
            "this results.json records no kernel kind (numerics): run the smoke suite again with this code"
        )
    return {
        "label": label or res.get("cpu", "?"),
        "numerics": kind_of(res),
        "code_version": res.get("code_version"),
        "values": _reference_values(res),
    }


def write_reference(res: dict[str, Any], path: Path, *, label: str | None = None) -> dict[str, Any]:
    """A new reference from ``res``: its metrics, exact on its kernel kind only. Every other kind's values belong to
    the numbers being replaced and are dropped (``make reference``, after a deliberate change)."""
    ref = {
        "preset": res["preset"],
        "what": "the smoke suite's headline numbers: every one must exist everywhere; exact on each kernel kind "
        "recorded here (results.compare)",
        "how": "make reference (a new reference from this machine); python -m overthink_lib reference --add-kind "
        "(this kind beside the others, same code and numbers)",
        "metrics": sorted(_reference_values(res)),
        "kinds": [_kind_entry(res, label)],
    }
    atomic_write_bytes(Path(path), (json.dumps(ref, indent=1) + "\n").encode())
    return ref


def add_kind(res: dict[str, Any], path: Path, *, label: str | None = None) -> dict[str, Any]:
    """Add ``res``, the reference's own code run on another kernel kind, to the reference at ``path``: exact there
    from now on; nothing else changes. Refused when the run lacks a metric of the reference or has one it lacks (a
    reference of other code: ``make reference``); a kind already recorded is replaced by this run."""
    ref = json.loads(Path(path).read_text())
    mine = _reference_values(res)
    missing, extra = sorted(set(ref["metrics"]) - set(mine)), sorted(set(mine) - set(ref["metrics"]))
    if missing or extra:
        first = (missing or extra)[0]
        raise ConfigError(
            f"the run {'lacks' if missing else 'has'} {len(missing or extra)} metric(s) {'of' if missing else 'not in'} "
            f"{path} (first: {first}): that is other code — make a new reference (make reference)"
        )
    entry = _kind_entry(res, label)
    ref["kinds"] = [k for k in ref.get("kinds", []) if k.get("numerics") != entry["numerics"]] + [entry]
    atomic_write_bytes(Path(path), (json.dumps(ref, indent=1) + "\n").encode())
    return ref
