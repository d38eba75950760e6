"""Uncertainty: seeded bootstrap confidence intervals over samples (percentile method).

Every headline number of the lab is a statistic of per-sample values (an accuracy, an overthinking rate, a share).
We resample the samples with replacement ``n_boot`` times from a seeded generator and report the percentile interval.
Statistics of several columns are resampled *jointly* (the same resampled samples for every column), so ratios and
differences keep their pairing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..config import ConfigError

DEFAULT_BOOT = 2000


#: A headline number as an analysis returns it for ``results.put``: (key, value or (estimate, low, high), label, unit).
Headline = tuple[str, Any, str, str]


def _as_numpy(x) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def bootstrap_mean(values, *, n_boot: int = DEFAULT_BOOT, seed: int = 0, level: float = 0.95):
    """Mean of ``values`` (``[N]`` or ``[N, K]``) with a percentile bootstrap CI.

    Returns:
        (estimate, low, high), each a float (1-D input) or a ``[K]`` array.
    """
    x = _as_numpy(values)
    one = x.ndim == 1
    x = x[:, None] if one else x
    n = len(x)
    if n == 0:
        raise ConfigError("cannot bootstrap an empty sample")
    if not 0 < level < 1:
        raise ConfigError(f"confidence level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.empty((n_boot, x.shape[1]))
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b)  # [b, N] resample counts
        means[start : start + b] = w @ x / n
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    est = x.mean(0)
    return (float(est[0]), float(lo[0]), float(hi[0])) if one else (est, lo, hi)


def bootstrap_statistic(
    fn: Callable[[np.ndarray], float], n: int, *, n_boot: int = DEFAULT_BOOT, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """CI of any statistic ``fn(rows)`` of resampled sample rows (``rows``: indices into the N samples)."""
    if n == 0:
        raise ConfigError("cannot bootstrap an empty sample")
    rng = np.random.default_rng(seed)
    stats = np.array([fn(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    est = float(fn(np.arange(n)))
    if len(stats) == 0:
        return est, float("nan"), float("nan")
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return est, float(lo), float(hi)


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval over a few independent runs (e.g. seeds): (mean, lo, hi).

    For statistics *over runs*, where the runs are the unit of replication (the bootstrap over samples answers
    another question: how sure one run's number is). Needs at least two values.
    """
    from scipy import stats as st

    v = _as_numpy(values).astype(float).ravel()
    if len(v) < 2 or not np.isfinite(v).all():
        raise ConfigError(f"a t-interval needs at least two finite values, got {v.tolist()}")
    m, se = float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))
    h = float(st.t.ppf((1 + level) / 2, len(v) - 1)) * se
    return m, m - h, m + h


def tost_seeds(sd: float, margin: float, *, power: float = 0.8, alpha: float = 0.05, max_n: int = 10_000) -> int:
    """Paired seeds an equivalence claim needs: the smallest n with (t₁₋α,n−1 + t_power,n−1) · sd / √n ≤ margin — two
    one-sided tests (TOST) at level ``alpha`` with probability ``power`` of showing equivalence within ±``margin`` when
    the true paired difference is 0 and its SD across seeds is ``sd``. A 90 % CI half-width ≤ margin (t₁₋α alone) is
    only 50 % power: about half of such studies would fail to show an equivalence that holds."""
    from scipy import stats as st

    if not (sd > 0 and margin > 0 and 0.5 < power < 1 and 0 < alpha < 0.5):
        raise ConfigError(
            f"tost_seeds needs sd > 0, margin > 0, 0.5 < power < 1, 0 < alpha < 0.5; got sd={sd}, margin={margin}, "
            f"power={power}, alpha={alpha}"
        )
    for n in range(2, max_n + 1):
        if (st.t.ppf(1 - alpha, n - 1) + st.t.ppf(power, n - 1)) * sd / np.sqrt(n) <= margin:
            return n
    raise ConfigError(f"more than {max_n} seeds for a margin of {margin} at sd {sd}: widen the margin")


def excludes_zero(low, high):
    """Whether the interval [low, high] leaves 0 out: a bool, or a bool array for arrays of bounds."""
    out = (np.asarray(low) > 0) | (np.asarray(high) < 0)
    return bool(out) if out.ndim == 0 else out


def change_verdict(est: float, low: float, high: float) -> str:
    """What a difference (treatment − baseline) with its CI says: ``"lowered"`` or ``"raised"`` (by the estimate's
    sign) when the CI excludes 0, else ``"did not measurably change"``."""
    if not excludes_zero(low, high):
        return "did not measurably change"
    return "lowered" if est < 0 else "raised"


#: Bands of the rank effect size ε² (Kruskal–Wallis): the usual conventions (Rea & Parker; Tomczak & Tomczak 2014),
#: the lower edge of each band: below 0.01 negligible, then small, medium from 0.08, large from 0.26.
EPSILON_SQUARED_BANDS = ((0.26, "large"), (0.08, "medium"), (0.01, "small"), (0.0, "negligible"))


def effect_band(epsilon_squared: float) -> str:
    """``negligible``, ``small``, ``medium`` or ``large`` (:data:`EPSILON_SQUARED_BANDS`); ``unknown`` for NaN."""
    if not np.isfinite(epsilon_squared):
        return "unknown"
    return next(name for edge, name in EPSILON_SQUARED_BANDS if epsilon_squared >= edge)


def separates(epsilon_squared: float, p: float, alpha: float = 0.01) -> bool:
    """Whether a group test shows a difference worth the name: p < ``alpha`` and an effect beyond the negligible band
    (ε² ≥ 0.01). A sanity check of a measure (e.g. does clutter see the number of items?) passes only then."""
    return bool(
        np.isfinite(p) and np.isfinite(epsilon_squared) and p < alpha and effect_band(epsilon_squared) != "negligible"
    )


def group_difference_verdict(epsilon_squared: float, p: float, alpha: float = 0.05) -> str:
    """What a group test says, worded from its effect size, not from its p-value alone: ``no detectable difference``
    when p ≥ ``alpha``; else the ε² band (a tiny p on many samples can carry a negligible effect, a p of 0.02 a
    medium one) and, for a negligible or small effect, that the spread within groups dwarfs it."""
    if not (np.isfinite(p) and np.isfinite(epsilon_squared)):
        return "untested (fewer than two groups with samples)"
    if p >= alpha:
        return f"no detectable difference (p = {p:.2g} ≥ {alpha:g}; epsilon² = {epsilon_squared:.3f})"
    band = effect_band(epsilon_squared)
    tail = ": the spread within groups dwarfs it" if band in ("negligible", "small") else ""
    return f"a {band} difference (epsilon² = {epsilon_squared:.3f}, p = {p:.2g}){tail}"


def fmt_ci(est: float, lo: float, hi: float, scale: float = 100.0, digits: int = 2) -> str:
    """``12.34 [11.90, 12.80]`` (percent by default)."""
    return f"{est * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
