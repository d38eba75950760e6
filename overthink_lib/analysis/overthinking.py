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

import numpy as np
import pandas as pd
import torch

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
