"""DCT "clutter" of images (thesis Appendix A) and tests of whether groups of images differ in it.

Clutter score: the orthonormal 2-D DCT (``scipy.fft.dctn``, ``norm='ortho'``) of each image; the coefficients are
flattened in some ``order`` and the score is the **fraction of coefficients needed before their cumulative
``measure`` reaches ``threshold`` (default 98 %) of the total**.

The thesis, literally: "We flatten the coefficient matrix ... horizontally. We then select the first n coefficients
that add up to 98 % of the total sum of coefficients" — ``order='row'`` (row by row) and a sum of coefficients. Read
with signs (``measure='sum'``) this is degenerate on natural images: the coefficients cancel, the total can be ≤ 0
(no share of it is defined: the score is NaN), and the DC term alone usually holds 98 % of it. So the replication
default sums their magnitudes (``measure='abs'``), the reading under which the thesis's figures can show a spread;
the signed reading is kept as an option. Ours, beside it: ``order='zigzag'`` (JPEG's order: by anti-diagonal u + v,
alternating direction) or ``'radial'`` (by √(u² + v²), ties by u + v), and ``measure='energy'`` (squared
coefficients: what an orthonormal transform preserves, Parseval, i.e. the captions' "2 % error").

A constant image needs 1 coefficient (the DC term) under every order and measure; white noise needs nearly all under
``energy``. Scaling the brightness scales every coefficient alike, so every score is invariant to it. Colour: ``gray``
(ITU-R 601 luma of RGB; 1-channel images as they are) or ``channel`` (the measure summed over channels at each
frequency).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import fft, stats

from ..config import ConfigError

ORDERS = ("row", "zigzag", "radial")
MEASURES = ("abs", "sum", "energy")
COLOURS = ("gray", "channel")
LITERAL = {"order": "row", "measure": "abs"}
#: Measures that give every image a score, so a notebook can group and test them (``sum`` is shown beside them).
ANALYSIS_MEASURES = ("abs", "energy")  # the thesis's replication (see the module docstring)


def frequency_order(h: int, w: int, order: str = "row") -> np.ndarray:
    """Flat indices of an ``h × w`` coefficient grid in ``order``: ``row`` (row by row, the thesis), or from low to
    high frequency (``zigzag``, ``radial``)."""
    u, v = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    u, v = u.ravel(), v.ravel()
    if order == "row":
        return np.arange(h * w)
    if order == "zigzag":
        d = u + v
        along = np.where(d % 2 == 0, v, u)  # even diagonals run one way, odd ones the other (JPEG)
        return np.lexsort((along, d))
    if order == "radial":
        return np.lexsort((u, u + v, np.hypot(u, v)))
    raise ConfigError(f"unknown DCT order {order!r}: choose one of {', '.join(ORDERS)}")


def dct2(images, colour: str = "gray") -> np.ndarray:
    """Orthonormal 2-D DCT. ``images``: ``[N, C, H, W]`` (uint8 or float). Returns ``[N, C', H, W]`` float64."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ConfigError(f"images must be [N, C, H, W], got shape {x.shape}")
    if colour == "gray" and x.shape[1] == 3:
        x = np.tensordot(x, np.array([0.299, 0.587, 0.114]), axes=([1], [0]))[:, None]
    elif colour == "gray" and x.shape[1] != 1:
        x = x.mean(1, keepdims=True)
    elif colour not in COLOURS:
        raise ConfigError(f"unknown DCT colour mode {colour!r}: choose one of {', '.join(COLOURS)}")
    return fft.dctn(x, axes=(-2, -1), norm="ortho")


def clutter(
    images, *, threshold: float = 0.98, order: str = "row", measure: str = "abs", colour: str = "gray"
) -> np.ndarray:
    """``[N]`` clutter scores in (0, 1] (NaN where ``measure='sum'`` and an image's signed total is ≤ 0): the fraction
    of coefficients, counted in ``order``, whose cumulative ``measure`` reaches ``threshold`` of the total. Defaults:
    the thesis's replication (:data:`LITERAL`)."""
    return clutter_of_coefficients(dct2(images, colour), threshold=threshold, order=order, measure=measure)


def clutter_of_coefficients(coef, *, threshold: float = 0.98, order: str = "row", measure: str = "abs") -> np.ndarray:
    """The clutter score of DCT coefficients ``[N, C, H, W]`` (see :func:`clutter`)."""
    if not 0 < threshold <= 1:
        raise ConfigError(f"DCT threshold must be a share in (0, 1], got {threshold}")
    if measure not in MEASURES:
        raise ConfigError(f"unknown DCT measure {measure!r}: choose one of {', '.join(MEASURES)}")
    coef = np.asarray(coef, dtype=np.float64)
    n, _, h, w = coef.shape
    per = {"abs": np.abs, "sum": lambda c: c, "energy": np.square}[measure](coef).sum(1).reshape(n, -1)
    per = per[:, frequency_order(h, w, order)]  # [N, H·W] in counting order
    cum = np.cumsum(per, 1)
    total = cum[:, -1:]
    reached = (
        cum >= threshold * total * (1 - 1e-12) if measure != "sum" else cum >= threshold * total - 1e-12 * np.abs(total)
    )
    need = (reached.argmax(1) + 1).astype(float)  # coefficients needed: the first place the share is reached
    zero = np.abs(per).sum(1) == 0
    need = np.where(zero, 1.0, need)  # an all-black image needs only its (zero) DC term
    if measure == "sum":
        need = np.where((total[:, 0] <= 0) & ~zero, np.nan, need)
    return need / (h * w)


def compare_readings(coef, groups, readings: dict[str, dict], *, threshold: float = 0.98, means_of=()) -> pd.DataFrame:
    """The clutter score under several readings of the measure side by side, and how well each separates ``groups``.

    Args:
        coef: DCT coefficients ``[N, C, H, W]`` (:func:`dct2`).
        groups: ``[N]`` group of each image (first correct exit, Max-Min level, ...).
        readings: name → keyword arguments of :func:`clutter_of_coefficients` (``order``, ``measure``).
        threshold: the share of the total the score must reach.
        means_of: groups whose mean score gets a column ``mean, <group>``.

    Returns:
        One row per reading (index ``measure``): ``mean`` and ``std`` of the scores (images without one left out),
        ``NaN %`` (images without a score: a signed total ≤ 0), ``DC alone %`` (of the scored images, those whose
        first coefficient already reaches the share), ``KW epsilon²`` and ``KW p`` (Kruskal–Wallis across the groups
        of the scored images; NaN when their scores, or their groups, are all one value), then ``mean, <group>``.
    """
    coef, groups = np.asarray(coef, dtype=np.float64), np.asarray(groups)
    rows = []
    for name, kw in readings.items():
        s = clutter_of_coefficients(coef, threshold=threshold, **kw)
        ok = ~np.isnan(s)
        testable = np.unique(s[ok]).size > 1 and np.unique(groups[ok]).size > 1
        t = kruskal_test(s[ok], groups[ok]) if testable else {"p": np.nan, "epsilon_squared": np.nan}
        rows.append(
            {
                "measure": name,
                "mean": np.nanmean(s),
                "std": np.nanstd(s),
                "NaN %": (~ok).mean() * 100,
                "DC alone %": np.isclose(s[ok], 1 / (coef.shape[-1] * coef.shape[-2])).mean() * 100,
                "KW epsilon²": t["epsilon_squared"],
                "KW p": t["p"],
                **{f"mean, {g}": np.nanmean(s[groups == g]) for g in means_of},
            }
        )
    return pd.DataFrame(rows).set_index("measure")


def reading_key(name: str) -> str:
    """A results key for a reading's display name: the part before `` (``, ``", "`` and spaces as ``_``, no ``|``
    (``"row, |coefficients| (thesis, default)"`` → ``"row_coefficients"``)."""
    return name.split(" (")[0].replace(", ", "_").replace("|", "").replace(" ", "_")


def group_summary(scores, groups) -> pd.DataFrame:
    """Mean, variance, std and count of ``scores`` per group."""
    df = pd.DataFrame({"score": np.asarray(scores, dtype=float), "group": np.asarray(groups)})
    return df.groupby("group")["score"].agg(n="size", mean="mean", var="var", std="std")


def separation(scores, groups, order=None) -> dict:
    """How far apart the groups' mean scores lie against the spread of the scores: ``means`` (group → mean, in
    ``order`` when given), ``spread`` (largest − smallest mean), ``pooled_sd`` (SD of all scores), ``spread_in_sd``
    (spread ÷ pooled SD), ``central_95`` (the 2.5 and 97.5 % quantiles of all scores: where the measure puts almost
    every image; a narrow band near 1 means the measure saturates)."""
    scores, groups = np.asarray(scores, dtype=float), np.asarray(groups)
    names = list(order) if order is not None else sorted(np.unique(groups).tolist())
    means = {g: float(scores[groups == g].mean()) for g in names if (groups == g).any()}
    if len(means) < 2:
        raise ConfigError("a separation needs at least two non-empty groups")
    spread, sd = max(means.values()) - min(means.values()), float(scores.std())
    return {
        "means": means,
        "spread": spread,
        "pooled_sd": sd,
        "spread_in_sd": spread / sd if sd > 0 else float("nan"),
        "central_95": tuple(float(q) for q in np.quantile(scores, [0.025, 0.975])),
    }


def kruskal_test(scores, groups) -> dict:
    """Kruskal–Wallis H test of whether ``scores`` differ between groups, with the effect size ε² = (H − k + 1)/(n − k)
    (0: no difference; 1: groups fully separated)."""
    scores, groups = np.asarray(scores, dtype=float), np.asarray(groups)
    labels = [g for g in np.unique(groups) if (groups == g).sum() > 0]
    if len(labels) < 2:
        raise ConfigError("a group test needs at least two non-empty groups")
    h, p = stats.kruskal(*[scores[groups == g] for g in labels])
    n, k = len(scores), len(labels)
    return {
        "H": float(h),
        "p": float(p),
        "epsilon_squared": float(max(0.0, (h - k + 1) / (n - k))),
        "groups": k,
        "n": n,
    }


def permutation_test(scores, groups, *, n_perm: int = 2000, seed: int = 0) -> dict:
    """Permutation test of the between-group share of variance (η²): p = P(η² of shuffled groups ≥ observed)."""
    scores, groups = np.asarray(scores, dtype=float), np.asarray(groups)
    _, codes = np.unique(groups, return_inverse=True)
    k = codes.max() + 1
    if k < 2:
        raise ConfigError("a group test needs at least two non-empty groups")

    def eta2(c):
        means = np.bincount(c, scores, k) / np.bincount(c, minlength=k)
        between = (np.bincount(c, minlength=k) * (means - scores.mean()) ** 2).sum()
        return between / ((scores - scores.mean()) ** 2).sum()

    obs = eta2(codes)
    rng = np.random.default_rng(seed)
    null = np.array([eta2(rng.permutation(codes)) for _ in range(n_perm)])
    return {"eta_squared": float(obs), "p": float((1 + (null >= obs).sum()) / (1 + n_perm))}
