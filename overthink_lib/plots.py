"""Saving figures: every figure as ``<fig_dir>/<name>.png`` (static) and, where exploring helps, ``.html`` (plotly)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .config import ConfigError
from .io import atomic_write_bytes


def subplots(nrows: int = 1, ncols: int = 1, figsize=None, **kw):
    """``plt.subplots`` without pyplot's global figure list: the figure belongs to no thread and no backend, so a
    widget callback may draw it on the kernel's comm thread while a cell runs on the main one. Display it with
    ``display(fig)``; it is never shown twice by the inline backend's end-of-cell flush."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def save_png(fig, fig_dir: Path, name: str, dpi: int = 120) -> Path:
    """Save a matplotlib figure as ``fig_dir/name.png`` (atomically) and return the path."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    path = Path(fig_dir) / f"{name}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_html(fig, fig_dir: Path, name: str, inline: bool = False) -> Path:
    """Save a plotly figure as a self-contained ``fig_dir/name.html`` (plotly.js inlined: works offline).

    ``inline=True`` also shows it in the notebook, interactive: JupyterLab draws the plotly mimetype with the
    plotly extension it ships (nothing fetched); the output stays small (data only, no 4.9 MB of plotly.js per
    figure), and the runner's HTML export adds plotly.js once per page (:func:`overthink_lib.suite.export_notebooks`).
    """
    path = Path(fig_dir) / f"{name}.html"
    atomic_write_bytes(path, fig.to_html(include_plotlyjs=True).encode())
    if inline:
        fig.show(renderer="plotly_mimetype")
    return path


def sample_scatter_plotly(rec, class_names=None, title: str = ""):
    """One point per test sample: first correct exit (jittered) against the final exit's confidence, coloured by
    overthought; hovering shows the sample id, its label and every exit's prediction and confidence."""
    import numpy as np
    import plotly.graph_objects as go

    from .analysis.overthinking import first_correct_exit, overthought

    names = class_names or [str(i) for i in range(rec.num_classes)]
    first = first_correct_exit(rec).numpy()
    x = np.where(first < 0, rec.num_exits + 1, first + 1) + np.random.default_rng(0).uniform(-0.3, 0.3, len(first))
    conf = rec.probs.max(-1).values.numpy()
    preds, labels, ids = rec.preds.numpy(), rec.labels.numpy(), rec.indices.numpy()
    ot = overthought(rec).numpy()
    hover = [
        "<br>".join(
            [f"#{int(ids[i])}, true {names[int(labels[i])]}"]
            + [
                f"exit {k + 1}: {names[int(preds[i, k])]} ({conf[i, k]:.2f}){' ✓' if preds[i, k] == labels[i] else ''}"
                for k in range(rec.num_exits)
            ]
        )
        for i in range(len(first))
    ]
    fig = go.Figure()
    for flag, label, color in ((False, "not overthought", "#7f7f7f"), (True, "overthought", "#d62728")):
        m = ot == flag
        fig.add_trace(
            go.Scatter(
                x=x[m],
                y=conf[m, -1],
                mode="markers",
                name=label,
                text=np.array(hover)[m],
                hoverinfo="text",
                marker={"color": color, "size": 6, "opacity": 0.7},
            )
        )
    fig.update_layout(
        title=title or "each test sample: first correct exit vs final-exit confidence",
        xaxis={
            "title": "first correct exit (last tick: none)",
            "tickvals": list(range(1, rec.num_exits + 2)),
            "ticktext": [str(k) for k in range(1, rec.num_exits + 1)] + ["none"],
        },
        yaxis={"title": "final exit's confidence (max softmax)"},
        height=420,
    )
    return fig


def exit_predictions(rec, image_set, rows, class_names=None):
    """One panel per record row in ``rows``: the sample's image (looked up in ``image_set`` by its dataset index),
    its index and true class, and every exit's prediction (✓/✗, the class name cut to 10 characters) with its
    confidence (max softmax). Built with :func:`subplots` (no pyplot figure); returns the figure.

    Args:
        rec: an :class:`~overthink_lib.records.ExitRecord`.
        image_set: what holds the images: ``images`` ``[N, C, H, W]``, ``indices`` ``[N]`` and ``class_names``
            (an :class:`~overthink_lib.data.registry.ImageSet`).
        rows: record rows to show, in order (e.g. the first overthought ones).
        class_names: names of the classes; default the image set's, else the class numbers.
    """

    rows = [int(r) for r in rows]
    pos = {int(i): r for r, i in enumerate(image_set.indices.tolist())}
    missing = [int(rec.indices[r]) for r in rows if int(rec.indices[r]) not in pos]
    if missing:
        raise ConfigError(
            f"samples {missing[:5]} of the record are not in the image set: give the split it was recorded on"
        )
    names = class_names or image_set.class_names or [str(i) for i in range(rec.num_classes)]
    probs = rec.probs
    n = len(rows)
    fig, axes = subplots(1, max(n, 1), figsize=(2.1 * max(n, 1), 3.2), squeeze=False)
    for ax, r in zip(axes[0], rows, strict=False):  # no rows: one blank panel
        show_image(ax, image_set.images[pos[int(rec.indices[r])]])
        ax.axis("off")
        lines = [f"#{int(rec.indices[r])} true: {names[int(rec.labels[r])]}"]
        for k in range(rec.num_exits):
            pred = int(rec.preds[r, k])
            ok = "✓" if pred == int(rec.labels[r]) else "✗"
            lines.append(f"e{k + 1} {ok} {names[pred][:10]} {probs[r, k].max().item():.2f}")
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
    for ax in axes[0][n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def pairwise_heatmap(pw):
    """``pw`` (E × E, % of samples): P(exit i right ∧ exit j wrong) as an annotated heatmap."""
    import pandas as pd
    import seaborn as sns

    labels = [f"exit {k}" for k in range(1, len(pw) + 1)]
    fig, ax = subplots(figsize=(5, 4))
    table = pd.DataFrame(pw, index=labels, columns=labels)
    sns.heatmap(table, annot=True, fmt=".2f", cmap="Reds", ax=ax, cbar_kws={"label": "% of test samples"})
    ax.set(xlabel="exit j wrong", ylabel="exit i right", title="P(exit i right ∧ exit j wrong)")
    return fig


def pairwise_plotly(pw):
    """:func:`pairwise_heatmap` for exploring (plotly)."""
    import pandas as pd
    import plotly.express as px

    labels = [f"exit {k}" for k in range(1, len(pw) + 1)]
    return px.imshow(
        pd.DataFrame(pw, index=labels, columns=labels),
        text_auto=".2f",
        labels={"x": "exit j wrong", "y": "exit i right", "color": "%"},
        title="P(exit i right and exit j wrong), % of test samples",
    )


def per_class_bars(pc):
    """Overthinking rate per class (a :func:`~overthink_lib.analysis.overthinking.per_class` table) as bars."""
    fig, ax = subplots(figsize=(8, 3))
    ax.bar(pc["class"] if "class" in pc else pc.index.astype(str), pc["overthinking_rate"] * 100)
    ax.set(ylabel="% overthought", title="overthinking rate per class")
    ax.tick_params(axis="x", rotation=45)
    return fig


def dct_examples(images, score):
    """Four test images from least to most cluttered (by ``score``) over the log-magnitude of their DCT (luma)."""
    import numpy as np

    from .analysis import dct

    pick = np.argsort(score)[np.linspace(0, len(score) - 1, 4).astype(int)]
    coef = dct.dct2(images[pick].numpy())
    fig, axes = subplots(2, 4, figsize=(10, 5))
    for j, r in enumerate(pick):
        show_image(axes[0, j], images[r])  # in colour where it has colour; the DCT below is of its luma
        axes[0, j].set_title(f"clutter {score[r]:.3f}", fontsize=9)
        im = axes[1, j].imshow(np.log10(np.abs(coef[j, 0]) + 1e-3), cmap="viridis")
        for ax in axes[:, j]:
            ax.axis("off")
    fig.colorbar(im, ax=axes[1].tolist(), shrink=0.8, label="log10 |coefficient|")
    return fig


def clutter_by_exit(by_exit, title: str, overall: float | None = None):
    """Mean clutter (SD bar, CI) per exit and subset (a column ``subset``, else one series), as Fig A.3 / A.5 show
    it; ``overall``: a dashed line at the mean of all images."""
    fig, ax = subplots(figsize=(6, 3.3))
    if "subset" in by_exit:
        for i, (part, g) in enumerate(by_exit.groupby("subset")):
            mean_sd_ci(ax, g["exit"] + (i - 0.5) * 0.15, g["mean"], g["sd"], g["low"], g["high"], label=part)
    else:
        mean_sd_ci(
            ax, by_exit["exit"], by_exit["mean"], by_exit["sd"], by_exit["low"], by_exit["high"], label="correct subset"
        )
    if overall is not None:
        ax.axhline(overall, color="grey", ls="--", lw=1, label="all test composites")
    ax.set(xlabel="exit", ylabel="clutter score", title=title)
    ax.legend(fontsize=7)
    return fig


def overthought_histograms(flags: dict, runs: int):
    """Per (network, factor) of ``flags`` (``[K, N]`` overthought flags): how many samples are overthought in m of the
    K runs, observed and if independent of the sample (log scale); networks as rows, factors as columns."""
    from .analysis import agreement

    nets = list(dict.fromkeys(n for n, _ in flags))
    factors = list(dict.fromkeys(f for _, f in flags))
    fig, axes = subplots(len(nets), len(factors), figsize=(13, 3 * len(nets)), sharey=True, squeeze=False)
    for (net, factor), ot in flags.items():
        h = agreement.count_histogram(ot)
        ax = axes[nets.index(net), factors.index(factor)]
        ax.bar(h["m"] - 0.2, h["observed"] * 100, 0.4, label="observed")
        ax.bar(h["m"] + 0.2, h["independent"] * 100, 0.4, label="if independent of the sample")
        ax.set_yscale("log")
        ax.set(title=f"{net}: {factor}", xlabel=f"overthought in m of {runs} runs")
    for row in axes:
        row[0].set_ylabel("% of test samples")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def kappa_matrices(flags: dict):
    """Per (network, factor) of ``flags``: Cohen's κ between every two runs' overthought sets, as heatmaps."""
    import seaborn as sns

    from .analysis import agreement

    nets = list(dict.fromkeys(n for n, _ in flags))
    factors = list(dict.fromkeys(f for _, f in flags))
    fig, axes = subplots(len(nets), len(factors), figsize=(12, 3.5 * len(nets)), squeeze=False)
    for (net, factor), ot in flags.items():
        ax = axes[nets.index(net), factors.index(factor)]
        sns.heatmap(agreement.pairwise(ot), annot=True, fmt=".2f", vmin=0, vmax=1, cmap="magma", ax=ax, cbar=False)
        ax.set(title=f"{net}: {factor} — Cohen's kappa", xlabel="run", ylabel="run")
    fig.tight_layout()
    return fig


def imta_arms(per_exit: dict, summaries: dict):
    """Notebook 07: per-exit test accuracy of each arm (``per_exit``: name → (mean, low, high) per exit) and each arm's
    overthinking rate (``summaries``: name → its overthinking summary), with 95 % CIs over test samples."""
    import numpy as np

    fig, axes = subplots(1, 2, figsize=(11, 3.4))
    for name, (m, lo, hi) in per_exit.items():
        x = np.arange(1, len(m) + 1)
        axes[0].errorbar(x, m * 100, yerr=[(m - lo) * 100, (hi - m) * 100], marker="o", capsize=3, label=name)
        axes[0].set_xticks(x)
    axes[0].set(
        xlabel="exit",
        ylabel="test accuracy (%)",
        title="per-exit accuracy, one network per arm (95 % CI over test samples)",
    )
    axes[0].legend(fontsize=8)
    vals = [s.loc["overthought (thesis Eq 3.11)"] for s in summaries.values()]
    axes[1].bar(
        list(summaries),
        [v.value * 100 for v in vals],
        yerr=[[(v.value - v.low) * 100 for v in vals], [(v.high - v.value) * 100 for v in vals]],
        capsize=4,
        color=["C0", "C1", "C2"],
    )
    axes[1].set(ylabel="% overthought", title="overthinking rate, one network per arm (95 % CI over test samples)")
    fig.tight_layout()
    return fig


def rank_scatter(ranks: dict, rho: dict, seed: int = 0, show: int = 3000):
    """Fig 3.10: each test sample's rank by exit 1's confidence against exit 2's, per arm (``show`` samples drawn)."""
    import numpy as np

    fig, axes = subplots(1, len(ranks), figsize=(9, 4.2), sharey=True, squeeze=False)
    for ax, (name, (r1, r2)) in zip(axes[0], ranks.items(), strict=True):
        pick = np.random.default_rng(seed).permutation(len(r1))[:show]
        ax.scatter(r1[pick], r2[pick], s=2, alpha=0.4)
        r = rho[name]
        ax.set(title=f"{name}\nSpearman ρ = {r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]", xlabel="rank by exit 1 confidence")
    axes[0, 0].set_ylabel("rank by exit 2 confidence")
    fig.tight_layout()
    return fig


def seed_differences(diffs: dict, seeds: int):
    """Notebook 07 over seeds: per parent of the E arm, each pair's mean difference with its t-CI and every seed's."""
    import numpy as np

    fig, axes = subplots(1, len(diffs), figsize=(5 * len(diffs), 3.4), sharey=True, squeeze=False)
    for ax, (parent, pairs) in zip(axes[0], diffs.items(), strict=True):
        for j, (d, (mean, lo, hi)) in enumerate(pairs.values()):
            ax.errorbar(j, mean, yerr=[[mean - lo], [hi - mean]], fmt="o", capsize=5, color=f"C{j}")
            ax.scatter(np.full(len(d), j) + 0.1, d, s=12, color="grey", alpha=0.7)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(pairs)), list(pairs))
        ax.set(title=f"E-epoch network: {parent}", ylabel="overthought, paired difference (pts)")
    fig.suptitle(
        f"overthinking, paired over {seeds} seeds: mean with 95 % t-CI over seeds (grey: each seed's difference)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def maxmin_gallery(ds, per_level: int, seed: int = 0):
    """Notebook 01: ``per_level`` random composites of each Max-Min level of ``ds``, titled with level, label and items."""
    import numpy as np

    from .data.maxmin import LEVELS

    rng, level = np.random.default_rng(seed), ds.extras["level"].numpy()
    show = []
    for lv in range(len(LEVELS)):
        pool = np.flatnonzero(level == lv)
        show += sorted(rng.choice(pool, min(len(pool), per_level), replace=False).tolist())
    titles = [
        f"{LEVELS[int(level[i])]} y={int(ds.labels[i])}\nitems {[int(c) for c in ds.extras['item_classes'][i] if c >= 0]}"
        for i in show
    ]
    return image_grid(ds.images[show].numpy(), titles, ncols=8, size=1.6)


def level_label_table(table, title: str):
    """A table of counts (levels × labels) as an annotated heatmap."""
    import seaborn as sns

    fig, ax = subplots(figsize=(8, 2.4))
    sns.heatmap(table, annot=True, fmt="d", cmap="Blues", ax=ax, cbar=False)
    ax.set_title(title)
    return fig


def learning_curves(history):
    """Notebook 02: loss and accuracy per exit over the epochs of a run's ``history`` (train dashed, validation
    solid). Returns (figure, the long table it plots: epoch, exit, part, accuracy, loss)."""
    import pandas as pd

    hist = pd.DataFrame(history)
    parts = [p for p in ("train", "val") if any(c.startswith(f"{p}_acc_") for c in hist)]
    exits = sorted({int(c.rsplit("_", 1)[1]) for c in hist if c.startswith("train_acc_")})
    long = pd.DataFrame(
        [
            {
                "epoch": r["epoch"],
                "exit": k,
                "part": part,
                "accuracy": r[f"{part}_acc_{k}"],
                "loss": r[f"{part}_loss_{k}"],
            }
            for _, r in hist.iterrows()
            for k in exits
            for part in parts
            if f"{part}_acc_{k}" in r
        ]
    )
    fig, axes = subplots(1, 2, figsize=(10, 3.2))
    for part, ls in (("train", "--"), ("val", "-")):
        for k, g in long[long["part"] == part].groupby("exit"):
            axes[0].plot(g["epoch"], g["loss"], ls, marker="o", color=f"C{k - 1}", label=f"exit {k} {part}")
            axes[1].plot(g["epoch"], g["accuracy"], ls, marker="o", color=f"C{k - 1}", label=f"exit {k} {part}")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy")
    axes[1].set(xlabel="epoch", ylabel="accuracy")
    axes[1].legend(fontsize=7, ncol=2)
    return fig, long


def anytime_points(rec, title: str):
    """Each exit's test accuracy at its cumulative cost, labelled."""
    fig, ax = subplots(figsize=(5, 3.2))
    ax.plot(rec.flops / 1e6, rec.accuracy() * 100, marker="o")
    for k, (f, a) in enumerate(zip(rec.flops / 1e6, rec.accuracy() * 100, strict=True), 1):
        ax.annotate(f"exit {k}", (f, a), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set(xlabel="cumulative MFLOPs (MACs)", ylabel="test accuracy (%)", title=title)
    return fig


def time_vs_flops(table, title: str):
    """Notebook 10: wall-clock time saved against FLOPs saved by real early exit (``dynamic.time_vs_flops``'s table).
    Returns (matplotlib figure, plotly figure)."""
    import plotly.graph_objects as go

    fig, ax = subplots(figsize=(5.4, 4.6))
    ax.plot([0, 100], [0, 100], color="0.6", ls="--", label="time saved = FLOPs saved")
    ax.plot([0, 100], [0, 80], color="0.8", ls=":", label="80 % of the FLOPs saving")
    ax.plot(table["flops_saved"] * 100, table["time_saved"] * 100, "o-", color="C3", label="real early exit")
    for r in table.itertuples():
        ax.annotate(
            f"p={r.p}",
            (r.flops_saved * 100, r.time_saved * 100),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
        )
    ax.set(
        xlabel="FLOPs saved vs the full network (%)",
        ylabel="wall-clock time saved (%)",
        xlim=(0, 100),
        ylim=(0, 100),
        title=title,
    )
    ax.legend(loc="upper left", fontsize=8)
    hover = [f"p={p}, acc {a * 100:.2f} %" for p, a in zip(table["p"], table["test_acc"], strict=True)]
    pf = go.Figure(
        [
            go.Scatter(
                x=[0, 100],
                y=[0, 100],
                mode="lines",
                name="time saved = FLOPs saved",
                line=dict(dash="dash", color="gray"),
            ),
            go.Scatter(
                x=table["flops_saved"] * 100,
                y=table["time_saved"] * 100,
                mode="lines+markers",
                name="real early exit",
                text=hover,
            ),
        ]
    )
    pf.update_layout(xaxis_title="FLOPs saved (%)", yaxis_title="wall-clock time saved (%)", width=600, height=500)
    return fig, pf


def cam_statistics(stats, exits: int):
    """05: each heatmap statistic per exit and group, mean with its 95 % CI (``cams.group_statistics``' table)."""
    names = list(dict.fromkeys(stats["statistic"]))
    fig, axes = subplots(1, len(names), figsize=(13, 3.3), squeeze=False)
    for ax, (name, g) in zip(axes[0], stats.groupby("statistic", sort=False), strict=True):
        for i, (group, gg) in enumerate(g.groupby("group")):
            yerr = [gg["mean"] - gg["low"], gg["high"] - gg["mean"]]
            ax.errorbar(gg["exit"] + (i - 0.5) * 0.1, gg["mean"], yerr=yerr, marker="o", capsize=3, label=group)
        ax.set(title=name, xlabel="exit")
        ax.set_xticks(range(1, exits + 1))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cam_similarity(
    differences: dict, exits: int, target: str, versus=("all others", "matched (pattern)", "matched (count)")
):
    """05: overthought minus each comparison group in the similarity with the previous exit's heatmap, per exit."""
    import numpy as np

    fig, ax = subplots(figsize=(6, 3.3))
    for i, vs in enumerate(versus):
        d = np.array([differences[(vs, f"exit {e}")] for e in range(2, exits + 1)])
        x = np.arange(2, exits + 1) + (i - 1) * 0.1
        ax.errorbar(
            x, d[:, 0], yerr=[d[:, 0] - d[:, 1], d[:, 2] - d[:, 0]], marker="o", capsize=3, label=f"overthought − {vs}"
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="exit", ylabel="similarity with previous exit", title=f"differences, 95 % CI (target {target})")
    ax.set_xticks(range(1, exits + 1))
    ax.set_xlim(1.5, exits + 0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_by_level(tables: dict, title: str):
    """08 (Fig 4.4): accuracy per exit and Max-Min level (``tables``: panel title → [exit, level] % table)."""
    fig, axes = subplots(1, len(tables), figsize=(5.5 * len(tables), 3.3), sharey=True, squeeze=False)
    for ax, (name, acc) in zip(axes[0], tables.items(), strict=True):
        acc.plot(marker="o", ax=ax)
        ax.set(title=name, ylabel="test accuracy (%)", xticks=acc.index)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def label_shares(dist, title: str):
    """08 (Fig 4.2): the share of each D_ee label per λ (``policy.label_distribution``'s table)."""
    import seaborn as sns

    fig, ax = subplots(figsize=(6, 3))
    sns.barplot(data=dist, x="label", y="share", hue="lambda", ax=ax)
    ax.set(xlabel="D_ee label (exit)", title=title)
    return fig


def label_share_by_level(share, lam: float):
    """08 (Fig 4.5): each level's D_ee label shares (%)."""
    fig, ax = subplots(figsize=(6.5, 3.2))
    share.T.plot.bar(ax=ax, rot=0)
    ax.set(
        xlabel="D_ee label (exit)",
        ylabel="% of the level's labelled samples",
        title=f"Max-Min D_ee labels by level, lambda = {lam} (Fig 4.5)",
    )
    return fig


def label_by_lambda(table, lam: float, levels):
    """08: the mean D_ee label per level over a grid of λ (log scale), the notebook's λ marked."""
    fig, ax = subplots(figsize=(5.5, 3.2))
    table[list(levels)].plot(marker="o", logx=True, ax=ax)
    ax.axvline(lam, color="grey", ls=":", lw=1)
    ax.set(ylabel="mean D_ee label (exit)", title="Max-Min: mean label per level by lambda")
    return fig


def policy_breakdown(accuracy, confusion):
    """08 (Fig 4.6): the policy's accuracy per label × level (%) and its confusion matrix."""
    import pandas as pd
    import seaborn as sns

    fig, axes = subplots(1, 2, figsize=(11, 3.2))
    sns.heatmap(accuracy, annot=True, fmt=".0f", cmap="viridis", ax=axes[0])
    axes[0].set_title("policy accuracy (%) per label × level (Fig 4.6)")
    k = len(confusion)
    table = pd.DataFrame(confusion, index=range(1, k + 1), columns=range(1, k + 1))
    sns.heatmap(table, annot=True, fmt="d", cmap="Blues", ax=axes[1])
    axes[1].set(xlabel="predicted label", ylabel="true label", title="confusion")
    return fig


def binary_policy(per_label, lam: float):
    """08 (Fig 4.7–4.8): the binary D_ee label shares and the policy's test accuracy per label (chance dashed)."""
    fig, axes = subplots(1, 2, figsize=(9, 3))
    axes[0].bar(per_label["label"], per_label["train share %"], color=["C0", "C1"])
    axes[0].set(ylabel="% of D_ee training set", title=f"binary D_ee labels, lambda = {lam:.3g} (Fig 4.7)")
    acc = per_label["policy accuracy %"]
    yerr = [acc - per_label["low"], per_label["high"] - acc]
    axes[1].bar(per_label["label"], acc, yerr=yerr, capsize=4, color=["C0", "C1"])
    axes[1].axhline(50, color="grey", ls="--", lw=1)
    axes[1].set(ylabel="policy accuracy (%)", title="M_ee per label, test (Fig 4.8)")
    fig.tight_layout()
    return fig


def dee_train_vs_val(labels: dict):
    """08 (Fig 4.1): D_ee's first-correct-exit label shares from each split (``labels``: split → (shares, exit 1's
    accuracy (estimate, low, high)))."""
    import numpy as np

    fig, axes = subplots(1, len(labels), figsize=(10, 3), squeeze=False)
    for ax, (name, (shares, a1)) in zip(axes[0], labels.items(), strict=True):
        ax.bar(np.arange(1, len(shares) + 1), shares * 100)
        ax.set(
            xlabel="D_ee label (first correct exit)",
            ylabel="% of D_ee",
            title=f"from the {name} (exit 1: {a1[0] * 100:.1f} %)",
        )
    fig.tight_layout()
    return fig


def policy_planes(parts: dict):
    """08: each policy as an exit rule on its network's accuracy–FLOPs plane (``parts``: title →
    ``policy_study.as_exit_rule``'s output)."""
    fig, axes = subplots(1, max(len(parts), 1), figsize=(6 * max(len(parts), 1), 4), squeeze=False)
    for ax, (name, p) in zip(axes[0], parts.items()):
        plane(p["anytime"], p["curves"], p["bounds"], point=p["point"], ax=ax, title=name)
    fig.tight_layout()
    return fig


def mean_sd_ci(ax, x, mean, sd, low, high, *, label: str = "", color=None) -> None:
    """Group means as the thesis's Figs A.3/A.5 draw them, with the spread: a thin bar of ±1 SD around each mean (how
    much the values vary), and a thick bar over the 95 % CI of the mean (how sure the mean is). Integer x ticks."""
    import numpy as np

    x, mean, sd, low, high = (np.asarray(v, dtype=float) for v in (x, mean, sd, low, high))
    line = ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, lw=0.8, color=color, label=f"{label} (mean ± SD)")
    ax.vlines(x, low, high, lw=4, alpha=0.6, color=line[0].get_color(), label=f"{label}: 95 % CI of the mean")
    ax.set_xticks(np.unique(np.round(x).astype(int)))


def show_image(ax, image, cmap: str = "gray") -> None:
    """Draw one ``[C, H, W]`` image as it is: one channel in ``cmap``, three channels in colour (never one channel of a
    colour image shown in grey)."""
    import numpy as np

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ConfigError(f"an image must be [C, H, W] with 1 or 3 channels, got shape {img.shape}")
    ax.imshow(img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0)), cmap=cmap if img.shape[0] == 1 else None)


def class_distribution(labels_by_split: dict, class_names=None, title: str = ""):
    """Images per class and split (``labels_by_split``: split → ``[N]`` labels). Up to 20 classes as grouped bars
    with each class named; more (CIFAR-100's 100) as one line per split over the class numbers, ticks every tenth
    class, so the figure stays readable. Returns (figure, tidy table of split, label, class, images)."""
    import numpy as np
    import pandas as pd
    import seaborn as sns

    num = 1 + max((int(np.max(np.asarray(v))) for v in labels_by_split.values() if len(v)), default=-1)
    if class_names is not None:
        if len(class_names) < num:
            raise ConfigError(f"{len(class_names)} class names for labels up to {num - 1}")
        num = len(class_names)
    rows = []
    for split, labels in labels_by_split.items():
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num)
        rows += [{"split": split, "label": k, "images": int(c)} for k, c in enumerate(counts)]
    table = pd.DataFrame(rows)
    table["class"] = [class_names[k] if class_names is not None else str(k) for k in table["label"]]
    if num <= 20:
        fig, ax = subplots(figsize=(9, 3.2))
        sns.barplot(data=table, x="class", y="images", hue="split", ax=ax)
        ax.tick_params(axis="x", rotation=45)
    else:
        fig, ax = subplots(figsize=(11, 3.2))
        for split, g in table.groupby("split", sort=False):
            ax.plot(g["label"], g["images"], marker=".", lw=1, label=split)
        ax.set_xticks(range(0, num, 10))
        ax.set(xlabel=f"class (0–{num - 1}; hover the HTML figure for names)", xlim=(-1, num))
        ax.legend(title="split")
    ax.set(ylabel="images", title=title)
    fig.tight_layout()
    return fig, table


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.4, colors=None):
    """A grid of images (``[N, C, H, W]`` uint8 or float tensor/array) with optional titles; returns the figure."""
    import numpy as np

    images = np.asarray(images)
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.3)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        show_image(ax, images[i], cmap)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7, **({} if colors is None else {"color": colors[i]}))
    fig.tight_layout()
    return fig


def plane(anytime, curves: dict, bounds: dict, point: dict | None = None, ax=None, title: str = ""):
    """The accuracy–FLOPs plane (thesis Fig 3.7): anytime points, budgeted curves, oracle and realistic bounds.

    Args:
        anytime: table with flops, accuracy (and optional low/high CI columns).
        curves: name → table with test_flops, test_acc (and optional low/high).
        bounds: :func:`overthink_lib.analysis.overthinking.bounds` output.
        point: an extra point {flops, accuracy, label} (the widget's hand-set thresholds).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
    else:
        fig = ax.figure
    m = 1e6
    ax.plot(anytime["flops"] / m, anytime["accuracy"] * 100, "o-", color="k", label="anytime (each exit)")
    if "low" in anytime:
        ax.errorbar(
            anytime["flops"] / m,
            anytime["accuracy"] * 100,
            yerr=[(anytime["accuracy"] - anytime["low"]) * 100, (anytime["high"] - anytime["accuracy"]) * 100],
            fmt="none",
            color="k",
            capsize=3,
        )
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(
            c["test_flops"] / m,
            c["test_acc"] * 100,
            ".-" if i == 0 else "x--",
            color=f"C{i}",
            label=f"budgeted: {name}",
        )
        if "low" in c:
            ax.fill_between(c["test_flops"] / m, c["low"] * 100, c["high"] * 100, color=f"C{i}", alpha=0.2)
    for name, marker, color in (("oracle", "*", "C2"), ("realistic", "P", "C3")):
        ax.plot(bounds[name]["flops"] / m, bounds[name]["accuracy"] * 100, marker, color=color, ms=12, label=name)
    if point is not None:
        ax.plot(point["flops"] / m, point["accuracy"] * 100, "D", color="red", ms=9, label=point.get("label", "yours"))
    ax.set(xlabel="expected MFLOPs per sample (MACs)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)  # where it covers the fewest points
    ax.grid(alpha=0.3)
    return fig


def _anytime_trace(anytime):
    """The anytime points (each exit's accuracy at its cost) as a plotly trace, exit on hover."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=anytime["flops"] / 1e6,
        y=anytime["accuracy"] * 100,
        mode="lines+markers",
        name="anytime",
        text=[f"exit {k}" for k in anytime["exit"]],
        hovertemplate="%{text}<br>%{x:.2f} MFLOPs<br>%{y:.2f} %<extra></extra>",
    )


def plane_plotly(anytime, curves: dict, bounds: dict, title: str = ""):
    """Plotly version of :func:`plane` with thresholds and exit fractions on hover."""
    import plotly.graph_objects as go

    m = 1e6
    fig = go.Figure()
    fig.add_trace(_anytime_trace(anytime))
    for name, c in curves.items():
        hover = [
            f"p={p}<br>thresholds {', '.join(f'{t:.3f}' for t in th[:-1])}<br>exit fractions "
            f"{', '.join(f'{f:.2f}' for f in fr)}"
            for p, th, fr in zip(c["p"], c["thresholds"], c["test_fractions"])
        ]
        fig.add_trace(
            go.Scatter(
                x=c["test_flops"] / m,
                y=c["test_acc"] * 100,
                mode="lines+markers",
                name=f"budgeted: {name}",
                text=hover,
                hovertemplate="%{text}<br>%{x:.2f} MFLOPs<br>%{y:.2f} %<extra></extra>",
            )
        )
    for name in ("oracle", "realistic"):
        fig.add_trace(
            go.Scatter(
                x=[bounds[name]["flops"] / m],
                y=[bounds[name]["accuracy"] * 100],
                mode="markers",
                marker={"size": 14, "symbol": "star"},
                name=name,
            )
        )
    fig.update_layout(title=title, xaxis_title="expected MFLOPs per sample (MACs)", yaxis_title="test accuracy (%)")
    return fig


def rules_plane(curves: dict, anytime=None, point: dict | None = None, ax=None, title: str = ""):
    """Every exit rule's test accuracy against its expected test FLOPs (one curve per rule, :mod:`.analysis.rules`
    tables), the anytime points beside them; ``point`` {flops, accuracy, label} highlights one setting."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
    else:
        fig = ax.figure
    m = 1e6
    if anytime is not None:
        ax.plot(anytime["flops"] / m, anytime["accuracy"] * 100, "o-", color="k", label="anytime (each exit)")
    for i, (name, c) in enumerate(curves.items()):
        order = c.sort_values("test_flops")
        ax.plot(order["test_flops"] / m, order["test_acc"] * 100, ".-" if i == 0 else "x--", color=f"C{i}", label=name)
    if point is not None:
        ax.plot(point["flops"] / m, point["accuracy"] * 100, "D", color="red", ms=9, label=point.get("label", "chosen"))
    ax.set(xlabel="expected MFLOPs per sample (MACs)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.grid(alpha=0.3)
    return fig


def rules_plane_plotly(curves: dict, anytime=None, title: str = ""):
    """Plotly version of :func:`rules_plane`: hovering a point shows its rule, its parameters, validation and test
    accuracy and cost, and where the test samples exit."""
    import plotly.graph_objects as go

    m = 1e6
    fig = go.Figure()
    if anytime is not None:
        fig.add_trace(_anytime_trace(anytime))
    for name, c in curves.items():
        c = c.sort_values("test_flops")
        hover = [
            f"{name}: {label}<br>validation {va * 100:.2f} % at {vf / m:.2f} MFLOPs<br>exit fractions "
            f"{', '.join(f'{f:.2f}' for f in fr)}"
            for label, va, vf, fr in zip(c["label"], c["val_acc"], c["val_flops"], c["test_fractions"])
        ]
        fig.add_trace(
            go.Scatter(
                x=c["test_flops"] / m,
                y=c["test_acc"] * 100,
                mode="lines+markers",
                name=name,
                text=hover,
                hovertemplate="%{text}<br>test %{y:.2f} % at %{x:.2f} MFLOPs<extra></extra>",
            )
        )
    fig.update_layout(
        title=title, xaxis_title="expected MFLOPs per sample (MACs)", yaxis_title="test accuracy (%)", height=450
    )
    return fig


def reliability(bins_before: list, bins_after: list | None = None, title: str = ""):
    """Reliability diagrams, one panel per exit: accuracy against mean confidence of each bin (a dot per bin, its
    size the bin's count; the diagonal is perfect calibration), before and (optionally) after temperature scaling."""
    n = len(bins_before)
    fig, axes = subplots(1, n, figsize=(2.6 * n, 2.9), sharey=True, squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1)
        for bins, color, label in ((bins_before[k], "C3", "raw"), ((bins_after or [None] * n)[k], "C0", "scaled")):
            if bins is None:
                continue
            size = 8 + 60 * bins["count"] / bins["count"].max()
            ax.scatter(bins["confidence"], bins["accuracy"], s=size, color=color, alpha=0.7, label=label)
            ax.plot(bins["confidence"], bins["accuracy"], color=color, lw=0.8, alpha=0.7)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"exit {k + 1}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
