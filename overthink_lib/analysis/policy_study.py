"""Notebook 08's analyses (thesis ch. 4), each one call returning its table, its headline numbers (sections
``maxmin`` and ``policy``) and its sentences: the Max-Min levels per exit (Fig 4.4), the D_ee labels by level and by
λ (Fig 4.5), what a trained policy and its shuffled-label control reach (Fig 4.6), the binary policy per label (Fig
4.7–4.8) and against class-only baselines, D_ee from the training vs the validation split (Fig 4.1), the policy as an
exit rule, and the summary with its verdicts. The policies themselves are trained by
``experiments.policy.policy_experiment`` (a ``PolicyRun``: what these functions read of it is its attributes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..records import ExitRecord
from . import exits, overthinking, policy
from .stats import Headline, bootstrap_mean, fmt_ci


def maxmin_levels(rec: ExitRecord, levels: tuple[str, ...], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Fig 4.4 on M's test record: accuracy per exit and level (%), the hard level's last-exit gain over exit 1 and
    the easy level's exit-1 accuracy."""
    level = rec.extras["level"].numpy()
    hard = rec.correct[level == levels.index("hard")].double()
    easy = rec.correct[level == levels.index("easy")].double()
    gap = bootstrap_mean(hard[:, -1] - hard[:, 0], n_boot=n_boot, seed=seed)
    return {
        "accuracy": policy.accuracy_by_level(rec, levels) * 100,  # [exit, level] %
        "sentence": f"hard level: last exit minus exit 1 = {fmt_ci(*gap)} points (Fig 4.4: later exits should win on "
        "hard samples)",
        "headlines": [
            ("hard_last_minus_first", list(gap), "Max-Min hard level: last exit minus exit 1", "pts"),
            (
                "easy_exit1_accuracy",
                list(bootstrap_mean(easy[:, 0], n_boot=n_boot, seed=seed)),
                "Max-Min easy level: exit 1 accuracy",
                "%",
            ),
        ],
    }


def length_gaps(lengths: dict[str, ExitRecord], levels: tuple[str, ...], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Fig 4.4's two panels: per training length of M, accuracy per exit and level and the hard level's gap."""
    out = {"accuracy": {}, "sentences": []}
    for name, rec in lengths.items():
        lv = rec.extras["level"].numpy()
        out["accuracy"][name] = policy.accuracy_by_level(rec, levels) * 100
        h = rec.correct[lv == levels.index("hard")].double()
        gap = bootstrap_mean(h[:, -1] - h[:, 0], n_boot=n_boot, seed=seed)
        out["sentences"].append(f"M, {name}: hard level, last exit minus exit 1 = {fmt_ci(*gap)} points")
    return out


def labels_by_level(val: ExitRecord, lam: float, levels: tuple[str, ...], *, n_boot: int, seed: int) -> dict:
    """Fig 4.5: the share of each D_ee score label (λ = ``lam``) within each level, the mean label of the easy and
    the hard level with CIs, and whether harder levels get later exits."""
    lab = policy.exit_labels(val, "score", lam)
    lvl = val.extras["level"][lab.rows].numpy()
    by_level = pd.DataFrame({"level": np.array(levels)[lvl], "label": lab.labels.numpy() + 1})
    share = pd.crosstab(by_level["level"], by_level["label"], normalize="index").reindex(list(levels)) * 100
    mean = {lv: (by_level["label"][by_level["level"] == lv]).astype(float).to_numpy() for lv in levels}
    hard = bootstrap_mean(mean["hard"], n_boot=n_boot, seed=seed)
    easy = bootstrap_mean(mean["easy"], n_boot=n_boot, seed=seed)
    shift = (
        "later exits for harder levels, as Fig 4.5"
        if hard[1] > easy[2]
        else "EARLIER exits for harder levels: the opposite of Fig 4.5"
        if hard[2] < easy[1]
        else "no clear shift between easy and hard, unlike Fig 4.5"
    )
    return {
        "share": share,
        "sentence": f"mean D_ee label: easy {fmt_ci(*easy, scale=1)}, medium {mean['medium'].mean():.2f}, hard "
        f"{fmt_ci(*hard, scale=1)} ({shift})",
        "headlines": [
            ("mean_label_easy", list(easy), "mean D_ee label (exit), easy level", ""),
            ("mean_label_hard", list(hard), "mean D_ee label (exit), hard level", ""),
        ],
    }


def labels_by_lambda(val: ExitRecord, lam: float, levels: tuple[str, ...]) -> dict[str, Any]:
    """The mean D_ee score label per level over a grid of λ (and the cost term separating exit 1 from the last)."""
    grid = sorted({0.05, 0.2, 0.5, 1.0, 2.0, lam, 10.0, 50.0})
    flops = (val.require_flops() / 1e6).numpy()
    rows = []
    for lam_ in grid:
        lb = policy.exit_labels(val, "score", lam_)
        lv = val.extras["level"][lb.rows].numpy()
        rows.append(
            {
                "lambda": lam_,
                **{name: (lb.labels.numpy()[lv == k] + 1).mean() for k, name in enumerate(levels)},
                "cost term, exit 1 − last": 1 / (lam_ * flops[0]) - 1 / (lam_ * flops[-1]),
            }
        )
    table = pd.DataFrame(rows).set_index("lambda")
    later = [lam_ for lam_ in grid if table.loc[lam_, "hard"] > table.loc[lam_, "easy"]]
    sentence = (
        f"MFLOPs per exit: {np.round(flops, 1).tolist()}. Hard composites get later labels than easy ones at lambda "
        f"{later if later else 'none of the grid'}; at lambda = {lam} the cost term separates exit 1 from the last by "
        f"only {table.loc[lam, 'cost term, exit 1 − last']:.3f}, so the label is the most confident correct exit."
    )
    return {"table": table, "sentence": sentence}


def describe_run(run, settings, name: str) -> list[str]:
    """Two lines on a trained policy (``run``, a ``PolicyRun``; ``settings``: the preset's ``policy`` part): how it
    trained against the thesis's recipe, and what it and its shuffled-label control reach."""
    r, c = run.policy, run.shuffled
    on_maxmin = run.train_set.name == "maxmin"  # as train_policy picks the epochs
    epochs = (settings.maxmin_epochs or settings.epochs) if on_maxmin else settings.epochs
    thesis_epochs = 60 if on_maxmin else 100  # the thesis's runs: Max-Min policy 60 epochs, binary 100, lr 0.01
    return [
        f"{name}: policy ResNet-{settings.depth} width {settings.width}, {epochs} epochs at lr {settings.lr:g}"
        + (
            ""
            if (epochs, settings.lr) == (thesis_epochs, 0.01)
            else f" (the thesis: {thesis_epochs} epochs at lr 0.01)"
        ),
        f"{name}: D_ee train {len(run.train_set)} (dropped {run.labels_train.dropped}), test {len(run.test_set)} "
        f"(dropped {run.labels_test.dropped}); policy accuracy {fmt_ci(*r['accuracy'])} %, shuffled-label control "
        f"{fmt_ci(*c['accuracy'])} %, chance {r['chance'] * 100:.2f} %, majority label {r['majority_label'] + 1} "
        f"{fmt_ci(*r['majority_rate'])} %, balanced accuracy {fmt_ci(*r['balanced_accuracy'])} %",
    ]


def maxmin_policy_headlines(run) -> list[Headline]:
    return [
        ("policy_balanced_accuracy", list(run.policy["balanced_accuracy"]), "policy balanced accuracy", "%"),
        (
            "shuffled_balanced_accuracy",
            list(run.shuffled["balanced_accuracy"]),
            "shuffled-label control, balanced accuracy",
            "%",
        ),
        ("policy_accuracy", list(run.policy["accuracy"]), "policy accuracy", "%"),
        ("chance", run.policy["chance"], "chance (uniform over labels)", "%"),
    ]


def breakdown(run, levels: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Fig 4.6: the Max-Min policy's test accuracy (%) and sample count per D_ee label × level."""
    te = run.test_set
    table = pd.DataFrame(
        {
            "label": te.labels.numpy() + 1,
            "level": np.array(levels)[te.extras["level"].numpy()],
            "correct": (run.preds == te.labels).numpy(),
        }
    )
    cells = {"index": "label", "columns": "level", "values": "correct"}
    return {
        "accuracy": table.pivot_table(**cells, aggfunc="mean")[list(levels)] * 100,
        "count": table.pivot_table(**cells, aggfunc="size")[list(levels)],
    }


def dropped_middle(run, n_val: int) -> dict[str, Any]:
    """Eq 6's samples right only at a middle exit, dropped from the binary D_ee."""
    lab = run.labels_train
    return {
        "sentence": f"Eq 6 (binary): {lab.dropped} of {n_val} validation samples dropped, of which "
        f"{lab.dropped_middle} are right only at a middle exit (Eq 6 scores them 0 at both ends; we drop them rather "
        f"than let argmax's tie rule call them 'first'); test: {run.labels_test.dropped_middle} such samples.",
        "headlines": [
            (
                "binary_dropped_middle",
                lab.dropped_middle,
                "binary D_ee: validation samples right only at a middle exit (dropped)",
                "",
            )
        ],
    }


def per_label(run, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Fig 4.7–4.8: per binary label, its share of the training D_ee and the policy's test accuracy with its CI (%)."""
    te_labels = run.test_set.labels.numpy()
    ok = (run.preds == run.test_set.labels).numpy()
    rows = []
    for k, name in enumerate(["first exit", "last exit"]):
        n = int((te_labels == k).sum())
        m, lo, hi = (
            bootstrap_mean(ok[te_labels == k].astype(float), n_boot=n_boot, seed=seed) if n > 1 else (np.nan,) * 3
        )
        share = run.labels_train.distribution()[k] * 100
        rows.append(
            {
                "label": name,
                "train share %": share,
                "test n": n,
                "policy accuracy %": m * 100,
                "low": lo * 100,
                "high": hi * 100,
            }
        )
    return pd.DataFrame(rows)


BASELINE_NAMES = {"true": "the true class", "exit1": "exit 1's predicted class"}


def class_baselines(
    val: ExitRecord, test: ExitRecord, runs: dict[str, tuple[float, Any]], dataset: str, *, n_boot: int, seed: int
) -> dict[str, Any]:
    """Does a binary policy know more than the class? ``runs``: ``balancing`` and ``thesis`` → (λ, its PolicyRun).
    Returns the table, the sentences (per λ and baseline, and against the thesis) and the headlines (section
    ``policy``)."""
    rows, sentences, comparisons = [], [], {}
    for which, (lam, run) in runs.items():
        c = comparisons[which] = policy.class_baseline_comparison(
            val, run.labels_train, test, run.labels_test, run.preds, n_boot=n_boot, seed=seed
        )
        shares = run.labels_train.distribution() * 100
        rows.append(
            {
                "λ": f"{lam:.3g} ({which})",
                "labels first / last %": f"{shares[0]:.1f} / {shares[1]:.1f}",
                "policy balanced %": fmt_ci(*run.policy["balanced_accuracy"], digits=1),
                "shuffled control %": fmt_ci(*run.shuffled["balanced_accuracy"], digits=1),
                "baseline: true class %": fmt_ci(*c["balanced"]["true"], digits=1),
                "baseline: exit-1 class %": fmt_ci(*c["balanced"]["exit1"], digits=1),
                "policy − true-class baseline (pts)": fmt_ci(*c["difference"]["true"], digits=1),
                "policy − exit-1-class baseline (pts)": fmt_ci(*c["difference"]["exit1"], digits=1),
            }
        )
        sentences += _baseline_notes(lam, c)
        sentences += [
            policy.beyond_class_verdict(lam, run.policy["balanced_accuracy"], c["difference"][by], BASELINE_NAMES[by])
            + "."
            for by in ("true", "exit1")
        ]
    sentences.append(
        policy.thesis_binary_comparison(dataset, {lam: run.policy["balanced_accuracy"] for lam, run in runs.values()})
    )
    return {
        "table": pd.DataFrame(rows).set_index("λ"),
        "sentences": sentences,
        "headlines": _baseline_headlines(runs, comparisons, dataset),
    }


def _baseline_notes(lam: float, c: dict) -> list[str]:
    out = []
    for by, b in c["baselines"].items():
        if c["plain_balanced"][by] is not None:
            out.append(
                f"lambda = {lam:.3g}, baseline from {BASELINE_NAMES[by]}: the plain (unweighted) per-class majority "
                f"labels some test samples otherwise; its balanced accuracy is "
                f"{fmt_ci(*c['plain_balanced'][by], digits=1)} %"
            )
        if b.unseen:
            out.append(
                f"lambda = {lam:.3g}: {b.unseen} test samples of a class ({BASELINE_NAMES[by]}) without D_ee training "
                f"samples get the training majority label"
            )
    return out


def _baseline_headlines(runs: dict, comparisons: dict, dataset: str) -> list[Headline]:
    out = [
        ("binary_balancing_lambda", runs["balancing"][0], "binary policy: the balancing lambda", ""),
        ("binary_thesis_lambda", runs["thesis"][0], "binary policy: the thesis's lambda", ""),
    ]
    for which, prefix, name in (("balancing", "", "binary"), ("thesis", "thesis_lambda_", "binary_thesis_lambda")):
        c, run = comparisons[which], runs[which][1]
        what = "balancing" if which == "balancing" else "thesis's"
        if which == "thesis":
            out.append(
                (
                    "binary_thesis_lambda_balanced_accuracy",
                    list(run.policy["balanced_accuracy"]),
                    f"{dataset} binary policy at the thesis's lambda, balanced accuracy",
                    "%",
                )
            )
        out += [
            (
                f"{prefix}class_baseline_true_balanced_accuracy",
                list(c["balanced"]["true"]),
                f"binary labels at the {what} lambda: true-class baseline, balanced accuracy",
                "%",
            ),
            (
                f"{prefix}class_baseline_exit1_balanced_accuracy",
                list(c["balanced"]["exit1"]),
                f"binary labels at the {what} lambda: exit-1-predicted-class baseline, balanced accuracy",
                "%",
            ),
            (
                f"{name}_minus_class_baseline",
                list(c["difference"]["true"]),
                f"binary policy at the {what} lambda minus the true-class baseline (paired)",
                "pts",
            ),
            (
                f"{name}_minus_exit1_class_baseline",
                list(c["difference"]["exit1"]),
                f"binary policy at the {what} lambda minus the exit-1-class baseline (paired)",
                "pts",
            ),
        ]
    return out


def train_vs_val(train: ExitRecord, val: ExitRecord, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Fig 4.1: D_ee's first-correct-exit labels from the training split vs the validation split, with exit 1's
    accuracy on each."""
    rows, labels = [], {}
    for name, rec in (("training split", train), ("validation split", val)):
        lb = policy.exit_labels(rec, "first")
        a1 = bootstrap_mean(rec.correct[:, 0].double(), n_boot=n_boot, seed=seed)
        labels[name] = (lb.distribution(), a1)
        rows.append(
            {
                "split": name,
                "n": rec.num_samples,
                "exit 1 accuracy": fmt_ci(*a1),
                "label 1 share %": lb.distribution()[0] * 100,
            }
        )
    table = pd.DataFrame(rows).set_index("split")
    sentence = (
        f"exit 1: {table['exit 1 accuracy'].iloc[0]} % on the training split vs {table['exit 1 accuracy'].iloc[1]} % on "
        "validation (thesis, CIFAR-100: 75.05 vs 60.93)"
    )
    return {"table": table, "labels": labels, "sentence": sentence}


def as_exit_rule(name: str, records: dict[str, ExitRecord], run) -> dict[str, Any]:
    """The policy as an exit rule on the accuracy–FLOPs plane, against the thesis's thresholds at the same cost: the
    plane's parts (anytime, the thesis curve, the bounds, the policy's point) and the sentence."""
    curve = exits.budgeted_curve(records["val"], records["test"])
    point = {"flops": run.exit_policy["flops"], "accuracy": run.exit_policy["accuracy"], "label": "policy network"}
    at = np.interp(point["flops"], curve["test_flops"], curve["test_acc"])
    return {
        "anytime": exits.anytime_curve(records["test"]),
        "curves": {"thesis": curve},
        "bounds": overthinking.bounds(records["test"]),
        "point": point,
        "sentence": f"{name}: policy exits → {point['accuracy'] * 100:.2f} % at {point['flops'] / 1e6:.2f} MFLOPs; the "
        f"confidence thresholds give {at * 100:.2f} % at the same cost",
    }


THESIS_RESULTS = {
    "maxmin": "51.83 (chance 20, majority 27)",
    "binary": "CIFAR-100 43.25 (lambda 5); SVHN 49.92 (lambda 20)",
}


def summary(rows: list[tuple[str, str, Any]]) -> pd.DataFrame:
    """One row per policy: ``(setting, which thesis result it sits beside, its PolicyRun)``, with its verdict."""
    return pd.DataFrame(
        [
            {
                "setting": setting,
                "ours": fmt_ci(*run.policy["accuracy"]),
                "thesis": THESIS_RESULTS[thesis],
                "majority": fmt_ci(*run.policy["majority_rate"]),
                "shuffled": fmt_ci(*run.shuffled["accuracy"]),
                "balanced": fmt_ci(*run.policy["balanced_accuracy"]),
                "shuffled balanced": fmt_ci(*run.shuffled["balanced_accuracy"]),
                "verdict": policy.verdict(run.policy, run.shuffled),
            }
            for setting, thesis, run in rows
        ]
    )
