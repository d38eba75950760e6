"""Notebook 11's study in one call: exit rules beyond the thesis's threshold, compared at matched budgets, and
per-exit calibration (temperature scaling) — its effect on ECE and on what the thesis rule overthinks — and SDN's
confusion as a score of overthought samples. Returns the tables, the headline numbers (sections ``exit_rules`` and
``calibration``) and one finding sentence per result, each worded from its interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..records import ExitRecord
from . import calibration, overthinking, rules
from .stats import bootstrap_mean, bootstrap_statistic, excludes_zero, fmt_ci

CALIBRATED = "threshold, calibrated"
SHARES = (0.25, 0.5, 0.75)  # matched budgets: shares of the way from exit 1's cost to the last exit's


@dataclass
class RuleStudy:
    """What :func:`study` found (tables for reading, numbers for results.json, findings to print).

    Attributes:
        temperatures: the fitted temperature per exit (validation NLL).
        test_cal: the test record with every exit's logits divided by its temperature.
        curves: each rule's test curve (:func:`rules.rule_curve`), and the thesis rule on calibrated exits.
        overview: per rule: settings, best test accuracy and its cost, the cheapest cost.
        matched: each rule minus the thesis rule at matched budgets, paired (empty without FLOPs).
        calibration: per exit: temperature, accuracy, confidence and ECE raw and scaled, the change with its CI.
        reliability: the reliability bins, raw and scaled (for the figure).
        outcomes: overthought and wasted under the thesis rule at half budget, raw vs calibrated (None without FLOPs).
        half_accuracy: the sentence on accuracy at half budget, calibrated minus raw ("" without FLOPs).
        confusion: SDN's confusion as a score of overthought / final-exit-wrong samples (None with one exit).
        headlines: by results section, ``(key, value, label, unit)``.
        findings: one sentence per result, in order.
    """

    temperatures: list[float]
    test_cal: ExitRecord
    curves: dict[str, pd.DataFrame]
    overview: pd.DataFrame
    matched: pd.DataFrame
    calibration: pd.DataFrame
    reliability: tuple[list, list]
    outcomes: pd.DataFrame | None = None
    half_accuracy: str = ""
    confusion: pd.DataFrame | None = None
    headlines: dict[str, list[tuple[str, Any, str, str]]] = field(
        default_factory=lambda: {"exit_rules": [], "calibration": []}
    )
    findings: list[str] = field(default_factory=list)


def compared() -> tuple[str, ...]:
    """The rules the study compares: the thesis's threshold rule first, then every other registered rule
    (``rules.register_rule``), in the order they were registered."""
    return ("threshold", *(name for name in rules.RULES if name != "threshold"))


def study(val: ExitRecord, test: ExitRecord, *, n_bins: int = 15, n_boot: int = 1000, seed: int = 0) -> RuleStudy:
    """The rules, calibration and confusion on ``test``, everything fitted on ``val`` (see the module docstring)."""
    temps = calibration.exit_temperatures(val)
    val_cal, test_cal = calibration.scaled(val, temps), calibration.scaled(test, temps)
    curves = {name: rules.rule_curve(name, val, test) for name in compared()}
    curves[CALIBRATED] = rules.rule_curve("threshold", val_cal, test_cal).assign(rule=CALIBRATED)
    overview = pd.DataFrame(
        [
            {
                "rule": name,
                "settings": len(c),
                "best test accuracy %": c["test_acc"].max() * 100,
                "its test MFLOPs": c.loc[c["test_acc"].idxmax(), "test_flops"] / 1e6,
                "cheapest MFLOPs": c["test_flops"].min() / 1e6,
            }
            for name, c in curves.items()
        ]
    )
    out = RuleStudy(temps, test_cal, curves, overview, pd.DataFrame(), pd.DataFrame(), ([], []))
    has_flops = val.flops is not None and test.flops is not None
    half = _matched(out, test, n_boot, seed) if has_flops else {}
    _calibration(out, test, n_bins, n_boot, seed)
    if has_flops and CALIBRATED in half:
        _outcomes(out, test, half[CALIBRATED], n_boot, seed)
    if test.num_exits > 1:
        _confusion(out, test, n_boot, seed)
    return out


def _matched(out: RuleStudy, test: ExitRecord, n_boot: int, seed: int) -> dict[str, dict]:
    """Each rule minus the thesis rule at the matched budgets (paired); headlines and findings at half budget.
    Returns the half-budget differences by rule."""
    rows, half = [], {}
    for name, c in out.curves.items():
        if name == "threshold":
            continue
        for share, b in zip(SHARES, rules.matched_budgets(test), strict=False):
            d = rules.matched_difference(c, out.curves["threshold"], b, n_boot=n_boot, seed=seed)
            if d is None:
                continue
            if share == 0.5:
                half[name] = d
            rows.append(
                {
                    "rule": name,
                    "budget": f"{share:.0%} ({b / 1e6:.2f} MFLOPs)",
                    "setting": d["setting"],
                    "test MFLOPs": d["test_flops"] / 1e6,
                    "thesis setting": d["reference_setting"],
                    "thesis test MFLOPs": d["reference_test_flops"] / 1e6,
                    "rule − thesis (pts) [95 % CI]": fmt_ci(d["difference"], d["low"], d["high"]),
                }
            )
    out.matched = pd.DataFrame(rows)
    for name, d in half.items():
        key = f"{name.replace(', ', '_').replace('-', '_')}_minus_threshold"
        label = f"{name} minus the thesis rule at half budget (paired)"
        out.headlines["exit_rules"].append((key, (d["difference"], d["low"], d["high"]), label, "pts"))
        out.findings.append(_matched_finding(name, d))
    return half


def _matched_finding(name: str, d: dict) -> str:
    ci = fmt_ci(d["difference"], d["low"], d["high"])
    ci += f" pts (at {d['test_flops'] / 1e6:.2f} vs the thesis rule's {d['reference_test_flops'] / 1e6:.2f} MFLOPs)"
    if d["low"] == d["high"] == 0:
        return f"At half budget, {name} is right on exactly the test samples the thesis rule is right on."
    if excludes_zero(d["low"], d["high"]):
        more = "more" if d["difference"] > 0 else "fewer"
        return f"At half budget, {name} answers {more} test samples right than the thesis rule: {ci}."
    return f"At half budget, {name} and the thesis rule differ by {ci}: the CI cannot tell them apart."


def _calibration(out: RuleStudy, test: ExitRecord, n_bins: int, n_boot: int, seed: int) -> None:
    """ECE per exit before and after temperature scaling, the paired change; headlines (exit 1 and the last) and
    the finding."""
    test_cal, temps = out.test_cal, out.temperatures
    before = calibration.calibration_table(test, n_bins=n_bins, n_boot=n_boot, seed=seed)
    after = calibration.calibration_table(test_cal, n_bins=n_bins, n_boot=n_boot, seed=seed)
    raw_conf, cal_conf = calibration.confidence(test), calibration.confidence(test_cal)
    correct = test.correct.numpy()
    changes = [
        calibration.ece_change_ci(
            raw_conf[:, k], cal_conf[:, k], correct[:, k], n_bins=n_bins, n_boot=n_boot, seed=seed
        )
        for k in range(test.num_exits)
    ]
    out.calibration = pd.DataFrame(
        {
            "exit": before["exit"],
            "temperature": temps,
            "accuracy %": before["accuracy"] * 100,
            "confidence % raw": before["confidence"] * 100,
            "ECE % raw [95 % CI]": [fmt_ci(r.ece, r.ece_low, r.ece_high) for r in before.itertuples()],
            "confidence % scaled": after["confidence"] * 100,
            "ECE % scaled [95 % CI]": [fmt_ci(r.ece, r.ece_low, r.ece_high) for r in after.itertuples()],
            "change (pts) [95 % CI]": [fmt_ci(*c) for c in changes],
        }
    )
    out.reliability = (
        calibration.reliability_bins(test, n_bins=n_bins),
        calibration.reliability_bins(test_cal, n_bins=n_bins),
    )
    for k, tag in ((0, "exit1"), (test.num_exits - 1, "last_exit")):
        for table, when in ((before, "raw"), (after, "scaled")):
            r = table.iloc[k]
            label = f"ECE, {tag.replace('_', ' ')}, {when}"
            out.headlines["calibration"].append((f"ece_{tag}_{when}", (r.ece, r.ece_low, r.ece_high), label, "%"))
    lowered = [k + 1 for k, c in enumerate(changes) if c[2] < 0]
    raised = [k + 1 for k, c in enumerate(changes) if c[1] > 0]
    shown = ", ".join(f"{t:.2f}" for t in temps)
    out.findings.append(
        f"Temperature scaling (T per exit {shown}) lowered the ECE at exit(s) {lowered or 'none'} and raised it at "
        f"{raised or 'none'}: the 95 % CIs of those changes exclude 0; at the other exits it did not measurably change."
        if lowered or raised
        else f"Temperature scaling (T per exit {shown}) changed no exit's ECE measurably (every CI of the change holds 0)."
    )


def _outcomes(out: RuleStudy, test: ExitRecord, acc: dict, n_boot: int, seed: int) -> None:
    """Overthought and wasted under the thesis rule at half budget, raw vs calibrated exits (paired over samples)."""
    b = rules.matched_budgets(test)[1]
    rule = rules.get_rule("threshold")
    raw_best = rules.best_within(out.curves["threshold"], b)
    cal_best = rules.best_within(out.curves[CALIBRATED], b)
    out_raw = rules.rule_outcomes(test, rule.decide(test, raw_best["setting"]))
    out_cal = rules.rule_outcomes(out.test_cal, rule.decide(out.test_cal, cal_best["setting"]))
    rows = []
    for what in ("overthought", "wasted"):
        a = bootstrap_mean(out_raw[what].double(), n_boot=n_boot, seed=seed)
        c = bootstrap_mean(out_cal[what].double(), n_boot=n_boot, seed=seed)
        d = bootstrap_mean(out_cal[what].double() - out_raw[what].double(), n_boot=n_boot, seed=seed)
        rows.append(
            {
                "under the rule": what,
                "raw %": fmt_ci(*a),
                "calibrated %": fmt_ci(*c),
                "calibrated − raw (pts)": fmt_ci(*d),
            }
        )
        label = f"{what} under the thesis rule at half budget: calibrated minus raw"
        out.headlines["calibration"].append((f"{what}_calibrated_minus_raw", d, label, "pts"))
        if d[1] == d[2] == 0:
            out.findings.append(
                f"Calibrating each exit changed no test sample's {what} status under the thesis rule at half budget."
            )
        else:
            verdict = "changed" if excludes_zero(d[1], d[2]) else "did not measurably change"
            out.findings.append(
                f"Calibrating each exit {verdict} the share {what} under the thesis rule at half budget: {fmt_ci(*d)} pts."
            )
    out.outcomes = pd.DataFrame(rows)
    out.half_accuracy = (
        f"accuracy at half budget, calibrated − raw: {fmt_ci(acc['difference'], acc['low'], acc['high'])} pts "
        f"(settings {acc['setting']} vs {acc['reference_setting']})"
    )


def _confusion(out: RuleStudy, test: ExitRecord, n_boot: int, seed: int) -> None:
    """SDN's confusion as a score of overthought samples and of final-exit errors: means and AUROC with CIs."""
    score = rules.confusion(test).numpy()
    ot = overthinking.overthought(test).numpy()
    wrong = ~test.correct[:, -1].numpy()
    n = test.num_samples
    auc_ot = bootstrap_statistic(lambda r: rules.auroc(score[r], ot[r]), n, n_boot=n_boot, seed=seed)
    auc_wrong = bootstrap_statistic(lambda r: rules.auroc(score[r], wrong[r]), n, n_boot=n_boot, seed=seed)

    def mean(mask):
        return score[mask].mean() if mask.any() else np.nan

    out.confusion = pd.DataFrame(
        {
            "positives": ["overthought (Eq 3.11)", "final exit wrong"],
            "share %": [ot.mean() * 100, wrong.mean() * 100],
            "mean confusion, positives": [mean(ot), mean(wrong)],
            "mean confusion, others": [mean(~ot), mean(~wrong)],
            "AUROC [95 % CI]": [fmt_ci(*auc_ot, scale=1, digits=3), fmt_ci(*auc_wrong, scale=1, digits=3)],
        }
    )
    label = "SDN confusion as a score of overthought samples: AUROC"
    out.headlines["exit_rules"].append(("confusion_auroc_overthought", auc_ot, label, ""))
    shown = fmt_ci(*auc_ot, scale=1, digits=3)
    out.findings.append(
        f"SDN's confusion ranks overthought samples above the others: AUROC {shown}."
        if np.isfinite(auc_ot[1]) and auc_ot[1] > 0.5
        else f"SDN's confusion does not measurably separate overthought samples: AUROC {shown}."
    )
