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
  ρ = 0 when the flags are independent of the sample (run-bound), 1 when every run flags the same samples.
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
    recs = list(records)
    if not recs:
        raise ConfigError("overthought_across_runs needs at least one record")
    n = recs[0].num_samples
    if any(r.num_samples != n or not bool((r.indices == recs[0].indices).all()) for r in recs):
        raise ConfigError("the runs' records must cover the same samples in the same order (compare their indices)")
    return np.stack([overthinking.overthought(r).numpy() for r in recs])


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


def bootstrap_over_samples(flags, stat, *, n_boot: int = 500, seed: int = 0, level: float = 0.95):
    """(estimate, low, high) of ``stat(flags)`` resampling samples (columns) with replacement
    (:func:`..stats.bootstrap_statistic` over the columns)."""
    f = _bool_matrix(flags)
    return bootstrap_statistic(lambda cols: stat(f[:, cols]), f.shape[1], n_boot=n_boot, seed=seed, level=level)


def summarize(flags, *, n_boot: int = 500, n_perm: int = 200, seed: int = 0) -> dict[str, float]:
    """Rates, mean κ and Jaccard with CIs, ρ with its CI, and the permutation null of both."""
    f = _bool_matrix(flags)
    kappa = bootstrap_over_samples(f, lambda g: mean_offdiag(pairwise(g)), n_boot=n_boot, seed=seed)
    rho = bootstrap_over_samples(f, sample_bound_share, n_boot=n_boot, seed=seed)
    null = permutation_null(f, n_perm=n_perm, seed=seed)
    return {
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
