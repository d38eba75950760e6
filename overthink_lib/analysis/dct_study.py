"""Notebook 06's study in one call: DCT clutter (thesis Appendix A) of the images each exit gets right, across the
groups an exit rule would want to tell apart, under every reading of the measure — and the Max-Min sanity check (does
the measure see how many items a composite holds?). Returns the tables, the headline numbers (section ``dct``) and
the sentences, each worded from an effect size and its test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..records import ExitRecord
from . import dct, overthinking, policy
from .stats import Headline, bootstrap_mean, effect_band, group_difference_verdict, separates

#: The readings of the measure compared (the thesis's default first), as ``dct.clutter`` options.
READINGS = {
    "row, |coefficients| (thesis, default)": dict(order="row", measure="abs"),
    "row, signed coefficients (thesis, other reading)": dict(order="row", measure="sum"),
    "zig-zag, energy (ours)": dict(order="zigzag", measure="energy"),
    "radial, energy (ours)": dict(order="radial", measure="energy"),
}


@dataclass
class ClutterStudy:
    """What :func:`study` found.

    Attributes:
        score: the clutter score of every test image (this run's reading); ``seconds``: how long it took.
        by_exit: per exit, the clutter of the images it gets right / wrong (mean, CI, var, sd; KW right vs wrong).
        summaries: per grouping (first correct exit, without "none", D_ee labels), the groups' clutter summary.
        groups_table: per grouping: Kruskal–Wallis H, p, ε², permutation η² and p, spread of means, pooled SD.
        readings: KW across first-correct-exit groups under every reading of the measure.
        maxmin: the Max-Min part (None without it): ``levels`` (summary per level), ``test`` (KW across levels),
            ``readings`` (the same under every reading, with whether the sanity check passes), ``by_exit``, ``score``,
            ``sentence`` (does the measure saturate?).
        notes: what the notebook says about groupings it could not test.
        headlines: the numbers for results.json (section ``dct``), in order.
        verdicts: the closing sentences.
    """

    score: np.ndarray
    seconds: float
    by_exit: pd.DataFrame
    summaries: dict[str, pd.DataFrame]
    groups_table: pd.DataFrame
    readings: pd.DataFrame
    maxmin: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    headlines: list[Headline] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)


def study(
    test: ExitRecord,
    images: np.ndarray,
    *,
    threshold: float = 0.98,
    order: str = "row",
    measure: str = "abs",
    lam: float = 5.0,
    n_boot: int = 1000,
    seed: int = 0,
    maxmin: dict[str, Any] | None = None,
) -> ClutterStudy:
    """Clutter per exit on ``test`` (``images``: its uint8 images, [N, C, H, W]) under the reading (``threshold``,
    ``order``, ``measure``). ``maxmin``, for the sanity check: ``images`` (the composites), ``levels`` (each one's
    level name), ``record`` (M's test record), ``names`` (the levels in order) and ``items`` (items per level)."""
    t0 = time.perf_counter()
    score = dct.clutter(images, threshold=threshold, order=order, measure=measure)
    seconds = time.perf_counter() - t0
    first = overthinking.first_correct_exit(test).numpy()
    groups = np.where(first < 0, "none", np.char.add("exit ", (first + 1).astype(str)))
    readings = dct.compare_readings(dct.dct2(images), groups, READINGS, threshold=threshold)
    out = ClutterStudy(score, seconds, _by_exit(test, score, n_boot, seed), {}, pd.DataFrame(), readings)
    _groupings(out, test, score, groups, lam, seed)
    for name, r in readings.iterrows():
        label = f"clutter across first-correct-exit groups, {name}: epsilon²"
        out.headlines.append((f"epsilon_squared_{dct.reading_key(name)}", r["KW epsilon²"], label, ""))
    if maxmin is not None:
        reading = dict(threshold=threshold, order=order, measure=measure)
        _maxmin(out, maxmin, reading, n_boot=n_boot, seed=seed)
    _verdicts(out)
    return out


def _summary_row(values: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    """Mean with its bootstrap CI, variance and SD of ``values`` (NaN for fewer than two)."""
    if len(values) < 2:
        return {"mean": np.nan, "low": np.nan, "high": np.nan, "var": np.nan, "sd": np.nan}
    m, lo, hi = bootstrap_mean(values, n_boot=n_boot, seed=seed)
    return {"mean": m, "low": lo, "high": hi, "var": values.var(ddof=1), "sd": values.std(ddof=1)}


def _by_exit(test: ExitRecord, score: np.ndarray, n_boot: int, seed: int) -> pd.DataFrame:
    rows = []
    for k in range(test.num_exits):
        right = test.correct[:, k].numpy()
        for part, mask in (("right", right), ("wrong", ~right)):
            rows.append(
                {"exit": k + 1, "subset": part, "n": int(mask.sum()), **_summary_row(score[mask], n_boot, seed)}
            )
        if 0 < right.sum() < len(right):  # a test needs both groups
            t = dct.kruskal_test(score, right)
            rows[-1].update({"KW p (right vs wrong)": t["p"], "epsilon²": t["epsilon_squared"]})
    return pd.DataFrame(rows)


def _groupings(out: ClutterStudy, test: ExitRecord, score: np.ndarray, groups: np.ndarray, lam: float, seed: int):
    """Kruskal–Wallis and a permutation test across the first-correct-exit groups, the same without the samples no
    exit gets right (difficulty, not exit specialisation), and across the D_ee score labels (Eq 4.1)."""
    groupings = {"first correct exit": (score, groups)}
    some_right = groups != "none"
    groupings["first correct exit, some exit right"] = (score[some_right], groups[some_right])
    if test.flops is not None:  # the D_ee score labels weigh each exit's cost
        lab = policy.exit_labels(test, "score", lam)
        groupings[f"D_ee label (λ = {lam})"] = (
            score[lab.rows.numpy()],
            np.char.add("exit ", (lab.labels.numpy() + 1).astype(str)),
        )
    else:
        out.notes.append(
            "this record has no per-exit FLOPs: the D_ee score labels (Eq 4.1) need them; only the "
            "first-correct-exit groups are tested"
        )
    results = {}
    for name, (s, g) in groupings.items():
        if np.unique(g).size < 2:
            out.notes.append(
                f"{name}: every sample falls in one group ({np.unique(g).tolist()}), so there is nothing to compare; "
                "left out"
            )
            continue
        summ = dct.group_summary(s, g)
        kw, perm = dct.kruskal_test(s, g), dct.permutation_test(s, g, n_perm=500, seed=seed)
        results[name] = {
            "Kruskal-Wallis H": kw["H"],
            "p": kw["p"],
            "epsilon²": kw["epsilon_squared"],
            "permutation η²": perm["eta_squared"],
            "permutation p": perm["p"],
            "spread of group means": summ["mean"].max() - summ["mean"].min(),
            "pooled std": s.std(),
        }
        out.summaries[name] = summ
    out.groups_table = pd.DataFrame(results).T


def _maxmin(out: ClutterStudy, mm: dict[str, Any], reading: dict, *, n_boot: int, seed: int) -> None:
    """The sanity check on the Max-Min composites (``mm``: see :func:`study`): does the measure separate 1, 2 and 4
    items?"""
    images, levels, rec, names, items = mm["images"], mm["levels"], mm["record"], tuple(mm["names"]), tuple(mm["items"])
    score = dct.clutter(images, **reading)
    test = dct.kruskal_test(score, levels)
    readings = dct.compare_readings(dct.dct2(images), levels, READINGS, threshold=reading["threshold"], means_of=names)
    # p < 0.01 and a non-negligible epsilon²
    readings["sanity check passes"] = [separates(r["KW epsilon²"], r["KW p"]) for _, r in readings.iterrows()]
    for name, r in readings.iterrows():
        label = f"clutter across Max-Min levels, {name}: epsilon²"
        out.headlines.append((f"maxmin_levels_epsilon_squared_{dct.reading_key(name)}", r["KW epsilon²"], label, ""))
    sep = dct.separation(score, levels, names)
    label = "clutter (this run's measure): spread of the Max-Min level means in pooled SDs"
    out.headlines.append(("maxmin_levels_spread_in_sd", sep["spread_in_sd"], label, ""))
    lo95, hi95 = sep["central_95"]
    saturates = lo95 > 0.8 and hi95 - lo95 < 0.15
    sentence = (
        "This run's measure on the Max-Min composites: level means "
        + ", ".join(f"{lv} ({n} item{'s' * (n > 1)}) {sep['means'][lv]:.4f}" for lv, n in zip(names, items))
        + f"; they spread by {sep['spread']:.4f}, {sep['spread_in_sd']:.2f} pooled SD ({sep['pooled_sd']:.4f}); "
        f"95 % of composites score within [{lo95:.3f}, {hi95:.3f}]"
        + (
            " — a narrow band near the top of the (0, 1] range: the measure saturates and cannot rank the item counts."
            if saturates
            else "."
        )
    )
    rows = []
    for k in range(rec.num_exits):
        right = rec.correct[:, k].numpy()
        row = {"exit": k + 1, "n right": int(right.sum()), "accuracy %": right.mean() * 100}
        row.update(_summary_row(score[right], n_boot, seed))
        row.update({f"share {lv} %": (levels[right] == lv).mean() * 100 if right.any() else np.nan for lv in names})
        rows.append(row)
    out.maxmin = {
        "score": score,
        "levels": dct.group_summary(score, levels).loc[list(names)],
        "test": test,
        "readings": readings,
        "by_exit": pd.DataFrame(rows),
        "sentence": sentence,
    }


def _verdicts(out: ClutterStudy) -> None:
    """The closing sentences (and their headlines): do the exit groups differ, does the measure pass its check?"""
    nan = {k: np.nan for k in ("spread of group means", "pooled std", "epsilon²", "p")}
    verdict = out.groups_table.loc["first correct exit"] if "first correct exit" in out.groups_table.index else nan
    out.verdicts.append(
        f"Exits: across first-correct-exit groups the clutter means spread by {verdict['spread of group means']:.4f} "
        f"against a pooled std of {verdict['pooled std']:.4f}: "
        f"{group_difference_verdict(verdict['epsilon²'], verdict['p'])} "
        f"(epsilon² bands: < 0.01 negligible, < 0.08 small, < 0.26 medium, else large)."
    )
    without_name = "first correct exit, some exit right"
    without = out.groups_table.loc[without_name] if without_name in out.groups_table.index else None
    out.verdicts.append(
        "Without the samples no exit gets right (difficulty, not exit specialisation): "
        + (
            f"{group_difference_verdict(without['epsilon²'], without['p'])}."
            if without is not None
            else "fewer than two groups left, nothing to compare."
        )
    )
    label = "clutter across first-correct-exit groups: epsilon²"
    out.headlines += [
        ("exit_groups_epsilon_squared", verdict["epsilon²"], label, ""),
        ("exit_groups_p", verdict["p"], "the same: Kruskal-Wallis p", ""),
    ]
    if out.maxmin is None:
        out.verdicts.append(
            "no Max-Min sanity check with a given record: whether the measure sees the number of items is not "
            "tested here"
        )
        return
    _sanity_verdicts(out)


def _sanity_verdicts(out: ClutterStudy) -> None:
    mm = out.maxmin["test"]
    works = separates(mm["epsilon_squared"], mm["p"])
    out.headlines.append(
        ("maxmin_levels_epsilon_squared", mm["epsilon_squared"], "clutter across Max-Min levels: epsilon²", "")
    )
    out.verdicts.append(
        f"Sanity check: Max-Min levels {'differ' if works else 'do NOT differ'} in clutter (epsilon² = "
        f"{mm['epsilon_squared']:.3f}, a {effect_band(mm['epsilon_squared'])} effect, p = {mm['p']:.2g}). "
        + (
            "The measure sees the number of items, so its silence on exits means something."
            if works
            else "The measure does not see how many items an image holds, so what it says (or does not say) about "
            "exits is not about 'kinds of data' in the sense of how many objects an image shows."
        )
    )
    out.verdicts.append(
        "The sanity check (Max-Min levels differ: p < 0.01 and epsilon² ≥ 0.01) under each reading of the measure:"
    )
    readings = out.maxmin["readings"]
    for name, r in readings.iterrows():
        ex = out.readings.loc[name]
        if not np.isfinite(r["KW epsilon²"]):
            out.verdicts.append(f"  {name}: untested (its scores do not vary: no share of the sum to compare)")
            continue
        on_exits = group_difference_verdict(ex["KW epsilon²"], ex["KW p"])
        if r["sanity check passes"]:
            tail = "the reading sees the item count, so what it says about exits means something"
        elif separates(ex["KW epsilon²"], ex["KW p"], alpha=0.05):
            tail = (
                "the reading does not see the item count, so the difference it finds between exits is not about how "
                "many objects the images hold"
            )
        else:
            tail = "the reading does not see the item count, so a null result on exits under it is uninformative"
        out.verdicts.append(
            f"  {name}: {'passes' if r['sanity check passes'] else 'FAILS'} (epsilon² = {r['KW epsilon²']:.3f} across "
            f"levels); on first-correct-exit groups: {on_exits} — {tail}"
        )
    default = next(iter(READINGS))
    passes = "passes" if readings.loc[default, "sanity check passes"] else "fails"
    label = "Max-Min sanity check under the thesis's reading (row, |coefficients|)"
    out.headlines.append(("sanity_check_default_reading", passes, label, ""))
