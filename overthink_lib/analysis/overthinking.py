"""Overthinking metrics and oracle bounds (thesis §3.3, eq. 3.11; Kaya et al. 2019). Records only.

- **overthought** (thesis): some exit i classifies the sample correctly and some later exit j > i does not.
- **wasteful** (SDN): an exit before the last is already correct — the computation after the first correct exit is
  wasted (the final exit may be right or wrong).
- **destructive** (SDN): some exit before the last is correct and the final exit is wrong; we also report its share of
  all final-exit errors (how many of the network's mistakes an earlier exit had right).
- **pairwise** P(exit i right ∧ exit j wrong), an E × E matrix (upper triangle = overthinking between i < j).
- **oracle**: each sample exits at its first correct exit, at that exit's cost; a sample no exit gets right costs 0.
  **realistic**: the same, but such a sample pays the full network. Both reach the **collective** accuracy (any exit
  right).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import ConfigError
from ..records import ExitRecord
from .stats import bootstrap_mean, bootstrap_statistic


def _earlier_correct(correct: torch.Tensor) -> torch.Tensor:
    """``[N, E]``: some exit before e is correct (False for e = 0)."""
    c = correct.int()
    before = torch.cumsum(c, 1) - c  # number of correct exits strictly before e
    return before > 0


def overthought(rec: ExitRecord) -> torch.Tensor:
    """``[N]`` bool: the sample is overthought (Eq 3.11)."""
    c = rec.correct
    return (_earlier_correct(c) & ~c).any(1)


def wasteful(rec: ExitRecord) -> torch.Tensor:
    """``[N]`` bool: an exit before the last is correct (SDN's wasteful overthinking)."""
    return rec.correct[:, :-1].any(1)


def destructive(rec: ExitRecord) -> torch.Tensor:
    """``[N]`` bool: an exit before the last is correct and the final exit is wrong (SDN's destructive)."""
    c = rec.correct
    return c[:, :-1].any(1) & ~c[:, -1]


def overthought_indices(rec: ExitRecord) -> torch.Tensor:
    """Dataset indices of the overthought samples (for GradCAM and the policy experiments)."""
    return rec.indices[overthought(rec)]


def first_correct_exit(rec: ExitRecord) -> torch.Tensor:
    """``[N]`` 0-based first correct exit; −1 when no exit is correct."""
    c = rec.correct
    first = c.int().argmax(1)
    return torch.where(c.any(1), first, torch.full_like(first, -1))


def overthought_and_others(rec: ExitRecord, n: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded samples (sorted row positions) of at most ``n`` overthought test samples and ``n`` others, drawn in
    that order from one generator: the groups that GradCAM statistics compare (notebooks 05 and 09). An empty group
    is an empty array."""
    rng = np.random.default_rng(seed)
    ot = overthought(rec).numpy()
    out = {}
    for name, mask in (("overthought", ot), ("other", ~ot)):
        rows = np.flatnonzero(mask)
        out[name] = np.sort(rng.choice(rows, min(n, len(rows)), replace=False)) if len(rows) else rows
    return out


def pairwise(rec: ExitRecord) -> np.ndarray:
    """``[E, E]`` matrix with entry (i, j) = P(exit i right ∧ exit j wrong)."""
    c = rec.correct.double()
    return ((c.T @ (1 - c)) / rec.num_samples).numpy()


def bounds(rec: ExitRecord) -> dict[str, dict[str, float]]:
    """Oracle and realistic upper bounds as points (accuracy, expected FLOPs) of the accuracy–FLOPs plane."""
    first = first_correct_exit(rec)
    none = first < 0
    flops = rec.require_flops("the oracle and realistic bounds").double()
    cost_first = flops[first.clamp_min(0)]
    acc = (~none).double().mean().item()
    oracle = torch.where(none, torch.zeros_like(cost_first), cost_first).mean().item()
    realistic = torch.where(none, flops[-1].expand_as(cost_first), cost_first).mean().item()
    return {
        "oracle": {"accuracy": acc, "flops": oracle},
        "realistic": {"accuracy": acc, "flops": realistic},
        "collective": {"accuracy": acc, "flops": float(flops[-1])},
    }


def summary(rec: ExitRecord, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The headline numbers, each with a bootstrap 95 % CI over samples.

    Rows: accuracy of each exit, collective accuracy, overthinking rate, wasteful, destructive, destructive share of
    final-exit errors. Columns: value, low, high (fractions, not percent).
    """
    c = rec.correct
    cols = {f"accuracy exit {k + 1}": c[:, k] for k in range(rec.num_exits)}
    cols.update(
        {
            "collective accuracy (any exit right)": c.any(1),
            "overthought (thesis Eq 3.11)": overthought(rec),
            "wasteful (SDN)": wasteful(rec),
            "destructive (SDN)": destructive(rec),
        }
    )
    x = torch.stack([v.double() for v in cols.values()], 1)
    est, lo, hi = bootstrap_mean(x, n_boot=n_boot, seed=seed)
    rows = [{"metric": name, "value": e, "low": low, "high": h} for name, e, low, h in zip(cols, est, lo, hi)]
    d = destructive(rec).numpy()
    err = (~c[:, -1]).numpy()

    def share(idx: np.ndarray) -> float:
        n_err = err[idx].sum()
        return d[idx].sum() / n_err if n_err else float("nan")

    e, low, h = bootstrap_statistic(share, rec.num_samples, n_boot=n_boot, seed=seed)
    rows.append({"metric": "destructive share of final-exit errors", "value": e, "low": low, "high": h})
    return pd.DataFrame(rows).set_index("metric")


#: The thesis's Table 3.1: % of test samples overthought by its MSDNet, per dataset and arm (E = 50 epochs).
THESIS_TABLE_3_1 = {
    "CIFAR-100 (thesis)": {"50 epochs": 17.93, "100 epochs": 18.45, "50 + 50 ISC+OFA": 14.33},
    "SVHN (thesis)": {"50 epochs": 15.32, "100 epochs": 15.50, "50 + 50 ISC+OFA": 11.29},
}


def thesis_table_3_1() -> pd.DataFrame:
    """:data:`THESIS_TABLE_3_1` as a table: a row per dataset, a column per arm (%)."""
    return pd.DataFrame.from_dict(THESIS_TABLE_3_1, orient="index")


def report(rec: ExitRecord, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Notebook 04's headline numbers of one test record: ``summary`` (:func:`summary`), ``table`` (its rows as
    "% [95 % CI]"), ``headlines`` (``(key, (estimate, low, high), label, unit)`` for results.json: the overthought
    share, final-exit accuracy, collective accuracy) and ``sentence``."""
    from .stats import fmt_ci

    s = summary(rec, n_boot=n_boot, seed=seed)
    table = pd.DataFrame({"% [95 % CI]": [fmt_ci(r.value, r.low, r.high) for r in s.itertuples()]}, index=s.index)
    rows = {
        "overthought": ("overthought (thesis Eq 3.11)", "overthought test samples (Eq 3.11)"),
        "final_exit_accuracy": (f"accuracy exit {rec.num_exits}", "final-exit accuracy"),
        "collective_accuracy": ("collective accuracy (any exit right)", "any exit right (oracle)"),
    }
    headlines = [(key, list(s.loc[row, ["value", "low", "high"]]), label, "%") for key, (row, label) in rows.items()]
    ot = s.loc["overthought (thesis Eq 3.11)"]
    sentence = f"overthought: {ot.value * 100:.2f} % of {rec.num_samples} test samples"
    return {"summary": s, "table": table, "headlines": headlines, "sentence": sentence}


def per_class(rec: ExitRecord, class_names=None) -> pd.DataFrame:
    """Overthinking rate, final-exit accuracy and sample count per class."""
    ot = overthought(rec).numpy()
    df = pd.DataFrame({"label": rec.labels.numpy(), "overthought": ot, "final_correct": rec.correct[:, -1].numpy()})
    out = df.groupby("label").agg(
        samples=("overthought", "size"),
        overthinking_rate=("overthought", "mean"),
        final_accuracy=("final_correct", "mean"),
    )
    if class_names is not None:
        out.insert(0, "class", [class_names[i] for i in out.index])
    return out


def disagreement_pattern(preds) -> np.ndarray:
    """``[N, E−1]`` bool: whether exits k and k+1 predict different classes (``preds``: ``[N, E]`` classes)."""
    p = np.asarray(preds.numpy() if torch.is_tensor(preds) else preds)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ConfigError(f"predictions must be [samples, exits] with two exits or more, got shape {p.shape}")
    return p[:, 1:] != p[:, :-1]


MATCH_BY = ("pattern", "count")


def matched_controls(
    rec: ExitRecord, rows, *, pool=None, per_sample: int = 1, by: str = "pattern", seed: int = 0
) -> dict:
    """Controls for the samples ``rows`` (row positions of ``rec``, say overthought samples) matched on how their
    consecutive exits agree.

    ``by="pattern"``: a control's consecutive-exit disagreements (:func:`disagreement_pattern`) are exactly the
    sample's (the same exit pairs change class); ``by="count"``: the same number of changing pairs. Among the
    candidates of ``pool`` (row positions; default every sample that is not overthought; the sample itself never),
    the ``per_sample`` nearest in mean max-softmax confidence over the exits are taken, ties broken by a permutation
    drawn from ``default_rng(seed)``. Controls are drawn with replacement across samples (one control may serve
    several samples), without replacement within one. A sample with fewer than ``per_sample`` candidates is
    unmatched.

    Returns:
        dict with ``controls`` (``[len(rows), per_sample]`` int row positions, −1 for an unmatched sample),
        ``matched`` (``[len(rows)]`` bool), ``n_matched``, ``n`` (how many samples were to be matched) and ``by``.
    """
    if by not in MATCH_BY:
        raise ConfigError(f"unknown matching {by!r}: use 'pattern' (the same exit pairs disagree) or 'count'")
    if not (isinstance(per_sample, int | np.integer) and per_sample >= 1):
        raise ConfigError(f"per_sample must be a positive integer, got {per_sample!r}")
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    pool = np.flatnonzero(~overthought(rec).numpy()) if pool is None else np.asarray(pool, dtype=np.int64).reshape(-1)
    n = rec.num_samples
    for name, r in (("rows", rows), ("pool", pool)):
        if len(r) and (r.min() < 0 or r.max() >= n):
            raise ConfigError(f"{name} must be row positions in [0, {n}), got values from {r.min()} to {r.max()}")
    dis = disagreement_pattern(rec.preds)  # [N, E−1]
    key = dis.sum(1, keepdims=True) if by == "count" else dis  # [N, K]
    conf = rec.probs.max(-1).values.double().mean(1).numpy()  # [N] mean confidence over the exits
    rng = np.random.default_rng(seed)
    order = pool[rng.permutation(len(pool))]  # seeded tie-break among equally close candidates
    controls = np.full((len(rows), per_sample), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        cand = order[(key[order] == key[r]).all(1) & (order != r)]
        if len(cand) < per_sample:
            continue
        near = np.argsort(np.abs(conf[cand] - conf[r]), kind="stable")[:per_sample]
        controls[i] = cand[near]
    matched = (controls >= 0).all(1)
    return {"controls": controls, "matched": matched, "n_matched": int(matched.sum()), "n": len(rows), "by": by}


def matched_minus_controls(values, control_values, matched=None, *, n_boot: int = 2000, seed: int = 0):
    """Mean of (sample − mean of its matched controls) with a bootstrap CI resampling the matched sets together.

    Args:
        values: ``[n]`` a statistic of each sample (say, the heatmap similarity of consecutive exits).
        control_values: ``[n, per_sample]`` the same statistic of each sample's controls.
        matched: ``[n]`` bool, the samples that found controls (default: all); rows with a non-finite value are
            left out too.

    Returns:
        (estimate, low, high, how many samples entered); NaNs and 0 when none did.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(control_values, dtype=np.float64).reshape(len(v), -1)
    keep = np.ones(len(v), bool) if matched is None else np.asarray(matched, bool).reshape(-1)
    d = v - c.mean(1)
    keep = keep & np.isfinite(d)
    if not keep.any():
        return float("nan"), float("nan"), float("nan"), 0
    est, lo, hi = bootstrap_mean(d[keep], n_boot=n_boot, seed=seed)
    return est, lo, hi, int(keep.sum())


def group_minus_group(a, b, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) − mean(b) of two independent groups with a percentile bootstrap CI (each group resampled on its own,
    from one ``default_rng(seed)``); non-finite values are left out. Returns (estimate, low, high)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        raise ConfigError(f"comparing two groups needs values in both, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (len(a) + len(b)))  # bounded memory for large groups
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        ia, ib = rng.integers(0, len(a), (m, len(a))), rng.integers(0, len(b), (m, len(b)))
        diffs[start : start + m] = a[ia].mean(1) - b[ib].mean(1)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def arms_over_seeds(tests: dict[int, dict[str, ExitRecord]], reference: str = "2E") -> pd.DataFrame:
    """Table 3.1 over seeds (notebook 07's verdict about the recipe), from each seed's test record per arm.

    ``tests``: ``{seed: {arm: test record}}``, every arm of a seed on the same test samples. Returns one row per
    (seed, arm): the overthinking rate and final-exit accuracy (fractions), the number of test samples, and the arm's
    paired difference in overthinking to the ``reference`` arm of the same seed with its bootstrap 95 % CI over that
    seed's test samples (``minus_2E``, ``minus_2E_low``, ``minus_2E_high``: how sure one network's number is; the
    bootstrap seeded by the seed)."""
    rows = []
    for seed, arms in tests.items():
        if reference not in arms:
            raise ConfigError(f"seed {seed} has no {reference!r} arm to pair the others with (arms: {sorted(arms)})")
        ref = overthought(arms[reference]).double()
        for arm, rec in arms.items():
            ot = overthought(rec).double()
            if ot.shape != ref.shape:
                raise ConfigError(f"seed {seed}: arm {arm!r} covers {len(ot)} test samples, {reference!r} {len(ref)}")
            d, lo, hi = bootstrap_mean(ot - ref, seed=seed)
            rows.append(
                {
                    "seed": seed,
                    "arm": arm,
                    "overthought": float(ot.mean()),
                    "final_acc": float(rec.correct[:, -1].double().mean()),
                    "n_test": int(rec.correct.shape[0]),
                    "minus_2E": d,
                    "minus_2E_low": lo,
                    "minus_2E_high": hi,
                }
            )
    return pd.DataFrame(rows)
