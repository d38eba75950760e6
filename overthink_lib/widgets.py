"""Interactive explorers for JupyterLab. Each wraps a plain function that the headless runs call directly.

How they draw (the fix for a blank or half-drawn first render): JupyterLab ≥ 4.6 delivers widget messages on a kernel
*subshell thread* (``commsOverSubshells``), so a slider callback can run while the main thread is still executing the
cell that built the widget. ``ipywidgets.interact`` draws with pyplot into an ``Output`` widget: two threads then
share pyplot's global figure list and the output-capture hook, and the inline backend's end-of-cell flush can show
a figure another thread has only begun to draw (a transparent image), or print the callback's return value. Here
every explorer is a :class:`FigureView`: the figure is built outside pyplot (:func:`plots.subplots`), rendered to
PNG bytes under one lock, and set as the value of an ``Image`` widget — one atomic state update, no output capture,
nothing for the end-of-cell flush to find, whichever thread the callback runs on.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import numpy as np

from . import plots
from .analysis import exits
from .records import ExitRecord


def threshold_point(
    test: ExitRecord, thresholds, criterion: str = "max_softmax", anytime=None, curves=None, bounds=None
):
    """Hand-set thresholds → (result of :func:`exits.apply_thresholds`, figure: the point on the accuracy–FLOPs
    plane beside the curves, and the exit distribution)."""
    res = exits.apply_thresholds(test, thresholds, criterion)
    fig, (ax1, ax2) = plots.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    point = {"flops": res["flops"], "accuracy": res["accuracy"], "label": "these thresholds"}
    if anytime is not None:
        plots.plane(anytime, curves or {}, bounds, point=point, ax=ax1)
    ax2.bar(range(1, test.num_exits + 1), np.array(res["fractions"]) * 100, color="C2")
    ax2.set(
        xlabel="exit",
        ylabel="% of test samples exiting",
        title=f"{criterion}: acc {res['accuracy'] * 100:.2f} %, {res['flops'] / 1e6:.2f} MFLOPs",
    )
    shown = ", ".join(f"T{k + 1} = {t:.3g}" for k, t in enumerate(thresholds))
    fig.suptitle(f"thresholds {shown}", fontsize=9, x=0.01, ha="left")  # the picture names what it shows
    fig.tight_layout()
    return res, fig


def _slider_range(test: ExitRecord, criterion: str) -> tuple[float, float]:
    c = exits.confidence(test, criterion)
    return float(c.min()), float(c.max())


_DRAW_LOCK = threading.Lock()  # one figure rendered at a time, whichever thread asks


def render_png(fig, dpi: int = 96) -> bytes:
    """A matplotlib figure → PNG bytes; the figure is closed (pyplot's list, if it was on it, forgets it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    with _DRAW_LOCK:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
    return buf.getvalue()


class FigureView:
    """Controls + one image: ``draw(**values)`` returns a matplotlib figure for the controls' current values.

    ``view.widget`` is what to display (``rows``: control names per row); ``redraw_on`` names the controls whose
    change redraws (default all; a control with its own handler redraws through :meth:`quietly`); ``view.redraw()`` renders now (also called on every control change).
    ``view.renders`` counts renders (tests and the browser test read it); ``view.error`` keeps the last exception
    of a draw as text, shown under the image instead of a blank.
    """

    def __init__(
        self,
        draw: Callable[..., object],
        controls: dict,
        rows: list[list[str]] | None = None,
        redraw_on: list[str] | None = None,
    ):
        import ipywidgets as W

        self.draw, self.controls = draw, controls
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.message = W.HTML()
        self.renders, self.error, self._quiet = 0, None, False
        rows = rows or [list(controls)]
        self.widget = W.VBox([W.HBox([controls[n] for n in row]) for row in rows] + [self.image, self.message])
        for name in controls if redraw_on is None else redraw_on:  # the others redraw through their own handler
            controls[name].observe(self.redraw, names="value")
        self.redraw()

    def values(self) -> dict:
        return {name: c.value for name, c in self.controls.items()}

    def redraw(self, *_):
        if self._quiet:
            return
        try:
            png = render_png(self.draw(**self.values()))
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"
            self.message.value = f"<pre style='color:#b00'>{self.error}</pre>"
            return
        self.image.value, self.error, self.message.value = png, None, ""
        self.renders += 1

    def quietly(self):
        """``with view.quietly(): ...`` changes several controls and draws once at the end."""
        view = self

        class _Quiet:
            def __enter__(self):
                view._quiet = True

            def __exit__(self, *exc):
                view._quiet = False
                view.redraw()

        return _Quiet()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def threshold_explorer(
    test: ExitRecord, anytime=None, curves=None, bounds=None, criterion: str = "max_softmax", initial=None
) -> FigureView:
    """One slider per exit threshold (exits 1..n−1) and a criterion dropdown; redraws :func:`threshold_point`."""
    import ipywidgets as W

    lo, hi = _slider_range(test, criterion)
    init = list(initial) if initial is not None else [hi] * (test.num_exits - 1)
    sliders = {
        f"T{k + 1}": W.FloatSlider(
            value=float(np.clip(v, lo, hi)),
            min=lo,
            max=hi,
            step=(hi - lo) / 200 or 0.01,
            description=f"T{k + 1}",
            continuous_update=False,
            readout_format=".3f",
        )
        for k, v in enumerate(init)
    }
    crit = W.Dropdown(options=list(exits.CRITERIA), value=criterion, description="criterion")

    def draw(criterion, **ts):
        return threshold_point(
            test,
            [ts[f"T{k + 1}"] for k in range(len(ts))],
            criterion,
            anytime,
            curves if criterion == first_criterion else None,
            bounds,
        )[1]

    first_criterion = criterion
    names = list(sliders)
    view = FigureView(
        draw,
        {"criterion": crit, **sliders},
        rows=[["criterion"], names[: (len(names) + 1) // 2], names[(len(names) + 1) // 2 :]],
        redraw_on=names,
    )

    def on_criterion(change):
        lo2, hi2 = _slider_range(test, change["new"])
        with view.quietly():  # while the ranges move, draw once at the end, not per slider
            for s in sliders.values():
                s.max = max(hi2, s.max)  # widen first so that no intermediate min > max is ever set
                s.min = lo2
                s.max, s.value, s.step = hi2, hi2, (hi2 - lo2) / 200 or 0.01

    crit.observe(on_criterion, names="value")
    return view


def label_share_figure(record: ExitRecord, lam: float, method: str = "score"):
    """The D_ee label distribution of ``record`` under λ (thesis Fig 4.2's bars) as a figure."""
    from .analysis.policy import label_distribution

    d = label_distribution(record, method, [lam])
    d = d[d["share"].notna()]
    fig, ax = plots.subplots(figsize=(5.5, 2.8))
    ax.bar(d["label"], d["share"] * 100, color="C0")
    ax.set(
        xlabel="D_ee label (exit)",
        ylabel="% of samples",
        title=f"{method} labels, λ = {lam:.2f}",
        xticks=list(d["label"]),
    )
    fig.tight_layout()
    return fig


def lambda_explorer(
    record: ExitRecord, lam: float, method: str = "score", lo: float = 0.1, hi: float = 300.0
) -> FigureView:
    """A log-scale λ slider (labelled λ, starting exactly at ``lam``) redrawing :func:`label_share_figure`."""
    import ipywidgets as W

    if not lo <= lam <= hi:
        raise ValueError(f"lambda {lam} is outside the slider's range [{lo}, {hi}]")
    slider = W.FloatLogSlider(
        value=lam,
        base=10,
        min=float(np.log10(lo)),
        max=float(np.log10(hi)),
        step=0.01,
        description="λ",
        continuous_update=False,
        readout_format=".3g",
    )
    slider.value = lam  # FloatLogSlider snaps to its step on creation; the start value is the notebook's λ
    return FigureView(lambda lam: label_share_figure(record, lam, method), {"lam": slider})


def sample_browser(n: int, draw: Callable[[int], object], description: str = "sample") -> FigureView:
    """An integer slider over ``n`` items redrawing ``draw(i)`` (05's overthought-sample browser)."""
    import ipywidgets as W

    if n < 1:
        raise ValueError("nothing to browse: no samples")
    slider = W.IntSlider(
        value=0,
        min=0,
        max=n - 1,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
    )
    return FigureView(lambda i: draw(i), {"i": slider})


def rule_explorer(curves: dict, anytime=None) -> FigureView:
    """A rule dropdown and a setting slider: the chosen setting on the accuracy–FLOPs plane of every rule, and where
    its test samples exit (the slider's index is clipped to the rule's settings)."""
    import ipywidgets as W

    names = list(curves)
    most = max(len(c) for c in curves.values())
    rule = W.Dropdown(options=names, value=names[0], description="rule")
    setting = W.IntSlider(
        value=min(most - 1, most // 2), min=0, max=most - 1, description="setting", continuous_update=False
    )

    def draw(rule, setting):
        return rule_point(curves, rule, setting, anytime)

    return FigureView(draw, {"rule": rule, "setting": setting}, rows=[["rule", "setting"]])


def rule_point(curves: dict, rule: str, setting: int, anytime=None):
    """The figure of :func:`rule_explorer` for one rule and setting index."""
    c = curves[rule]
    row = c.iloc[int(np.clip(setting, 0, len(c) - 1))]
    fig, (ax1, ax2) = plots.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    point = {"flops": row["test_flops"], "accuracy": row["test_acc"], "label": f"{rule}: {row['label']}"}
    plots.rules_plane(curves, anytime, point=point, ax=ax1)
    fr = np.array(row["test_fractions"]) * 100
    ax2.bar(range(1, len(fr) + 1), fr, color="C2")
    ax2.set(
        xlabel="exit",
        ylabel="% of test samples exiting",
        title=f"{row['label']}: acc {row['test_acc'] * 100:.2f} %, {row['test_flops'] / 1e6:.2f} MFLOPs",
    )
    fig.tight_layout()
    return fig


def cam_browser(test_set, rows, heatmaps, description: str = "overthought") -> FigureView:
    """05: browse the heatmaps per exit of the test samples ``rows`` (``heatmaps``: their ExitCams) one by one."""
    from . import cams

    def draw(i: int):
        r = rows[[i]]
        title = [f"#{int(test_set.indices[r[0]])}"]
        labels = test_set.labels[r].tolist()
        return cams.cam_grid(test_set.images[r].numpy(), heatmaps.rows([i]), labels, test_set.class_names, title)

    return sample_browser(len(rows), draw, description)
