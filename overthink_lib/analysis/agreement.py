"""Is overthinking tied to samples or to training runs? Agreement of per-sample indicators across runs (thesis §5.2).

Given K runs that differ in one source of randomness, and for each a per-sample indicator (overthought, or exit k
correct), we ask whether the same samples are flagged across runs more often than if the flags fell independently of
the sample:

- pairwise **Jaccard** index and **Cohen's κ** between runs (κ = 0: chance agreement given the two rates);
- the **"flagged in m of K runs" histogram** against the Poisson-binomial distribution expected if every run flagged
  samples independently of the sample, with its own rate (Binomial(K, p) when the rates are equal);
- a **permutation baseline**: each run's flags shuffled across samples (keeps every run's rate, breaks the sample link);
- the **sample-bound share** ρ: the share of the variance of a sample's flag explained by the sample's identity,
  ρ = (Var_s(m/K) − E_binom) / (p̄(1 − p̄) − E_binom), with E_binom the variance of m/K expected under independence;
  ρ = 0 when the flags are independent of the sample (run-bound), 1 when every run flags the same samples;
- a **difficulty-stratified null**: each run's flags shuffled only among samples of the same error-rate stratum
  (:func:`difficulty_strata`, :func:`stratified_null`). The plain permutation null breaks every link between a
  flag and its sample, including "hard samples are often overthought"; the stratified one keeps that link, so ρ
  above it means the same samples are overthought beyond what their error rate explains
  (:func:`rho_over_stratified_null`: ρ minus the stratified null's exact mean).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..config import ConfigError
from . import overthinking
from .stats import bootstrap_statistic


def _bool_matrix(flags) -> np.ndarray:
    f = np.asarray(flags).astype(bool)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ConfigError(f"agreement needs flags of shape [runs >= 2, samples], got {f.shape}")
    return f


def overthought_across_runs(records) -> np.ndarray:
    """``[K, N]`` bool: sample n is overthought (thesis Eq 3.11) by run k; ``records``: one record per run, the same
    test samples in the same order."""
    recs = _same_samples(records, "overthought_across_runs")
    return np.stack([overthinking.overthought(r).numpy() for r in recs])


def _same_samples(records, what: str) -> list:
    recs = list(records)
    if not recs:
        raise ConfigError(f"{what} needs at least one record")
    n = recs[0].num_samples
    if any(r.num_samples != n or not bool((r.indices == recs[0].indices).all()) for r in recs):
        raise ConfigError("the runs' records must cover the same samples in the same order (compare their indices)")
    return recs


def jaccard(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def cohen_kappa(a, b) -> float:
    """Cohen's κ of two binary (or integer-label) vectors."""
    a, b = np.asarray(a), np.asarray(b)
    labels = np.union1d(a, b)
    po = (a == b).mean()
    pe = sum((a == v).mean() * (b == v).mean() for v in labels)
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


def pairwise(flags, metric=cohen_kappa) -> np.ndarray:
    """``[K, K]`` matrix of ``metric`` between runs (diagonal NaN)."""
    f = np.asarray(flags)
    k = len(f)
    out = np.full((k, k), np.nan)
    for i, j in itertools.combinations(range(k), 2):
        out[i, j] = out[j, i] = metric(f[i], f[j])
    return out


def mean_offdiag(m: np.ndarray) -> float:
    return float(np.nanmean(m[~np.eye(len(m), dtype=bool)]))


def poisson_binomial(rates) -> np.ndarray:
    """P(m of K independent events happen), m = 0..K, for event probabilities ``rates``."""
    pmf = np.array([1.0])
    for p in rates:
        pmf = np.convolve(pmf, [1 - p, p])
    return pmf


def count_histogram(flags) -> pd.DataFrame:
    """Observed share of samples flagged in m of K runs vs the share expected if flags ignored the sample."""
    f = _bool_matrix(flags)
    k = f.shape[0]
    counts = np.bincount(f.sum(0), minlength=k + 1) / f.shape[1]
    return pd.DataFrame({"m": np.arange(k + 1), "observed": counts, "independent": poisson_binomial(f.mean(1))})


def sample_bound_share(flags) -> float:
    """ρ of the module docstring (NaN when no run flags anything)."""
    f = _bool_matrix(flags).astype(float)
    k = f.shape[0]
    rates = f.mean(1)
    frac = f.mean(0)  # m / K per sample
    pbar = rates.mean()
    e_binom = (rates * (1 - rates)).sum() / k**2  # Var(m/K) under independence, averaged over samples
    denom = pbar * (1 - pbar) - e_binom
    if denom <= 0:
        return float("nan")
    var_obs = ((frac - pbar) ** 2).mean()  # the mean of m/K over samples is p̄
    return float((var_obs - e_binom) / denom)


def permutation_null(flags, *, n_perm: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean pairwise κ and ρ of flags whose samples were shuffled independently per run (rates kept)."""
    f = _bool_matrix(flags)
    rng = np.random.default_rng(seed)
    kappas, rhos = [], []
    for _ in range(n_perm):
        g = np.stack([rng.permutation(row) for row in f])
        kappas.append(mean_offdiag(pairwise(g)))
        rhos.append(sample_bound_share(g))
    return {"kappa": np.array(kappas), "rho": np.array(rhos)}


def difficulty_strata(correct, *, bins: int = 10) -> np.ndarray:
    """``[N]`` int stratum (0, 1, ...) of each sample by its error rate, easiest stratum 0.

    A sample's error rate is the share of its (run, exit) pairs that are wrong, pooled over **all runs and all
    exits**. All exits, because the overthought flag is itself a function of every exit's correctness (an exit
    correct, a later one wrong): stratifying on the final exit alone would stratify on one part of the flag's
    definition (a sample wrong at the final exit after a correct earlier one is overthought by definition) and
    ignore the rest, whereas the mean over exits is a plain measure of how hard the sample is for the whole network. All runs, because difficulty is meant
    as a property of the sample, not of one run. The rate is cut at its quantiles into at most ``bins`` groups of
    near-equal size; equal rates always share a stratum (the rates are multiples of 1 / (K·E), so ties are common),
    hence fewer groups when the rates have few distinct values.

    Two biases, of opposite signs, both small in the tests' simulations: the pooled error rate is measured on the
    same runs as the flags, so whatever agreement it carries (the same samples wrong in every run) counts as
    difficulty, and the null can overshoot (conservative, more so with more bins); a stratum spans a range of error
    rates, so some difficulty stays inside it (fewer bins, more of it). Above this null is therefore the safe side
    of a verdict; within it means difficulty *can* explain the agreement.

    Args:
        correct: one :class:`~overthink_lib.records.ExitRecord` per run (the same samples in the same order), or a
            bool array ``[K runs, N samples, E exits]`` (exit e of run k classifies sample n correctly).
        bins: the most strata (>= 1).
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ConfigError(f"difficulty_strata needs bins >= 1 (an integer), got {bins!r}")
    if isinstance(correct, (list, tuple)) and correct and hasattr(correct[0], "correct"):
        c = np.stack([r.correct.numpy() for r in _same_samples(correct, "difficulty_strata")])
    else:
        c = np.asarray(correct)
        if c.ndim != 3 or 0 in c.shape or not (c.dtype == bool or np.isin(c, (0, 1)).all()):
            raise ConfigError(
                f"difficulty_strata needs ExitRecords or a 0/1 array [runs, samples, exits], got shape {c.shape}"
            )
    error = 1 - c.astype(float).mean(axis=(0, 2))  # [N] share of (run, exit) pairs wrong
    edges = np.unique(np.quantile(error, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.unique(np.searchsorted(edges, error, side="right"), return_inverse=True)[1].astype(int)


def _check_strata(f: np.ndarray, strata) -> np.ndarray:
    s = np.asarray(strata)
    if s.shape != (f.shape[1],) or not np.issubdtype(s.dtype, np.integer):
        raise ConfigError(
            f"strata must be one integer per sample ([{f.shape[1]}], e.g. from difficulty_strata of the same runs), "
            f"got {s.dtype} of shape {s.shape}"
        )
    return s


def stratified_null(flags, strata, *, n_perm: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean pairwise κ and ρ (``n_perm`` draws each) of flags shuffled independently per run, but only among samples
    of the same stratum: every run's rate, and every run's rate within each stratum, are kept.

    Args:
        flags: ``[K runs, N samples]`` bool.
        strata: ``[N]`` int, e.g. :func:`difficulty_strata` of the same runs.
    """
    f = _bool_matrix(flags)
    s = _check_strata(f, strata)
    rank = np.unique(s, return_inverse=True)[1]  # strata as 0..G-1
    by_stratum = np.argsort(rank, kind="stable")  # [N] sample positions grouped by stratum
    rows = np.arange(f.shape[0])[:, None]
    rng = np.random.default_rng(seed)
    kappas, rhos = [], []
    for _ in range(n_perm):
        # [K, N] per run: positions grouped by stratum, in random order within each stratum
        shuffled = np.argsort(rank + rng.random(f.shape), axis=1)
        g = np.empty_like(f)
        g[rows, by_stratum] = f[rows, shuffled]
        kappas.append(mean_offdiag(pairwise(g)))
        rhos.append(sample_bound_share(g))
    return {"kappa": np.array(kappas), "rho": np.array(rhos)}


def rho_over_stratified_null(flags, strata) -> float:
    """ρ minus its exact mean under :func:`stratified_null` (NaN where ρ is undefined).

    Shuffling within strata keeps every run's rate, so ρ's denominator and E_binom do not move; a sample of stratum
    s then has run k's flag with probability p_ks (run k's rate in s), independently across runs, so the expected
    Var(m/K) is the mean over samples of (q_s − p̄)² + Σ_k p_ks(1 − p_ks) / K², q_s = mean_k p_ks. With one
    stratum this is E_binom, and the plain permutation null's mean ρ is 0.
    """
    f = _bool_matrix(flags).astype(float)
    s = _check_strata(f, strata)
    k = f.shape[0]
    rates = f.mean(1)
    pbar = rates.mean()
    e_binom = (rates * (1 - rates)).sum() / k**2
    denom = pbar * (1 - pbar) - e_binom
    if denom <= 0:
        return float("nan")
    rank = np.unique(s, return_inverse=True)[1]
    sizes = np.bincount(rank)  # [G]
    p_ks = np.stack([np.bincount(rank, weights=row) for row in f]) / sizes  # [K, G] run k's rate in stratum g
    q = p_ks.mean(0)
    expected = ((q - pbar) ** 2 + (p_ks * (1 - p_ks)).sum(0) / k**2)[rank].mean()
    var_obs = ((f.mean(0) - pbar) ** 2).mean()
    return float((var_obs - expected) / denom)


def bootstrap_over_samples(flags, stat, *, n_boot: int = 500, seed: int = 0, level: float = 0.95):
    """(estimate, low, high) of ``stat(flags)`` resampling samples (columns) with replacement
    (:func:`..stats.bootstrap_statistic` over the columns)."""
    f = _bool_matrix(flags)
    return bootstrap_statistic(lambda cols: stat(f[:, cols]), f.shape[1], n_boot=n_boot, seed=seed, level=level)


def summarize(flags, *, strata=None, n_boot: int = 500, n_perm: int = 200, seed: int = 0) -> dict[str, float]:
    """Rates, mean κ and Jaccard with CIs, ρ with its CI, and the permutation null of both.

    With ``strata`` (``[N]`` int, :func:`difficulty_strata` of the same runs) also the difficulty-stratified null:
    ``"null kappa 97.5% (stratified)"``, ``"null rho 97.5% (stratified)"``, and ``"rho over stratified null"`` (ρ
    minus the stratified null's exact mean, :func:`rho_over_stratified_null`) with its bootstrap CI over samples
    (``"... low"``, ``"... high"``; each sample keeps its stratum, the within-stratum rates are recomputed on every
    resample).
    """
    f = _bool_matrix(flags)
    if strata is not None:
        strata = _check_strata(f, strata)
    kappa = bootstrap_over_samples(f, lambda g: mean_offdiag(pairwise(g)), n_boot=n_boot, seed=seed)
    rho = bootstrap_over_samples(f, sample_bound_share, n_boot=n_boot, seed=seed)
    null = permutation_null(f, n_perm=n_perm, seed=seed)
    out = {
        "runs": f.shape[0],
        "samples": f.shape[1],
        "mean rate": float(f.mean()),
        "rate std across runs": float(f.mean(1).std(ddof=1)),
        "kappa": kappa[0],
        "kappa low": kappa[1],
        "kappa high": kappa[2],
        "jaccard": mean_offdiag(pairwise(f, jaccard)),
        "rho (sample-bound share)": rho[0],
        "rho low": rho[1],
        "rho high": rho[2],
        "null kappa 97.5%": float(np.quantile(null["kappa"], 0.975)),
        "null rho 97.5%": float(np.nanquantile(null["rho"], 0.975)),
    }
    if strata is not None:
        snull = stratified_null(f, strata, n_perm=n_perm, seed=seed)
        excess = bootstrap_statistic(
            lambda cols: rho_over_stratified_null(f[:, cols], strata[cols]), f.shape[1], n_boot=n_boot, seed=seed
        )
        out |= {
            "strata": len(np.unique(strata)),
            "null kappa 97.5% (stratified)": float(np.quantile(snull["kappa"], 0.975)),
            "null rho 97.5% (stratified)": float(np.nanquantile(snull["rho"], 0.975)),
            "rho over stratified null": excess[0],
            "rho over stratified null low": excess[1],
            "rho over stratified null high": excess[2],
        }
    return out
