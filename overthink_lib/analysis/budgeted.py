"""Notebook 03's study in one call: anytime vs budgeted-batch prediction (thesis Algorithm 1) on a validation and a
test record — the curves with their bootstrap CIs, the bounds, the comparison with anytime (unpaired and paired), the
point half-way between exit 1's and the last exit's cost — with the headline numbers and the sentences that report
them. The notebook shows the tables and draws the figures; every number and verdict it reports comes from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..records import ExitRecord
from . import exits, overthinking
from .stats import Headline, bootstrap_mean, fmt_ci


@dataclass
class Study:
    """What :func:`study` found. ``skip`` says why nothing else is there (no FLOPs, one exit); else every field is.

    Attributes:
        anytime: per exit: flops, accuracy, and its CI (``low``, ``high``).
        curves: the budgeted curves by threshold method (``thesis``, ``official``), each point with its test CI.
        bounds: the oracle and the other bounds (:func:`~overthink_lib.analysis.overthinking.bounds`).
        table: the thesis curve in MFLOPs and %, for reading.
        per_exit: top-1 (and top-5 with ≥ 10 classes) per exit with CIs, in %.
        comparison: the thesis curve against anytime's interpolation (:func:`exits.compare_to_anytime`).
        gain: :func:`exits.gain_over_anytime` of it.
        paired: each point minus the deepest exit within its cost, paired over the test samples.
        half: the point half-way between exit 1's and the last exit's cost: its thresholds (``pick``), their test
            result (``result``) and the paired difference to the deepest exit within its cost (``paired``).
        headlines: the numbers for ``results.json`` (section ``budgeted``).
        sentences: what the notebook prints about them: ``comparison`` (the curve against anytime) and ``half``
            (the half-way point), each in order.
    """

    skip: str | None
    anytime: pd.DataFrame | None = None
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    bounds: dict[str, Any] | None = None
    table: pd.DataFrame | None = None
    per_exit: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    gain: dict[str, Any] | None = None
    paired: pd.DataFrame | None = None
    half: dict[str, Any] | None = None
    headlines: list[Headline] = field(default_factory=list)
    sentences: dict[str, list[str]] = field(default_factory=lambda: {"comparison": [], "half": []})


def skip_reason(val: ExitRecord, test: ExitRecord) -> str | None:
    """Why the study cannot run on these records (None when it can)."""
    if test.flops is None or val.flops is None:
        return "needs per-exit FLOPs"
    return "needs two exits or more" if test.num_exits < 2 else None


def study(
    val: ExitRecord, test: ExitRecord, criterion: str = "max_softmax", *, n_boot: int = 1000, seed: int = 0
) -> Study:
    """Anytime vs budgeted batch on ``test``, thresholds fitted on ``val`` (see the module docstring)."""
    out = Study(skip_reason(val, test))
    if out.skip:
        return out
    out.anytime = exits.anytime_curve(test)
    _, out.anytime["low"], out.anytime["high"] = bootstrap_mean(test.correct.double(), n_boot=n_boot, seed=seed)
    for method in ("thesis", "official"):
        c = exits.budgeted_curve(val, test, method=method, criterion=criterion)
        per_sample = np.stack(
            [exits.apply_thresholds(test, t, criterion)["correct"].numpy() for t in c["thresholds"]], 1
        )
        _, c["low"], c["high"] = bootstrap_mean(per_sample, n_boot=n_boot, seed=seed)
        out.curves[method] = c
    out.bounds = overthinking.bounds(test)
    table = out.curves["thesis"][["p", "test_flops", "planned_flops", "val_acc", "test_acc", "low", "high"]].copy()
    table[["test_flops", "planned_flops"]] /= 1e6
    table[["val_acc", "test_acc", "low", "high"]] *= 100
    out.table = table
    out.per_exit = _per_exit(test, out.anytime, n_boot, seed)
    _compare(out, test, criterion, n_boot, seed)
    _half_way(out, val, test, criterion, n_boot, seed)
    return out


def _per_exit(test: ExitRecord, anytime: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Top-1, and top-5 where there are 10 classes or more (ImageNet's second metric), per exit with 95 % CIs (%)."""
    per_exit = {"exit": anytime["exit"], "MFLOPs": anytime["flops"] / 1e6}
    for k in (1, 5) if test.num_classes >= 10 else (1,):
        est, low, high = bootstrap_mean(test.top_correct(k).double(), n_boot=n_boot, seed=seed)
        per_exit.update({f"top-{k} %": est * 100, f"top-{k} low": low * 100, f"top-{k} high": high * 100})
    return pd.DataFrame(per_exit)


def _compare(out: Study, test: ExitRecord, criterion: str, n_boot: int, seed: int) -> None:
    """The thesis curve against anytime: unpaired (interpolated) and paired (the deepest exit within each point's
    cost, over the same test samples); its headlines and sentences."""
    anytime, bounds = out.anytime, out.bounds
    cmp = exits.compare_to_anytime(out.curves["thesis"], anytime)
    gain = exits.gain_over_anytime(cmp, anytime)  # over the points strictly between exit 1's and the last exit's cost
    best = gain["best"]
    paired = exits.paired_curve_minus_anytime(test, out.curves["thesis"], criterion=criterion, n_boot=n_boot, seed=seed)
    inside = paired[paired["inside"]]
    above, below = int((inside["low"] > 0).sum()), int((inside["high"] < 0).sum())
    out.comparison, out.gain, out.paired = cmp, gain, paired
    if best is None:
        out.sentences["comparison"].append("no budgeted point lies strictly between exit 1's and the last exit's cost")
    else:
        out.sentences["comparison"] += [
            f"above anytime at {gain['above']} of {gain['points']} points between exit 1 and exit "
            f"{test.num_exits} (point estimates); largest gain {best['gain (pts)']:.2f} points at {best['MFLOPs']:.2f} "
            f"MFLOPs (p={int(best['p'])}, picked on the test set)",
            f"paired over the same {test.num_samples} test samples, budgeted − the deepest exit within the point's "
            f"cost: the 95 % CI lies above 0 at {above} and below 0 at {below} of {len(inside)} points; at the others "
            "it includes 0",
        ]
    out.sentences["comparison"].append(
        f"best budgeted accuracy {cmp['budgeted %'].max():.2f} % vs best single exit "
        f"{anytime['accuracy'].max() * 100:.2f} %; oracle {bounds['oracle']['accuracy'] * 100:.2f} % at "
        f"{bounds['oracle']['flops'] / 1e6:.2f} MFLOPs"
    )
    out.headlines += [
        ("best_budgeted_accuracy", cmp["budgeted %"].max() / 100, "best budgeted accuracy (Algorithm 1)", "%"),
        ("best_single_exit_accuracy", anytime["accuracy"].max(), "best single exit (anytime)", "%"),
        ("oracle_accuracy", bounds["oracle"]["accuracy"], "oracle bound", "%"),
    ]
    if best is not None:
        out.headlines += [
            ("largest_gain_over_anytime", best["gain (pts)"] / 100, "largest gain over anytime", "pts"),
            (
                "points_ci_above_anytime",
                f"{gain['ci_above']} of {gain['points']}",
                "budgeted points whose CI low end lies above anytime's point estimate (unpaired)",
                "",
            ),
            (
                "points_paired_ci_above_anytime",
                f"{above} of {len(inside)}",
                "budgeted points whose paired 95 % CI (budgeted − deepest exit within its cost) lies above 0",
                "",
            ),
        ]


def _half_way(out: Study, val: ExitRecord, test: ExitRecord, criterion: str, n_boot: int, seed: int) -> None:
    """The budget half-way between exit 1's cost and the last exit's (half the last exit's cost lies below exit 1 on
    a 2-exit network): its thresholds, their test result, the paired difference to anytime; headline, sentences."""
    budget = 0.5 * (test.flops[0] + test.flops[-1]).item()
    pick = exits.thresholds_for_budget(out.curves["thesis"], budget)
    res = exits.apply_thresholds(test, pick["thresholds"][:-1], criterion)
    pm = exits.paired_budgeted_minus_anytime(
        val, test, budget, criterion=criterion, n_boot=n_boot, seed=seed, curve=out.curves["thesis"]
    )
    out.half = {"budget": budget, "pick": pick, "result": res, "paired": pm}
    out.sentences["half"] += [
        f"thresholds {np.round(pick['thresholds'][:-1], 4).tolist()} → test accuracy {res['accuracy'] * 100:.2f} %, "
        f"{res['flops'] / 1e6:.2f} MFLOPs, exit fractions {np.round(res['fractions'], 3).tolist()}",
        f"paired over the {test.num_samples} test samples: budgeted ({pm['budgeted_acc'] * 100:.2f} % at "
        f"{pm['budgeted_flops'] / 1e6:.2f} MFLOPs) − exit {pm['anytime_exit']} ({pm['anytime_acc'] * 100:.2f} % at "
        f"{pm['anytime_flops'] / 1e6:.2f} MFLOPs, the deepest exit within that cost) = "
        f"{fmt_ci(pm['est'], pm['low'], pm['high'])} points; {pm['verdict']}",
    ]
    out.headlines.append(
        (
            "paired_minus_anytime",
            [pm["est"], pm["low"], pm["high"]],
            "budgeted − deepest exit within its cost, paired over test samples, at half the way from exit 1's to the "
            "last exit's cost",
            "pts",
        )
    )
