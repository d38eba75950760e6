"""Calibration per exit, on records only: expected calibration error, reliability bins, temperature scaling.

- **ECE** = Σ_b |B_b| / N · |acc(B_b) − conf(B_b)| with the confidence the max softmax probability. Bins are
  **equal-mass** by default (15 bins, each holding ⌊N/15⌋ or ⌈N/15⌉ samples in confidence order), the usual choice
  when confidences pile up near 1; ``binning="width"`` gives 15 equal-width bins on [0, 1] (empty bins skipped). CIs
  are percentile bootstrap over samples, the bins recomputed in every resample. ECE is biased upwards: a perfectly
  calibrated record of N samples scores about 0.8·sqrt(15·p(1−p)/N) with 15 bins (≈ 0.007 at N = 20,000), and its
  bootstrap CI sits above the estimate; compare ECEs of records of the same size.
- **Temperature scaling** (Guo et al. 2017): one T > 0 per exit minimising the validation negative log-likelihood of
  softmax(z / T), applied to that exit's logits on any record. The NLL is convex in 1/T, so a bounded scalar search
  over 1/T ∈ [0.01, 100] finds the one minimum. It changes no prediction (argmax is unchanged), only confidences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..records import ExitRecord
from .stats import bootstrap_statistic

BINNINGS = ("mass", "width")


def _bins(conf: np.ndarray, n_bins: int, binning: str) -> list[np.ndarray]:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if binning == "mass":
        order = np.argsort(conf, kind="stable")
        return [b for b in np.array_split(order, n_bins) if len(b)]
    if binning == "width":
        which = np.minimum((conf * n_bins).astype(int), n_bins - 1)
        return [np.nonzero(which == b)[0] for b in range(n_bins) if (which == b).any()]
    raise ConfigError(f"binning must be one of {', '.join(BINNINGS)}, got {binning!r}")


def ece(conf, correct, *, n_bins: int = 15, binning: str = "mass") -> tuple[float, pd.DataFrame]:
    """(ECE, bins) of confidences ``conf`` ``[N]`` and correctness ``correct`` ``[N]``; bins: lo, hi, count,
    confidence, accuracy."""
    c = np.asarray(conf, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if c.ndim != 1 or c.shape != y.shape or len(c) == 0:
        raise ConfigError(f"ece needs two 1-D arrays of the same non-zero length, got {c.shape} and {y.shape}")
    rows = [
        {"lo": c[b].min(), "hi": c[b].max(), "count": len(b), "confidence": c[b].mean(), "accuracy": y[b].mean()}
        for b in _bins(c, n_bins, binning)
    ]
    bins = pd.DataFrame(rows)
    value = float((bins["count"] / len(c) * (bins["accuracy"] - bins["confidence"]).abs()).sum())
    return value, bins


def ece_ci(conf, correct, *, n_bins: int = 15, binning: str = "mass", n_boot: int = 1000, seed: int = 0):
    """ECE with a percentile bootstrap CI over samples: (estimate, low, high)."""
    c = np.asarray(conf, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    return bootstrap_statistic(
        lambda rows: ece(c[rows], y[rows], n_bins=n_bins, binning=binning)[0], len(c), n_boot=n_boot, seed=seed
    )


def ece_change_ci(conf_before, conf_after, correct, *, n_bins: int = 15, n_boot: int = 1000, seed: int = 0):
    """ECE(after) − ECE(before) on the same samples with a paired bootstrap CI (both recomputed on each resample)."""
    a = np.asarray(conf_before, dtype=np.float64)
    b = np.asarray(conf_after, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    return bootstrap_statistic(
        lambda rows: ece(b[rows], y[rows], n_bins=n_bins)[0] - ece(a[rows], y[rows], n_bins=n_bins)[0],
        len(y),
        n_boot=n_boot,
        seed=seed,
    )


def fit_temperature(logits, labels) -> float:
    """The T > 0 minimising the mean NLL of softmax(logits / T) against ``labels`` (``[N, C]``, ``[N]``)."""
    from scipy.optimize import minimize_scalar

    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ConfigError(f"fit_temperature needs logits [N, C] and labels [N], got {tuple(z.shape)}, {tuple(y.shape)}")

    def nll(log_beta: float) -> float:
        return F.cross_entropy(z * float(np.exp(log_beta)), y).item()

    res = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100.0)), method="bounded", options={"xatol": 1e-7})
    # the search stops within xatol = 1e-7 of the optimum, so T carries ~7 significant digits; rounding it there makes
    # the same logits give the same T on every CPU (the float64 NLL differs in its last bits between kernels)
    return float(f"{1.0 / np.exp(res.x):.6g}")


def exit_temperatures(val: ExitRecord) -> list[float]:
    """One temperature per exit, fitted on the validation record."""
    return [fit_temperature(val.logits[:, k], val.labels) for k in range(val.num_exits)]


def scaled(rec: ExitRecord, temperatures) -> ExitRecord:
    """``rec`` with exit k's logits divided by ``temperatures[k]`` (the same predictions, other confidences)."""
    t = torch.as_tensor(np.asarray(temperatures, dtype=np.float64))
    if t.shape != (rec.num_exits,) or not torch.isfinite(t).all() or (t <= 0).any():
        raise ConfigError(f"temperatures must be {rec.num_exits} finite numbers > 0, got {np.asarray(temperatures)}")
    logits = (rec.logits.double() / t[None, :, None]).float()
    prov = {**rec.provenance, "temperature_scaled": [float(v) for v in t]}
    return ExitRecord(logits, rec.labels, rec.indices, rec.flops, dict(rec.extras), prov)


def confidence(rec: ExitRecord) -> np.ndarray:
    """``[N, E]`` max softmax probability per sample and exit, computed in float64: a float32 softmax differs in its
    last bits between CPU kernels (AVX2 vs AVX-512), and an ECE is a sum of such differences, so the same record
    would give another ECE on another machine (the analysis regression, ``make test``, compares exactly)."""
    return F.softmax(rec.logits.double(), -1).max(-1).values.numpy()


def calibration_table(
    rec: ExitRecord, *, n_bins: int = 15, binning: str = "mass", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per exit: accuracy, mean confidence (max softmax), ECE with its CI."""
    conf = confidence(rec)
    correct = rec.correct.numpy()
    rows: list[dict[str, Any]] = []
    for k in range(rec.num_exits):
        est, lo, hi = ece_ci(conf[:, k], correct[:, k], n_bins=n_bins, binning=binning, n_boot=n_boot, seed=seed)
        rows.append(
            {
                "exit": k + 1,
                "accuracy": float(correct[:, k].mean()),
                "confidence": float(conf[:, k].mean()),
                "ece": est,
                "ece_low": lo,
                "ece_high": hi,
            }
        )
    return pd.DataFrame(rows)


def reliability_bins(rec: ExitRecord, *, n_bins: int = 15, binning: str = "mass") -> list[pd.DataFrame]:
    """Per exit, the bins of :func:`ece` (for reliability diagrams)."""
    conf = confidence(rec)
    correct = rec.correct.numpy()
    return [ece(conf[:, k], correct[:, k], n_bins=n_bins, binning=binning)[1] for k in range(rec.num_exits)]


__all__ = [
    "BINNINGS",
    "calibration_table",
    "confidence",
    "ece",
    "ece_change_ci",
    "ece_ci",
    "exit_temperatures",
    "fit_temperature",
    "reliability_bins",
    "scaled",
]
