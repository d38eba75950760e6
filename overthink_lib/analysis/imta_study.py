"""Notebook 07's study (thesis Table 3.1, Fig 3.10): the three arms of the IMTA protocol on one network each (CIs over
test samples), the similarity of exit 1's and exit 2's confidence rankings with and without ISC, and the verdict about
the recipe over seeds (t-CIs over seeds, from either parent of the E arm). Returns the tables, the headline numbers
(section ``imta``) and the sentences, each worded from its interval.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..records import ExitRecord
from . import overthinking
from .stats import bootstrap_mean, bootstrap_statistic, change_verdict, excludes_zero, fmt_ci, t_interval

ISC = "E + E ISC+OFA"
ARMS = ("E", "2E", ISC)
OT = "overthought (thesis Eq 3.11)"


def arms(tests: dict[str, ExitRecord], epochs: int, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The three arms (``tests``: each arm's test record; E = ``epochs``): ``table`` (each arm's summary as
    "% [95 % CI]", columns named by their epochs), ``lines`` (overthought and final-exit accuracy per arm), ``diffs``
    (paired differences between arms, over the test samples), ``verdict`` (ISC+OFA − 2E), ``sentence``,
    ``headlines``."""
    summaries = {name: overthinking.summary(rec, n_boot=n_boot, seed=seed) for name, rec in tests.items()}
    table = pd.DataFrame(
        {name: {m: fmt_ci(r.value, r.low, r.high) for m, r in s.iterrows()} for name, s in summaries.items()}
    )
    named = {"E": f"{epochs} epochs", "2E": f"{2 * epochs} epochs", ISC: f"{epochs} + {epochs} ISC+OFA"}
    table.columns = [named[c] for c in table.columns]
    ot = {n: overthinking.overthought(r).double() for n, r in tests.items()}
    lines = [
        f"{name:>14}: overthought {ot[name].mean().item() * 100:.2f} %, final exit {rec.accuracy()[-1].item() * 100:.2f} %"
        for name, rec in tests.items()
    ]
    final = {n: r.correct[:, -1].double() for n, r in tests.items()}
    rows = []
    for a, b in ((ISC, "2E"), (ISC, "E"), ("2E", "E")):
        for what, d in (("overthought", ot), ("final-exit accuracy", final)):
            est, lo, hi = bootstrap_mean(d[a] - d[b], n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "comparison": f"{a} − {b}",
                    "metric": what,
                    "difference (pts) [95 % CI]": fmt_ci(est, lo, hi),
                    "CI excludes 0": excludes_zero(lo, hi),
                }
            )
    isc_2e = bootstrap_mean(ot[ISC] - ot["2E"], n_boot=n_boot, seed=seed)  # the table's first row
    verdict = change_verdict(*isc_2e)
    headlines = []
    for name, s in summaries.items():
        v = s.loc[OT]
        key = f"overthought_{name.replace(' ', '').replace('+', '_')}"
        headlines.append((key, [v.value, v.low, v.high], f"overthought, {name}", "%"))
    headlines += [
        ("isc_ofa_minus_2E", list(isc_2e), "overthought: E+E ISC+OFA minus 2E (sample CI, one network each)", "pts"),
        ("verdict", f"ISC+OFA {verdict} overthinking", "IMTA verdict (test-sample CI)", ""),
    ]
    sentence = (
        f"Here, ISC+OFA fine-tuning {verdict} overthinking relative to plain training for the same {2 * epochs} epochs "
        f"({fmt_ci(*isc_2e)} points). The thesis: CIFAR-100 18.45 → 14.33, SVHN 15.50 → 11.29."
    )
    # per exit: accuracy with its CI over test samples, per arm (for the figure)
    per_exit = {name: bootstrap_mean(rec.correct.double(), n_boot=n_boot, seed=seed) for name, rec in tests.items()}
    return dict(
        per_exit=per_exit,
        summaries=summaries,
        table=table,
        lines=lines,
        diffs=pd.DataFrame(rows),
        verdict=verdict,
        sentence=sentence,
        headlines=headlines,
    )


def rank_similarity(without: ExitRecord, with_isc: ExitRecord, *, n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
    """Fig 3.10: Spearman ρ of exit 1's and exit 2's confidence ranks, without ISC (2E) and with (E + E ISC+OFA),
    each with a bootstrap CI over test samples: ``ranks`` (per arm: the two rank arrays), ``rho``, ``sentence``,
    ``headlines``."""
    from scipy.stats import rankdata, spearmanr

    out: dict[str, Any] = {"ranks": {}, "rho": {}}
    for name, rec in (("without ISC (2E)", without), ("with ISC (E + E ISC+OFA)", with_isc)):
        conf = rec.probs.max(-1).values[:, :2].numpy()
        out["ranks"][name] = (rankdata(conf[:, 0]), rankdata(conf[:, 1]))
        out["rho"][name] = bootstrap_statistic(
            lambda rows, conf=conf: spearmanr(conf[rows, 0], conf[rows, 1])[0], len(conf), n_boot=n_boot, seed=seed
        )
    a, b = out["rho"].values()
    closer = (
        "closer (ρ higher)" if a[2] < b[1] else "less close (ρ lower)" if b[2] < a[1] else "not measurably different"
    )
    out["sentence"] = (
        f"With ISC the two rankings are {closer}: ρ {a[0]:.3f} without vs {b[0]:.3f} with (thesis Fig 3.10: less "
        "dissimilar with ISC)."
    )
    out["headlines"] = [
        ("rank_rho_exits12_without_isc", list(a), "Spearman rho, exit 1 vs exit 2 confidence ranks, 2E (Fig 3.10)", ""),
        (
            "rank_rho_exits12_with_isc",
            list(b),
            "Spearman rho, exit 1 vs exit 2 confidence ranks, E+E ISC+OFA (Fig 3.10)",
            "",
        ),
    ]
    return out


def paired_over_seeds(table: pd.DataFrame, metric: str, a: str, b: str, level: float = 0.95):
    """Mean of ``metric``(arm a) − ``metric``(arm b) over the seeds of an ``imta_over_seeds`` table, with its Student-t
    CI over seeds (the seeds are the unit of replication)."""
    wide = table.pivot(index="seed", columns="arm", values=metric)
    return t_interval((wide[a] - wide[b]).to_numpy(), level)


def over_seeds(overs: dict[str, pd.DataFrame], parent: str, freeze: str) -> dict[str, Any]:
    """The verdict about the recipe: ``overs`` maps each parent of the E arm to its ``imta_over_seeds`` table,
    ``parent`` is the notebook's (its verdict is the headline), ``freeze`` the fine-tuning's freeze option. Returns
    ``per_seed`` (each seed's overthinking per arm and its sample CI), ``table`` (paired differences, t-CIs over
    seeds), ``differences`` (per parent: ISC+OFA − 2E and E − 2E), ``sentences``, ``headlines``."""
    over = overs[parent]
    k = over["seed"].nunique()
    isc = over[over["arm"] == ISC].set_index("seed")
    per_seed = over.pivot(index="seed", columns="arm", values="overthought")[list(ARMS)] * 100
    per_seed["ISC+OFA − 2E, pts [95 % CI over this network's test samples]"] = [
        fmt_ci(r.minus_2E, r.minus_2E_low, r.minus_2E_high) for r in isc.itertuples()
    ]
    rows = []
    for p, tab in overs.items():
        for a, b in ((ISC, "2E"), (ISC, "E"), ("2E", "E")):
            for metric in ("overthought", "final_acc"):
                m, lo, hi = paired_over_seeds(tab, metric, a, b)
                rows.append(
                    {
                        "E arm from": p,
                        "comparison": f"{a} − {b}",
                        "metric": metric,
                        f"mean over {k} seeds (pts) [95 % t-CI]": fmt_ci(m, lo, hi),
                        "CI excludes 0": excludes_zero(lo, hi),
                    }
                )
    m, lo, hi = paired_over_seeds(over, "overthought", ISC, "2E")
    verdict = change_verdict(m, lo, hi)
    headlines = [
        (
            "seed_level_isc_ofa_minus_2E",
            [m, lo, hi],
            f"overthought: E+E ISC+OFA minus 2E, mean over {k} seeds, t-CI over seeds (E arm: {parent})",
            "pts",
        ),
        (
            "verdict_over_seeds",
            f"ISC+OFA {verdict} overthinking ({k} seeds)",
            "IMTA verdict about the recipe (CI over seeds)",
            "",
        ),
    ]
    diffs = {}
    for p, tab in overs.items():
        diffs[p] = {
            "isc": paired_over_seeds(tab, "overthought", ISC, "2E"),
            "e": paired_over_seeds(tab, "overthought", "E", "2E"),
        }
        headlines += [
            (
                f"seed_level_isc_ofa_minus_2E_{p}",
                list(diffs[p]["isc"]),
                f"overthought: E+E ISC+OFA minus 2E over {k} seeds, E arm from {p}",
                "pts",
            ),
            (
                f"seed_level_E_minus_2E_{p}",
                list(diffs[p]["e"]),
                f"overthought: E minus 2E over {k} seeds, E arm from {p}",
                "pts",
            ),
        ]
    sentences = _seed_sentences(over, isc, diffs, (m, lo, hi), verdict, parent, freeze)
    return dict(per_seed=per_seed, table=pd.DataFrame(rows), seeds=k, sentences=sentences, headlines=headlines)


def _seed_sentences(over, isc, diffs: dict, ci: tuple, verdict: str, parent: str, freeze: str) -> list[str]:
    """The verdict over seeds in words: the notebook's parent, each parent's differences, whether they agree, and
    what the seeds' networks are."""
    m, lo, hi = ci
    k = over["seed"].nunique()
    sample_excl = int(excludes_zero(isc["minus_2E_low"], isc["minus_2E_high"]).sum())
    sentences = [
        f"Over {k} seeds, ISC+OFA fine-tuning {verdict} overthinking relative to 2E plain epochs: "
        f"{m * 100:+.2f} points [{lo * 100:+.2f}, {hi * 100:+.2f}] (t-CI over seeds; E arm: {parent}); on its own test "
        f"samples, {sample_excl} of {k} networks had a sample CI that excludes 0."
    ]
    sentences += [
        f"E arm from {p}: E+E ISC+OFA − 2E {fmt_ci(*d['isc'])} points ({change_verdict(*d['isc'])}); "
        f"E − 2E {fmt_ci(*d['e'])} points ({change_verdict(*d['e'])})."
        for p, d in diffs.items()
    ]
    if {"branch", "separate"} <= set(diffs):
        same = change_verdict(*diffs["branch"]["isc"]) == change_verdict(*diffs["separate"]["isc"])
        sentences.append(
            "The ISC+OFA verdict "
            + (
                "is the same from either parent of the E arm."
                if same
                else "depends on where the E-epoch network comes from: read it with its parent named."
            )
        )
    acc = over.groupby("arm")["final_acc"].mean() * 100
    ot_mean = over.groupby("arm")["overthought"].mean() * 100
    sentences.append(
        f"What the seeds' networks are: final-exit accuracy E {acc['E']:.1f} %, 2E {acc['2E']:.1f} %, E + E ISC+OFA "
        f"{acc[ISC]:.1f} %; overthinking E {ot_mean['E']:.1f} %, 2E {ot_mean['2E']:.1f} %."
        + (
            " With the official frozen fine-tuning the E + E network keeps the E-epoch network's features and retrains "
            "only its linear heads, so where the E-epoch network is far from trained (a short schedule, or a one-cycle "
            "schedule half-way) the verdict is about that regime, not the thesis's 50 + 50 epochs."
            if freeze == "all"
            else ""
        )
    )
    return sentences


def seed_differences(overs: dict[str, pd.DataFrame], pairs=((ISC, "2E"), ("E", "2E"))) -> dict[str, dict]:
    """Per parent of the E arm and pair ``a − b``: each seed's overthinking difference (pts) and their mean with its
    95 % t-CI over seeds (for the figure)."""
    out = {}
    for parent, tab in overs.items():
        wide = tab.pivot(index="seed", columns="arm", values="overthought") * 100
        diffs = {f"{a} − {b}": (wide[a] - wide[b]).to_numpy() for a, b in pairs}
        out[parent] = {name: (d, t_interval(d)) for name, d in diffs.items()}
    return out
