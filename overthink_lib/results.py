"""Headline numbers of a run: notebooks :func:`put` them, the runner collects them into one table.

While ``reproduce`` executes a notebook it sets ``OVERTHINK_RESULTS`` to that notebook's part file
(``runs/<preset>/results/<notebook>.json``, deleted before the notebook starts, so no number outlives the run that
made it); :func:`put` writes there and does nothing when the variable is unset (a notebook opened in JupyterLab).
At the end, :func:`collect` merges the parts into ``runs/<preset>/results.json`` and ``results.md`` (and one long
table, ``results.csv``/``results.parquet``: :func:`tidy`) and the runner
prints the table. Values: a number, a string, or ``[estimate, low, high]`` (a 95 % CI); fractions stay fractions
(0.1234, not 12.34) — the ``unit`` given to :func:`put` says how the table shows them.

:func:`compare` checks a results file against a committed reference with per-metric tolerances (the CI's
regression check); :func:`write_reference` makes or refreshes that reference from a run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .config import ConfigError, atomic_write_bytes, code_version

ENV = "OVERTHINK_RESULTS"
#: Set by ``reproduce`` for a notebook run on a dataset other than the preset's first: sections become ``<section>@<tag>``.
TAG_ENV = "OVERTHINK_RESULTS_TAG"
UNITS = {"%": 100.0, "pts": 100.0, "": 1.0, "s": 1.0, "×": 1.0, "MFLOPs": 1.0, "img/s": 1.0}
#: The tolerance a new reference metric gets: absolute, in the metric's own scale (0.03 = 3 points of a fraction).
DEFAULT_ABS_TOL = 0.03
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
    "malloc",
    "python",
    "timings",
    "meta",
)
_KIND_KEYS = ("cpu", "cpu_id", "capability", "torch", "threads")
#: Within this of the reference counts as the same number on the machine kind that made the reference.
EXACT_TOL = 1e-9


def _plain(value: Any) -> Any:
    """numpy / torch scalars and tuples → JSON numbers and lists; NaN → None."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
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
    part["values"].setdefault(section, {})[key] = _plain(value)
    part["meta"][f"{section}.{key}"] = {"label": label or key, "unit": unit}
    part["code_version"] = code_version()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(part, indent=1).encode())
    return value


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
    from .speed import cpu_info

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


def _flat(res: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, kv in res.items() if s not in _HEADER and isinstance(kv, dict) for k, v in kv.items()}


def same_kind(res: dict[str, Any], reference: dict[str, Any]) -> bool:
    """Whether ``res`` comes from the machine kind, kernel capability and torch build that made the reference
    (then a deterministic run must give the same numbers; elsewhere floats differ and training diverges)."""
    return _kind_matches(res, reference.get("exact_on") or {})


def _kind_matches(res: dict[str, Any], on: dict[str, Any]) -> bool:
    return bool(on) and all(res.get(k) == on.get(k) for k in _KIND_KEYS)


def _recorded_kind(res: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any] | None:
    """The entry of ``reference["kinds"]`` (further machine kinds added by :func:`add_kind`) that ``res`` comes from."""
    return next((k for k in reference.get("kinds", []) if _kind_matches(res, k["exact_on"])), None)


def compare(res: dict[str, Any], reference: dict[str, Any], exact: bool | None = None) -> list[str]:
    """Every metric of ``reference["metrics"]`` checked against ``res``: one line per drift, empty when all hold.

    On the kind of machine that made the reference (:func:`same_kind`; or ``exact=True``) every number must match
    to :data:`EXACT_TOL` and every string exactly; so on a kind :func:`add_kind` recorded, against that kind's own
    values. On any other kind, a number may differ by its ``abs_tol`` (set from runs on other CPU kinds, see
    :func:`write_reference` and :func:`add_kind`) and a string is checked only when every kind agreed on it
    (``"strict": true``). For ``[estimate, low, high]`` the estimate is compared. A missing metric is a drift.
    """
    kind = None if exact is not None else _recorded_kind(res, reference)
    exact = (same_kind(res, reference) or kind is not None) if exact is None else exact
    got = _flat(res)
    problems = []
    for name, ref in reference["metrics"].items():
        if name not in got:
            problems.append(f"{name}: in the reference ({ref['value']!r}) but not in this run's results")
            continue
        want, have = (kind["values"] if kind is not None else {}).get(name, ref["value"]), got[name]
        # a metric added from a run on another kind (add_metrics) is exact only there: elsewhere, its tolerance
        exact_here = exact and not (
            "measured_on" in ref
            and not _kind_matches(res, ref["measured_on"])
            and name not in (kind or {}).get("values", {})
        )
        if isinstance(want, list):
            want = want[0]
        if isinstance(have, list):
            have = have[0]
        if isinstance(want, str) or isinstance(have, str) or want is None or have is None:
            if want != have and (exact_here or ref.get("strict", True)):
                problems.append(
                    f"{name}: {have!r} here, reference {want!r}"
                    + (f" (recorded for {kind['exact_on'].get('cpu')})" if kind else "")
                )
            continue
        tol = EXACT_TOL if exact_here else ref["abs_tol"]
        if abs(have - want) > tol:
            how = f"tolerance ±{tol:.3g} across CPU kinds"
            if exact_here:
                how = "same machine kind: must match" + (
                    f", recorded for {kind['exact_on'].get('cpu')}" if kind else ""
                )
            problems.append(f"{name}: {have:.6g} here, reference {want:.6g} ({how}, off by {have - want:+.4g})")
    return problems


def write_reference(
    res: dict[str, Any], path: Path, *, keep: dict[str, Any] | None = None, other: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A reference from a results dict: every metric but :data:`NOT_REFERENCED`, exact on ``res``'s machine kind.

    Cross-kind tolerances: with ``other`` (the same run on another CPU kind) each number's ``abs_tol`` is twice the
    measured difference, at least :data:`DEFAULT_ABS_TOL`, and a string is ``strict`` only when both agree;
    without it, tolerances are kept from ``keep`` (the old reference) or default.
    """
    old = (keep or {}).get("metrics", {})
    theirs = _flat(other) if other is not None else {}
    metrics = {}
    for name, value in _flat(res).items():
        if name.split(".")[0] in NOT_REFERENCED:
            continue
        entry = {"value": value, "abs_tol": old.get(name, {}).get("abs_tol", DEFAULT_ABS_TOL)}
        if "strict" in old.get(name, {}):
            entry["strict"] = old[name]["strict"]
        if name in theirs:
            a, b = (v[0] if isinstance(v, list) else v for v in (value, theirs[name]))
            if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
                entry["strict"] = a == b
            else:
                entry["abs_tol"] = max(DEFAULT_ABS_TOL, math.ceil(round(200 * abs(a - b), 6)) / 100)
                entry["other_kind_value"] = b
        metrics[name] = entry
    ref = {
        "preset": res["preset"],
        "code_version": res["code_version"],
        "exact_on": {k: res.get(k) for k in _KIND_KEYS},
        "tolerances_from": (
            f"{other.get('cpu')} with kernel capability {other.get('capability')}"
            if other is not None
            else (keep or {}).get("tolerances_from", "defaults")
        ),
        "metrics": metrics,
        "how": "make reference (reruns smoke, then python -m overthink_lib reference --preset smoke)",
    }
    # other kinds' exact values (add_kind) belong to the numbers being replaced: they are not carried over
    atomic_write_bytes(Path(path), (json.dumps(ref, indent=1) + "\n").encode())
    return ref


def add_metrics(res: dict[str, Any], path: Path, other: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add the metrics of ``res`` that the reference at ``path`` lacks (new headline numbers), leaving every other
    entry as it is: exact on ``res``'s machine kind, within a tolerance on the others (strings: checked only there)
    until a run of theirs is added (``make reference`` on the reference's own kind, :func:`add_kind` on another).
    The tolerance is :data:`DEFAULT_ABS_TOL`, or with ``other`` (the same run on another CPU kind) twice the
    measured difference, at least that. Refused when one of the reference's own metrics moved (``make reference``)."""
    ref = json.loads(Path(path).read_text())
    moved = compare(res, ref)
    if moved:
        raise ConfigError(f"{len(moved)} metric(s) of {path} moved (first: {moved[0]}): that is `make reference`")
    mine = {n: v for n, v in _flat(res).items() if n.split(".")[0] not in NOT_REFERENCED}
    new = sorted(set(mine) - set(ref["metrics"]))
    if not new:
        raise ConfigError(f"the run has no metric that {path} lacks: nothing to add")
    on = {k: res.get(k) for k in _KIND_KEYS}
    own = same_kind(res, ref)
    kind = _recorded_kind(res, ref)
    theirs = _flat(other) if other is not None else {}
    for name in new:
        value = mine[name]
        entry: dict[str, Any] = {"value": value, "abs_tol": DEFAULT_ABS_TOL}
        a, b = (v[0] if isinstance(v, list) else v for v in (value, theirs.get(name)))
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            entry["abs_tol"] = max(DEFAULT_ABS_TOL, math.ceil(round(200 * abs(a - b), 6)) / 100)
            entry["other_kind_value"] = b
        if not own:
            entry["measured_on"] = on
            if isinstance(value, str) or value is None:
                entry["strict"] = False
            if kind is not None:
                kind["values"][name] = value
        ref["metrics"][name] = entry
    atomic_write_bytes(Path(path), (json.dumps(ref, indent=1) + "\n").encode())
    return {"added": new, "reference": ref}


def remeasure(
    res: dict[str, Any], path: Path, prefixes: list[str], other: dict[str, Any] | None = None
) -> dict[str, Any]:
    """After a deliberate change of what some headline numbers compute (e.g. a new fine-tuning schedule): the
    reference's metrics whose names start with one of ``prefixes`` (``"imta."``) are measured again from ``res`` as
    :func:`add_metrics` adds new ones — exact on this machine kind, within a tolerance on the others (their old
    exact values, on every kind, are dropped: they belong to the old computation). Each keeps its old cross-kind
    tolerance when that is wider than the new one (``other``'s measured difference, or the default). Refused when a
    metric outside ``prefixes`` moved, or no metric matches."""
    ref = json.loads(Path(path).read_text())
    prefixes = [p for p in prefixes if p]
    names = [n for n in ref["metrics"] if any(n.startswith(p) for p in prefixes)]
    if not names:
        raise ConfigError(
            f"no metric of {path} starts with {', '.join(prefixes) or '(nothing)'}: nothing to measure again"
        )
    outside = [line for line in compare(res, ref) if not any(line.startswith(p) for p in prefixes)]
    if outside:
        raise ConfigError(
            f"{len(outside)} metric(s) outside {', '.join(prefixes)} moved too (first: {outside[0]}): "
            "name their prefix too, or make the whole reference again (make reference)"
        )
    old_tol = {n: ref["metrics"][n].get("abs_tol", DEFAULT_ABS_TOL) for n in names}
    for n in names:
        del ref["metrics"][n]
        for kind in ref.get("kinds", []):
            kind["values"].pop(n, None)
    atomic_write_bytes(Path(path), (json.dumps(ref, indent=1) + "\n").encode())
    out = add_metrics(res, path, other=other)
    ref = out["reference"]
    for n in names:
        if n in ref["metrics"]:
            ref["metrics"][n]["abs_tol"] = max(ref["metrics"][n]["abs_tol"], old_tol[n])
    atomic_write_bytes(Path(path), (json.dumps(ref, indent=1) + "\n").encode())
    return {"remeasured": [n for n in names if n in ref["metrics"]], "added": out["added"], "reference": ref}


def add_kind(res: dict[str, Any], path: Path) -> dict[str, Any]:
    """Add ``res``, the reference's own code run on another machine kind, to the reference at ``path``: its values
    become exact on that kind (a rerun there must give the same numbers). Nothing else changes: the tolerances and
    strictness for still other kinds stay as they were (a kind's spread never loosens the check elsewhere).

    For a CI machine of a kind the reference does not know. Raises ConfigError for the reference's own kind (that is
    ``make reference``) or a run that lacks a metric of the reference.
    """
    ref = json.loads(Path(path).read_text())
    if same_kind(res, ref):
        raise ConfigError(f"{path} was made on this machine kind ({res.get('cpu')}): nothing to add")
    mine = _flat(res)
    missing = sorted(set(ref["metrics"]) - set(mine))
    if missing:
        raise ConfigError(
            f"the run lacks {len(missing)} metric(s) of {path} (first: {missing[0]}): run the whole suite"
        )
    values = {name: mine[name] for name in ref["metrics"]}
    kinds = [k for k in ref.get("kinds", []) if not _kind_matches(res, k["exact_on"])]
    ref["kinds"] = [*kinds, {"exact_on": {k: res.get(k) for k in _KIND_KEYS}, "values": values}]
    atomic_write_bytes(Path(path), (json.dumps(ref, indent=1) + "\n").encode())
    return ref
