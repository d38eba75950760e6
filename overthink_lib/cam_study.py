"""Notebook 05's study in one call: GradCAM heatmaps per exit (thesis Fig 3.9) of overthought test samples and of
others, their statistics per exit with CIs, whether the finding depends on what the heatmaps explain (the predicted
class or the label), and the similarity of consecutive exits' heatmaps against controls matched on their exits'
disagreement pattern. Returns the heatmaps (for the figures), the tables, the headline numbers (section
``gradcam``) and the sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import cams
from .analysis import overthinking
from .analysis.stats import excludes_zero, fmt_ci

MATCH_BY = ("pattern", "count")
VERSUS = ("all others", "matched (pattern)", "matched (count)")


@dataclass
class CamStudy:
    """What :func:`study` found.

    Attributes:
        rows: the test rows of each group (``overthought``, ``other``; up to ``n_stat`` each).
        heatmaps: each group's :class:`~overthink_lib.cams.ExitCams` (the notebook's target and method).
        stats: per group, statistic and exit: mean with CI (None without overthought samples).
        wide: the same as group columns and their difference.
        similarity: overthought minus all others and minus matched controls, per exit and over exits 2..E.
        differences: (versus, exits) → (estimate, low, high), what the figure draws.
        headlines: for results.json (section ``gradcam``), in order.
        sentences: the notebook's text about the ``groups``, the ``targets`` and the ``similarity``, each in order.
    """

    rows: dict[str, np.ndarray]
    heatmaps: dict[str, Any]
    stats: pd.DataFrame | None = None
    wide: pd.DataFrame | None = None
    similarity: pd.DataFrame | None = None
    differences: dict[tuple[str, str], tuple[float, float, float]] = field(default_factory=dict)
    headlines: list[tuple[str, Any, str, str]] = field(default_factory=list)
    sentences: dict[str, list[str]] = field(default_factory=lambda: {"groups": [], "targets": [], "similarity": []})


def study(model, test, test_set, *, n_stat: int, target: str, method: str, n_boot: int, seed: int) -> CamStudy:
    """Heatmaps of up to ``n_stat`` overthought test samples of ``test`` (``model``'s record on ``test_set``) and as
    many others, with GradCAM ``method`` explaining ``target`` (``pred``/``label``); see the module docstring."""
    groups = overthinking.overthought_and_others(test, n_stat, seed)
    rows = {"overthought": groups["overthought"], "other": groups["other"]}
    heat = {name: cams.cams_for_rows(model, test_set, r, target=target, method=method) for name, r in rows.items()}
    out = CamStudy(rows, heat)
    n_ot = int(overthinking.overthought(test).sum())
    out.sentences["groups"].append(
        f"{n_ot} overthought test samples; statistics on {len(rows['overthought'])} of them and {len(rows['other'])} "
        "others"
    )
    if not len(rows["overthought"]):  # nothing to set against the others
        out.sentences["groups"].append(
            "no test sample is overthought: the grid shows others only, and there are no groups to compare"
        )
        return out
    out.stats = cams.group_statistics(heat, n_boot=n_boot, seed=seed)
    out.wide = out.stats.pivot_table(index=["statistic", "exit"], columns="group", values="mean")
    out.wide["difference"] = out.wide["overthought"] - out.wide["other"]
    _targets(out, model, test_set, target, method, n_boot, seed)
    _similarity(out, model, test, test_set, target, method, n_boot, seed)
    return out


def _targets(out: CamStudy, model, test_set, target: str, method: str, n_boot: int, seed: int) -> None:
    """Which (statistic, exit) pairs separate the groups (disjoint CIs), with this target and with the other."""
    disjoint, n_pairs = cams.disjoint_pairs(out.stats)
    out.sentences["targets"].append(
        f"target {target!r}: {len(disjoint)} of {n_pairs} (statistic, exit) pairs have non-overlapping 95 % CIs "
        f"between the groups: {disjoint}"
    )
    out.headlines.append(
        (
            "pairs_with_disjoint_cis",
            f"{len(disjoint)} of {n_pairs}",
            f"(statistic, exit) pairs: overthought vs others, disjoint CIs (target {target})",
            "",
        )
    )
    # the same statistics with the other target: did the finding depend on what the heatmaps explain?
    other = "label" if target == "pred" else "pred"
    heat = {n: cams.cams_for_rows(model, test_set, r, target=other, method=method) for n, r in out.rows.items()}
    disjoint_other, _ = cams.disjoint_pairs(cams.group_statistics(heat, n_boot=n_boot, seed=seed))
    same = set(disjoint) == set(disjoint_other)
    out.sentences["targets"] += [
        f"target {other!r}: {len(disjoint_other)} of {n_pairs} pairs: {disjoint_other}",
        f"The finding {'does not depend on' if same else 'changes with'} the target: "
        + (
            "the same pairs separate the groups either way."
            if same
            else f"only with {target!r}: {sorted(set(disjoint) - set(disjoint_other))}; only with {other!r}: "
            f"{sorted(set(disjoint_other) - set(disjoint))}."
        ),
    ]
    out.headlines.append(
        (f"pairs_with_disjoint_cis_{other}", f"{len(disjoint_other)} of {n_pairs}", f"the same with target {other}", "")
    )


def _similarity(out: CamStudy, model, test, test_set, target: str, method: str, n_boot: int, seed: int) -> None:
    """Similarity of each exit's heatmap with the previous exit's: overthought minus all others, and minus controls
    whose exits disagree at the same exits (``pattern``) or as often (``count``)."""
    ot_rows, e = out.rows["overthought"], test.num_exits
    sim = {name: cams.cam_statistics(h.cams)["similarity_prev"] for name, h in out.heatmaps.items()}  # [n, E]
    matches = {by: overthinking.matched_controls(test, ot_rows, by=by, seed=seed) for by in MATCH_BY}
    ctrl_rows = np.unique(np.concatenate([m["controls"][m["matched"]].ravel() for m in matches.values()]))
    sim_ctrl = (
        cams.cam_statistics(cams.cams_for_rows(model, test_set, ctrl_rows, target=target, method=method).cams)[
            "similarity_prev"
        ]
        if len(ctrl_rows)
        else np.zeros((0, e))
    )
    cols = {f"exit {k}": [k - 1] for k in range(2, e + 1)}
    cols["mean over exits 2..E"] = list(range(1, e))
    diff = out.differences
    for label, c in cols.items():
        ot_v, other_v = sim["overthought"][:, c].mean(1), sim["other"][:, c].mean(1)
        diff["all others", label] = (
            overthinking.group_minus_group(ot_v, other_v, n_boot=n_boot, seed=seed)
            if len(out.rows["other"])
            else (np.nan,) * 3
        )
        for by, m in matches.items():
            pos = np.searchsorted(ctrl_rows, np.where(m["matched"][:, None], m["controls"], ctrl_rows[:1]))
            ctrl_v = sim_ctrl[pos][:, :, c].mean(2) if len(ctrl_rows) else np.full((len(ot_rows), 1), np.nan)
            est, lo, hi, _ = overthinking.matched_minus_controls(ot_v, ctrl_v, m["matched"], n_boot=n_boot, seed=seed)
            diff[f"matched ({by})", label] = (est, lo, hi)
    out.similarity = pd.DataFrame(
        [
            {"overthought −": vs, "exits": label, "difference": est, "low": lo, "high": hi}
            for (vs, label), (est, lo, hi) in diff.items()
        ]
    )
    _similarity_words(out, matches["pattern"], matches["count"], target, e)


def _similarity_words(out: CamStudy, mp: dict, mc: dict, target: str, e: int) -> None:
    key = "mean over exits 2..E"
    all_d, pat_d = out.differences["all others", key], out.differences["matched (pattern)", key]
    out.sentences["similarity"] += [
        f"{mp['n_matched']} of {mp['n']} overthought samples found a control with the same consecutive-exit "
        f"disagreements ({mc['n_matched']} with the same number of them)",
        f"similarity with the previous exit, mean over exits 2..{e}, target {target!r}:",
        f"  overthought − all others:       {fmt_ci(*all_d, scale=1, digits=3)}",
        f"  overthought − matched controls: {fmt_ci(*pat_d, scale=1, digits=3)}",
    ]
    if mp["n_matched"] == 0:
        out.sentences["similarity"].append(
            "No overthought sample has a control with its disagreement pattern: the matched comparison is empty."
        )
    elif excludes_zero(pat_d[1], pat_d[2]):
        side = "less" if pat_d[0] < 0 else "more"
        out.sentences["similarity"].append(
            f"Against controls whose exits change class at the same exits the CI excludes 0: overthought samples' "
            f"consecutive heatmaps are {side} similar than the change of predicted class alone accounts for."
        )
    else:
        out.sentences["similarity"].append(
            "Against controls whose exits change class at the same exits the CI includes 0: no difference beyond what "
            "the change of predicted class between exits produces is measurable."
        )
    what = (
        f"heatmap similarity with the previous exit (mean over exits 2..E): overthought − all others (target {target})"
    )
    out.headlines += [
        ("similarity_minus_others", list(all_d), what, ""),
        (
            "similarity_minus_matched",
            list(pat_d),
            f"the same, overthought − controls with the same consecutive-exit disagreements (target {target})",
            "",
        ),
        (
            "matched_overthought",
            f"{mp['n_matched']} of {mp['n']}",
            "overthought samples with a control of the same disagreement pattern",
            "",
        ),
    ]
