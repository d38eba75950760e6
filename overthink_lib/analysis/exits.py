"""Exit criteria, threshold algorithms, anytime and budgeted-batch curves (thesis §3.2, Algorithm 1). Records only.

Budgeted batch: each exit k < n has a threshold T_k; a sample leaves at the first exit whose confidence ≥ T_k, and
the last exit takes everything left (T_n = −∞). The expected cost per sample is Σ_k q_k · C_k (Eq 3.9), q_k the
fraction exiting at k and C_k exit k's cumulative FLOPs.

Two ways of choosing the thresholds on the **validation** record, then applied to the **test** record:

- ``thesis`` (Algorithm 1): q_k = (p/b)^k / Σ_j (p/b)^j for p = 1..iter, b = 20; for k = 1..n−1 the ⌊q_k·m⌋ most
  confident validation samples not yet exited are taken at exit k and exactly those are removed from later exits;
  T_k is the lowest confidence among them (+∞ when the quota is 0). Its planned cost is Σ_k q_k · C_k (the thesis
  computes the budget from Q, Eq 3.9); we also report the cost measured on the test set.
- ``official`` (MSDNet-PyTorch ``dynamic_evaluate``): p = 1..39, q = p/20, share_k = q^k / Σ_{j=1..n} q^j; for k < n,
  exit k's validation confidences are sorted descending, already-exited samples skipped, T_k = the confidence of the
  ⌊N·share_k⌋-th remaining sample (+∞ when that count is 0), and then *every* sample with confidence ≥ T_k counts as
  exited (ties included). T_n = −∞.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ..config import ConfigError
from ..records import ExitRecord, check_same_model
from .stats import bootstrap_mean


def _max_softmax(p: torch.Tensor) -> torch.Tensor:
    return p.max(-1).values


def _neg_entropy(p: torch.Tensor) -> torch.Tensor:
    return (p * p.clamp_min(1e-12).log()).sum(-1)  # Eq 3.8: Σ y log y (≤ 0; higher = more confident)


def _margin(p: torch.Tensor) -> torch.Tensor:
    top = p.topk(2, -1).values
    return top[..., 0] - top[..., 1]


def _ratio(p: torch.Tensor) -> torch.Tensor:
    top = p.topk(2, -1).values
    return 1 - top[..., 1] / top[..., 0].clamp_min(1e-12)  # 1 − p₂/p₁ ∈ [0, 1]


#: Confidence criteria: probabilities ``[..., C]`` → confidence ``[...]``, higher = more confident.
CRITERIA: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_softmax": _max_softmax,  # Eq 3.7, the default
    "entropy": _neg_entropy,
    "margin": _margin,
    "ratio": _ratio,
}


def confidence(rec: ExitRecord, criterion: str = "max_softmax") -> torch.Tensor:
    """``[N, E]`` confidence of every exit on every sample."""
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown exit criterion {criterion!r}: choose one of {', '.join(CRITERIA)}")
    return CRITERIA[criterion](rec.probs)


def anytime_curve(rec: ExitRecord) -> pd.DataFrame:
    """Per-exit accuracy vs cumulative FLOPs (anytime prediction)."""
    return pd.DataFrame(
        {
            "exit": range(1, rec.num_exits + 1),
            "flops": rec.require_flops("the anytime curve").numpy(),
            "accuracy": rec.accuracy().numpy(),
        }
    )


def check_thresholds(thresholds, n_exits: int) -> torch.Tensor:
    """Thresholds for exits 1..n−1 (or 1..n) as a float64 tensor of n, the last −∞; a wrong count or NaN → one
    ConfigError."""
    t = torch.as_tensor(np.asarray(thresholds, dtype=np.float64))
    if t.ndim != 1 or len(t) not in (n_exits - 1, n_exits):
        raise ConfigError(
            f"thresholds need {n_exits - 1} values (exits 1..{n_exits - 1}; the last exit takes the "
            f"rest) or {n_exits}, got {tuple(t.shape)}"
        )
    if torch.isnan(t).any():
        raise ConfigError("thresholds must not be NaN")
    if len(t) == n_exits - 1:
        t = torch.cat([t, torch.tensor([-math.inf], dtype=t.dtype)])
    return t


def exit_of(conf: torch.Tensor, thresholds) -> torch.Tensor:
    """Exit (0-based) where each sample leaves: the first k with conf ≥ T_k; the last exit takes the rest."""
    t = check_thresholds(thresholds, conf.shape[1]).clone()
    t[-1] = -math.inf
    passes = conf.double() >= t[None, :]  # [N, E]
    return passes.int().argmax(1)  # the first True (the last column is always True)


def apply_thresholds(rec: ExitRecord, thresholds, criterion: str = "max_softmax") -> dict:
    """Budgeted-batch result of hand-set thresholds: accuracy, expected FLOPs, exit fractions, per-sample exits."""
    return evaluate_exits(rec, exit_of(confidence(rec, criterion), thresholds))


def evaluate_exits(rec: ExitRecord, exits: torch.Tensor) -> dict:
    """Every sample answered by its own exit ``exits[n]`` (0-based): accuracy, expected FLOPs (NaN when the record
    has none), exit fractions, and per sample the exit and whether it was right."""
    exits = torch.as_tensor(exits, dtype=torch.long)
    return summarize_exits(rec, exits, rec.correct[torch.arange(rec.num_samples), exits])


def summarize_exits(rec: ExitRecord, exits: torch.Tensor, correct: torch.Tensor) -> dict:
    """Accuracy, expected FLOPs (NaN without FLOPs), exit fractions, and per sample the exit and whether the answer
    given there (``correct``) was right — whatever rule chose the exits and the answers."""
    fractions = torch.bincount(exits, minlength=rec.num_exits).double() / rec.num_samples
    cost = float((fractions * rec.flops).sum()) if rec.flops is not None else float("nan")
    return {
        "accuracy": correct.double().mean().item(),
        "flops": cost,
        "fractions": fractions.tolist(),
        "exits": exits,
        "correct": correct,
    }


def _shares(p: int, b: float, n: int) -> np.ndarray:
    q = np.exp(np.log(p / b) * np.arange(1, n + 1))
    return q / q.sum()


def thresholds_thesis(conf: torch.Tensor, p: int, b: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 for one p: (thresholds ``[E]``, planned exit shares ``[E]``)."""
    m, n = conf.shape
    shares = _shares(p, b, n)
    alive = torch.ones(m, dtype=torch.bool)
    t = np.full(n, math.inf)
    for k in range(n - 1):
        quota = math.floor(shares[k] * m + 1e-9)
        cand = torch.nonzero(alive).squeeze(1)
        quota = min(quota, len(cand))
        if quota > 0:
            top = cand[conf[cand, k].argsort(descending=True, stable=True)[:quota]]
            t[k] = conf[top, k].min().item()
            alive[top] = False
    t[-1] = -math.inf
    return t, shares


def thresholds_official(conf: torch.Tensor, p: int) -> tuple[np.ndarray, np.ndarray]:
    """MSDNet-PyTorch's rule for one p: (thresholds ``[E]``, shares ``[E]``)."""
    m, n = conf.shape
    shares = _shares(p, 20.0, n)
    filtered = torch.zeros(m, dtype=torch.bool)
    t = np.full(n, math.inf)
    for k in range(n - 1):
        out_n = math.floor(m * shares[k])
        order = conf[:, k].argsort(descending=True, stable=True)
        remaining = order[~filtered[order]]
        if out_n > 0 and out_n <= len(remaining):
            t[k] = conf[remaining[out_n - 1], k].item()
        filtered |= conf[:, k] >= t[k]
    t[-1] = -math.inf
    return t, shares


def budgeted_curve(
    val: ExitRecord,
    test: ExitRecord,
    *,
    method: str = "thesis",
    criterion: str = "max_softmax",
    ps=None,
    b: float = 20.0,
) -> pd.DataFrame:
    """Thresholds from ``val`` for each p, applied to ``test``: the budgeted-batch curve as a tidy table.

    Columns: p, thresholds, planned_fractions, val_fractions, test_fractions, val_acc, test_acc, val_flops, test_flops,
    planned_flops (Σ q_k C_k).
    """
    check_same_model(val, test)
    if method not in ("thesis", "official"):
        raise ConfigError(f"unknown threshold method {method!r}: use 'thesis' (Algorithm 1) or 'official'")
    ps = list(range(1, 40)) if ps is None else list(ps)
    vconf = confidence(val, criterion)
    rows = []
    for p in ps:
        if p <= 0:
            raise ConfigError(f"p must be a positive integer, got {p}")
        t, shares = thresholds_thesis(vconf, p, b) if method == "thesis" else thresholds_official(vconf, p)
        v, te = apply_thresholds(val, t, criterion), apply_thresholds(test, t, criterion)
        rows.append(
            {
                "p": p,
                "thresholds": t.tolist(),
                "planned_fractions": shares.tolist(),
                "val_fractions": v["fractions"],
                "test_fractions": te["fractions"],
                "val_acc": v["accuracy"],
                "test_acc": te["accuracy"],
                "val_flops": v["flops"],
                "test_flops": te["flops"],
                "planned_flops": float((shares * val.require_flops("the budgeted curve").numpy()).sum()),
            }
        )
    return pd.DataFrame(rows)


def thresholds_for_budget(curve: pd.DataFrame, budget: float, flops_column: str = "val_flops") -> pd.Series:
    """The row of ``curve`` with the highest validation accuracy whose expected FLOPs ≤ ``budget``."""
    ok = curve[curve[flops_column] <= budget]
    if ok.empty:
        raise ConfigError(
            f"budget {budget:,.0f} FLOPs per sample is below the cheapest point of the curve "
            f"({curve[flops_column].min():,.0f}, at least exit 1's cost): no thresholds meet it"
        )
    return ok.loc[ok["val_acc"].idxmax()]


def compare_to_anytime(curve: pd.DataFrame, anytime: pd.DataFrame) -> pd.DataFrame:
    """Each budgeted point of ``curve`` (:func:`budgeted_curve`, with optional ``low`` CI column) against the anytime
    accuracy (:func:`anytime_curve`) interpolated linearly in FLOPs at the point's test cost — what mixing the two
    neighbouring exits at random would give (outside the exits' range, the end exit's accuracy).

    Columns (percent, MFLOPs): p, MFLOPs, budgeted %, budgeted low %, anytime interp %, gain (pts) (budgeted −
    anytime), above, CI excludes anytime (the CI's low end above the interpolation; False without a ``low`` column).
    """
    anytime_at = np.interp(curve["test_flops"], anytime["flops"], anytime["accuracy"])  # anytime flops: increasing
    low = curve["low"] * 100 if "low" in curve else np.full(len(curve), np.nan)
    out = pd.DataFrame(
        {
            "p": curve["p"],
            "MFLOPs": curve["test_flops"] / 1e6,
            "budgeted %": curve["test_acc"] * 100,
            "budgeted low %": low,
            "anytime interp %": anytime_at * 100,
        }
    )
    out["gain (pts)"] = out["budgeted %"] - out["anytime interp %"]
    out["above, CI excludes anytime"] = out["budgeted low %"] > out["anytime interp %"]
    return out


def gain_over_anytime(cmp: pd.DataFrame, anytime: pd.DataFrame) -> dict:
    """Summary of :func:`compare_to_anytime`'s table over the points whose cost lies strictly between exit 1's and
    the last exit's (where the interpolation is between two exits, not clamped to an end).

    Returns:
        ``points`` (how many lie inside), ``above`` (with a positive gain), ``ci_above`` (with the CI above anytime)
        and ``best``: the inside row with the largest gain (the first of equal ones), None when no point is inside.
    """
    lo, hi = anytime["flops"].iloc[0] / 1e6, anytime["flops"].iloc[-1] / 1e6
    inside = cmp[(cmp["MFLOPs"] > lo) & (cmp["MFLOPs"] < hi)]
    return {
        "points": len(inside),
        "above": int(inside["gain (pts)"].gt(0).sum()),
        "ci_above": int(inside["above, CI excludes anytime"].sum()),
        "best": inside.loc[inside["gain (pts)"].idxmax()] if len(inside) else None,
    }


def anytime_exit_within(rec: ExitRecord, cost: float) -> int:
    """0-based deepest exit whose cumulative FLOPs are ≤ ``cost`` (with a relative tolerance of 1e-9): the fixed
    exit an anytime network would run on that budget. A budgeted rule's expected cost is never below exit 1's, so
    some exit always qualifies; a cost below exit 1's → one ConfigError."""
    flops = rec.require_flops("the anytime comparator").double().numpy()
    if not np.isfinite(cost):
        raise ConfigError(f"the cost to compare at must be a finite number of FLOPs, got {cost}")
    ok = np.flatnonzero(flops <= cost * (1 + 1e-9))
    if len(ok) == 0:
        raise ConfigError(
            f"cost {cost:,.0f} FLOPs per sample is below exit 1's ({flops[0]:,.0f}): no fixed exit fits; "
            "compare at a cost of at least exit 1's"
        )
    return int(ok[-1])


def _paired_verdict(est: float, low: float, high: float) -> str:
    """A paired difference's verdict worded from its CI."""
    if low > 0 or high < 0:
        side = "higher" if est > 0 else "lower"
        return f"the paired 95 % CI excludes 0: budgeted batch is measurably {side} than the fixed exit"
    return "the paired 95 % CI includes 0: no measurable difference from the fixed exit"


def paired_budgeted_minus_anytime(
    val: ExitRecord,
    test: ExitRecord,
    budget: float,
    *,
    method: str = "thesis",
    criterion: str = "max_softmax",
    n_boot: int = 2000,
    seed: int = 0,
    curve: pd.DataFrame | None = None,
) -> dict:
    """Budgeted batch minus anytime at one budget, paired over the same test samples.

    The budgeted rule: of :func:`budgeted_curve`'s points (``curve`` if given, else computed from ``val`` and
    ``test`` with ``method`` and ``criterion``), the one :func:`thresholds_for_budget` picks (the best validation
    accuracy within ``budget`` validation FLOPs), applied to ``test``. The anytime comparator is an actual exit, not
    an interpolation (an interpolation between exits is no per-sample outcome): the deepest exit whose cost is ≤ the
    rule's realised test cost (:func:`anytime_exit_within`), so the fixed exit never spends more than the rule did.
    Per test sample the difference is (budgeted right) − (comparator exit right) ∈ {−1, 0, 1}; its mean has a
    percentile bootstrap CI resampling the samples (both outcomes of a sample travel together).

    Returns:
        dict with ``budget``, ``p``, ``thresholds``, ``budgeted_acc``, ``budgeted_flops`` (test), ``anytime_exit``
        (1-based), ``anytime_flops``, ``anytime_acc``, ``est``, ``low``, ``high`` (fractions: budgeted − anytime),
        ``excludes_zero`` and ``verdict`` (a sentence worded from the CI).
    """
    check_same_model(val, test)
    if not (isinstance(budget, int | float | np.floating | np.integer) and np.isfinite(budget) and budget > 0):
        raise ConfigError(f"budget must be a positive finite number of FLOPs per sample, got {budget!r}")
    if curve is None:
        curve = budgeted_curve(val, test, method=method, criterion=criterion)
    row = thresholds_for_budget(curve, float(budget))
    res = apply_thresholds(test, row["thresholds"], criterion)
    k = anytime_exit_within(test, res["flops"])
    diff = res["correct"].double() - test.correct[:, k].double()
    est, low, high = bootstrap_mean(diff, n_boot=n_boot, seed=seed)
    return {
        "budget": float(budget),
        "p": int(row["p"]),
        "thresholds": list(row["thresholds"]),
        "budgeted_acc": res["accuracy"],
        "budgeted_flops": res["flops"],
        "anytime_exit": k + 1,
        "anytime_flops": float(test.flops[k]),
        "anytime_acc": float(test.correct[:, k].double().mean()),
        "est": est,
        "low": low,
        "high": high,
        "excludes_zero": bool(low > 0 or high < 0),
        "verdict": _paired_verdict(est, low, high),
    }


def paired_curve_minus_anytime(
    test: ExitRecord, curve: pd.DataFrame, *, criterion: str = "max_softmax", n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Every point of ``curve`` (:func:`budgeted_curve`) against the deepest exit whose cost is ≤ the point's test
    cost (as in :func:`paired_budgeted_minus_anytime`), paired over ``test``'s samples; all points resampled jointly.

    Columns (percent, MFLOPs): p, MFLOPs, budgeted %, anytime exit (1-based), anytime %, paired diff (pts), low,
    high, CI excludes 0, inside (the cost lies strictly between exit 1's and the last exit's).
    """
    if len(curve) == 0:
        raise ConfigError("the budgeted curve has no points: build it with budgeted_curve(val, test)")
    flops = test.require_flops("the paired comparison").double().numpy()
    diffs, rows = [], []
    for _, r in curve.iterrows():
        res = apply_thresholds(test, r["thresholds"], criterion)
        k = anytime_exit_within(test, res["flops"])
        diffs.append((res["correct"].double() - test.correct[:, k].double()).numpy())
        rows.append(
            {
                "p": int(r["p"]),
                "MFLOPs": res["flops"] / 1e6,
                "budgeted %": res["accuracy"] * 100,
                "anytime exit": k + 1,
                "anytime %": float(test.correct[:, k].double().mean()) * 100,
                "inside": bool(flops[0] < res["flops"] < flops[-1]),
            }
        )
    est, low, high = bootstrap_mean(np.stack(diffs, 1), n_boot=n_boot, seed=seed)
    out = pd.DataFrame(rows)
    out["paired diff (pts)"], out["low"], out["high"] = est * 100, low * 100, high * 100
    out["CI excludes 0"] = (out["low"] > 0) | (out["high"] < 0)
    columns = ["p", "MFLOPs", "budgeted %", "anytime exit", "anytime %", "paired diff (pts)", "low", "high"]
    return out[[*columns, "CI excludes 0", "inside"]]
