"""Exit rules side by side, on records only: when does a sample stop, and what does the network answer then?

A rule sweeps settings (fitted on the **validation** record) and decides, for every sample of a record, the exit it
stops at and the class it answers there; every setting is then evaluated on the **test** record. Rules here:

- ``threshold`` (the thesis, §3.2): exit at the first k whose confidence (max softmax, entropy, margin or ratio)
  reaches T_k, the thresholds from Algorithm 1 on the validation record for p = 1..39 (:mod:`.exits`).
- ``patience`` (PABEE, Zhou et al. 2020): exit at the first exit k whose prediction equals those of the ``patience``
  exits before it (``patience`` + 1 equal predictions in a row), else at the last exit; settings patience = 0..E−1
  (0: always exit 1). No fitting; the budget follows from the patience.
- ``ensemble`` (a training-free reading of ZTW, Wołczyk et al. 2021): at exit k the answer is the running mean of the
  probabilities of exits 1..k (``kind="mean"``) or their normalised geometric mean (``"geometric"``), and its max is
  the confidence that Algorithm 1's thresholds are fitted on. ZTW's learned per-exit weights are not part of it.

A new rule is an :class:`ExitRule` (``settings(val)`` and ``decide(rec, setting)``) passed to :func:`register_rule`.
:func:`rule_curve` evaluates a rule on a validation/test pair; :func:`matched_difference` compares two rules at a
matched budget (each rule's best setting on **validation** within the budget, then the paired bootstrap CI of the
per-sample difference on test). Costs are the records' cumulative FLOPs per exit; without them, accuracies are still
computed and the costs are NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..records import ExitRecord, check_same_model
from .exits import CRITERIA, confidence, exit_of, summarize_exits, thresholds_thesis
from .stats import bootstrap_mean


@dataclass
class Decision:
    """What a rule does on a record: ``exits`` ``[N]`` (0-based exit per sample), ``preds`` ``[N]`` (the class it
    answers there)."""

    exits: torch.Tensor
    preds: torch.Tensor


@dataclass(frozen=True)
class ExitRule:
    """An exit rule: ``settings(val)`` → parameter settings (dicts, fitted on the validation record, JSON-able);
    ``decide(rec, setting)`` → :class:`Decision`; ``label(setting)`` → short text for tables and hover."""

    name: str
    settings: Callable[[ExitRecord], list[dict[str, Any]]]
    decide: Callable[[ExitRecord, dict[str, Any]], Decision]
    label: Callable[[dict[str, Any]], str] = field(default=lambda s: ", ".join(f"{k}={v}" for k, v in s.items()))


RULES: dict[str, ExitRule] = {}


def register_rule(rule: ExitRule) -> ExitRule:
    """Make ``rule`` available by name (a new rule: a few lines, see the module docstring)."""
    RULES[rule.name] = rule
    return rule


def get_rule(name: str) -> ExitRule:
    if name not in RULES:
        raise ConfigError(f"unknown exit rule {name!r}: choose one of {', '.join(RULES)}")
    return RULES[name]


def _own_answers(rec: ExitRecord, exits: torch.Tensor) -> Decision:
    exits = torch.as_tensor(exits, dtype=torch.long)
    return Decision(exits, rec.preds[torch.arange(rec.num_samples), exits])


# ---------------------------------------------------------------- threshold (the thesis)
def threshold_rule(criterion: str = "max_softmax", ps=range(1, 40), b: float = 20.0) -> ExitRule:
    """The thesis's rule: Algorithm 1 thresholds on ``criterion`` (see :mod:`.exits`)."""
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown exit criterion {criterion!r}: choose one of {', '.join(CRITERIA)}")

    def settings(val: ExitRecord) -> list[dict[str, Any]]:
        conf = confidence(val, criterion)
        return [{"p": int(p), "thresholds": thresholds_thesis(conf, int(p), b)[0].tolist()} for p in ps]

    def decide(rec: ExitRecord, s: dict[str, Any]) -> Decision:
        return _own_answers(rec, exit_of(confidence(rec, criterion), s["thresholds"]))

    name = "threshold" if criterion == "max_softmax" else f"threshold-{criterion}"
    return ExitRule(name, settings, decide, lambda s: f"p={s['p']}")


# ---------------------------------------------------------------- patience (PABEE)
def patience_exits(preds: torch.Tensor, patience: int) -> torch.Tensor:
    """``[N]`` exit (0-based): the first k with ``preds[:, k-patience..k]`` all equal, else the last exit."""
    n, e = preds.shape
    if isinstance(patience, bool) or not isinstance(patience, int) or not 0 <= patience < e:
        raise ConfigError(f"patience must be an integer in 0..{e - 1} for {e} exits, got {patience!r}")
    streak = torch.zeros(n, dtype=torch.long)  # equal predictions in a row ending at exit k, minus one
    exits = torch.full((n,), e - 1, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    for k in range(e):
        if k > 0:
            streak = torch.where(preds[:, k] == preds[:, k - 1], streak + 1, torch.zeros_like(streak))
        stop = ~done & (streak >= patience)
        exits[stop] = k
        done |= stop
    return exits


def _patience_settings(val: ExitRecord) -> list[dict[str, Any]]:
    return [{"patience": k} for k in range(val.num_exits)]


register_rule(
    ExitRule(
        "patience",
        _patience_settings,
        lambda rec, s: _own_answers(rec, patience_exits(rec.preds, s["patience"])),
        lambda s: f"patience={s['patience']}",
    )
)


# ---------------------------------------------------------------- running ensemble (ZTW, training-free)
def running_ensemble(rec: ExitRecord, kind: str = "mean") -> torch.Tensor:
    """``[N, E, C]`` probabilities of the ensemble of exits 1..k at every k: their mean, or the normalised geometric
    mean (softmax of the mean log-probability)."""
    if kind == "mean":
        return rec.probs.double().cumsum(1) / torch.arange(1, rec.num_exits + 1, dtype=torch.float64)[None, :, None]
    if kind == "geometric":
        logp = F.log_softmax(rec.logits.double(), -1).cumsum(1)
        return F.softmax(logp / torch.arange(1, rec.num_exits + 1, dtype=torch.float64)[None, :, None], -1)
    raise ConfigError(f"ensemble kind must be 'mean' or 'geometric', got {kind!r}")


def ensemble_rule(kind: str = "mean", ps=range(1, 40), b: float = 20.0) -> ExitRule:
    """Running ensemble of the exits seen so far; Algorithm 1 thresholds on its max probability."""

    def settings(val: ExitRecord) -> list[dict[str, Any]]:
        conf = running_ensemble(val, kind).max(-1).values
        return [{"p": int(p), "thresholds": thresholds_thesis(conf, int(p), b)[0].tolist()} for p in ps]

    def decide(rec: ExitRecord, s: dict[str, Any]) -> Decision:
        ens = running_ensemble(rec, kind)
        best = ens.max(-1)
        exits = exit_of(best.values, s["thresholds"])
        rows = torch.arange(rec.num_samples)
        return Decision(exits, best.indices[rows, exits])

    return ExitRule(f"ensemble-{kind}", settings, decide, lambda s: f"p={s['p']}")


register_rule(threshold_rule())
register_rule(ensemble_rule("mean"))
register_rule(ensemble_rule("geometric"))


# ---------------------------------------------------------------- evaluation
def evaluate(rec: ExitRecord, decision: Decision) -> dict[str, Any]:
    """Accuracy, expected cost (NaN without FLOPs), exit fractions and per-sample correctness of a decision."""
    return summarize_exits(rec, decision.exits, decision.preds == rec.labels)


def rule_curve(rule: ExitRule | str, val: ExitRecord, test: ExitRecord) -> pd.DataFrame:
    """Every setting of ``rule`` fitted on ``val``, evaluated on ``val`` and ``test``.

    Columns: rule, label, setting, val_acc, val_flops, test_acc, test_flops, test_fractions, test_correct (the
    per-sample correctness on test, for paired comparisons).
    """
    rule = get_rule(rule) if isinstance(rule, str) else rule
    check_same_model(val, test)
    if val.num_exits != test.num_exits:
        raise ConfigError(f"validation and test records have {val.num_exits} and {test.num_exits} exits")
    rows = []
    for s in rule.settings(val):
        v, t = evaluate(val, rule.decide(val, s)), evaluate(test, rule.decide(test, s))
        rows.append(
            {
                "rule": rule.name,
                "label": rule.label(s),
                "setting": s,
                "val_acc": v["accuracy"],
                "val_flops": v["flops"],
                "test_acc": t["accuracy"],
                "test_flops": t["flops"],
                "test_fractions": t["fractions"],
                "test_correct": t["correct"].numpy(),
            }
        )
    return pd.DataFrame(rows)


def best_within(curve: pd.DataFrame, budget: float) -> pd.Series | None:
    """The setting with the highest validation accuracy whose validation cost ≤ ``budget`` (ties: the cheaper);
    None when every setting costs more."""
    ok = curve[curve["val_flops"] <= budget * (1 + 1e-12)]
    if ok.empty:
        return None
    return ok.sort_values(["val_acc", "val_flops"], ascending=[False, True]).iloc[0]


def matched_difference(
    curve: pd.DataFrame, reference: pd.DataFrame, budget: float, *, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any] | None:
    """Test accuracy of ``curve``'s rule minus ``reference``'s at a matched budget: each rule's best setting on
    validation within ``budget`` FLOPs per sample, then the paired bootstrap CI over test samples of the per-sample
    difference. None when either rule has no setting within the budget."""
    a, r = best_within(curve, budget), best_within(reference, budget)
    if a is None or r is None:
        return None
    est, lo, hi = bootstrap_mean(
        a["test_correct"].astype(np.float64) - r["test_correct"].astype(np.float64), n_boot=n_boot, seed=seed
    )
    return {
        "rule": a["rule"],
        "setting": a["label"],
        "reference": r["rule"],
        "reference_setting": r["label"],
        "budget": budget,
        "test_flops": a["test_flops"],
        "reference_test_flops": r["test_flops"],
        "test_acc": a["test_acc"],
        "reference_test_acc": r["test_acc"],
        "difference": est,
        "low": lo,
        "high": hi,
    }


def matched_budgets(rec: ExitRecord, shares=(0.25, 0.5, 0.75)) -> list[float]:
    """Budgets between exit 1's cost and the last exit's, at ``shares`` of the way."""
    f = rec.require_flops("matched budgets")
    return [float(f[0] + s * (f[-1] - f[0])) for s in shares]


def rule_outcomes(rec: ExitRecord, decision: Decision) -> dict[str, torch.Tensor]:
    """Per sample under a rule: ``overthought`` (answered wrong at its exit though an earlier exit was right) and
    ``wasted`` (answered right at its exit though an earlier exit was already right: computation past a right
    answer)."""
    correct = rec.correct
    e = rec.num_exits
    earlier = torch.zeros_like(correct)
    if e > 1:
        earlier[:, 1:] = correct.int().cummax(1).values[:, :-1].bool()
    rows = torch.arange(rec.num_samples)
    had = earlier[rows, decision.exits]
    right = decision.preds == rec.labels
    return {"overthought": had & ~right, "wasted": had & right}


# ---------------------------------------------------------------- SDN's confusion
def confusion(rec: ExitRecord) -> torch.Tensor:
    """SDN's confusion score (Kaya et al. 2019) per sample ``[N]``: Σ_k ‖p_k − p_E‖₁ over the exits' softmax
    probabilities (how much the internal exits disagree with the final one; the paper then standardises it)."""
    p = rec.probs.double()
    return (p - p[:, -1:, :]).abs().sum(-1).sum(-1)


def auroc(score, positive) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (ties count half; NaN when a class is empty)."""
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


__all__ = [
    "RULES",
    "Decision",
    "ExitRule",
    "auroc",
    "best_within",
    "confusion",
    "ensemble_rule",
    "evaluate",
    "get_rule",
    "matched_budgets",
    "matched_difference",
    "patience_exits",
    "register_rule",
    "rule_curve",
    "rule_outcomes",
    "running_ensemble",
    "threshold_rule",
]
