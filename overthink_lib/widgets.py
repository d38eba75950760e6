"""Interactive explorers for JupyterLab. Each wraps a plain function that the headless runs call directly."""
from __future__ import annotations

import numpy as np

from . import exits, plots
from .records import ExitRecord


def threshold_point(test: ExitRecord, thresholds, criterion: str = "max_softmax", anytime=None, curves=None,
                    bounds=None):
    """Hand-set thresholds → (result of :func:`exits.apply_thresholds`, figure: the point on the accuracy–FLOPs
    plane beside the curves, and the exit distribution)."""
    import matplotlib.pyplot as plt

    res = exits.apply_thresholds(test, thresholds, criterion)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    point = {"flops": res["flops"], "accuracy": res["accuracy"], "label": "these thresholds"}
    if anytime is not None:
        plots.plane(anytime, curves or {}, bounds, point=point, ax=ax1)
    ax2.bar(range(1, test.num_exits + 1), np.array(res["fractions"]) * 100, color="C2")
    ax2.set(xlabel="exit", ylabel="% of test samples exiting", title=f"{criterion}: acc {res['accuracy'] * 100:.2f} %, "
            f"{res['flops'] / 1e6:.2f} MFLOPs")
    fig.tight_layout()
    return res, fig


def _slider_range(test: ExitRecord, criterion: str) -> tuple[float, float]:
    c = exits.confidence(test, criterion)
    return float(c.min()), float(c.max())


def threshold_explorer(test: ExitRecord, anytime=None, curves=None, bounds=None, criterion: str = "max_softmax",
                       initial=None):
    """One slider per exit threshold (exits 1..n−1) and a criterion dropdown; redraws :func:`threshold_point`."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    lo, hi = _slider_range(test, criterion)
    init = list(initial) if initial is not None else [hi] * (test.num_exits - 1)
    sliders = [W.FloatSlider(value=float(np.clip(v, lo, hi)), min=lo, max=hi, step=(hi - lo) / 200 or 0.01,
                             description=f"T{k + 1}", continuous_update=False, readout_format=".3f")
               for k, v in enumerate(init)]
    crit = W.Dropdown(options=list(exits.CRITERIA), value=criterion, description="criterion")
    out = W.Output()
    updating = [False]  # while the criterion changes the slider ranges, draw once at the end, not per slider

    def redraw(*_):
        if updating[0]:
            return
        with out:
            out.clear_output(wait=True)
            _, fig = threshold_point(test, [s.value for s in sliders], crit.value, anytime,
                                     curves if crit.value == criterion else None, bounds)
            display(fig)
            plt.close(fig)

    def on_criterion(change):
        lo2, hi2 = _slider_range(test, change["new"])
        updating[0] = True
        try:
            for s in sliders:
                s.max = max(hi2, s.max)  # widen first so that no intermediate min > max is ever set
                s.min = lo2
                s.max, s.value, s.step = hi2, hi2, (hi2 - lo2) / 200 or 0.01
        finally:
            updating[0] = False
        redraw()

    for s in sliders:
        s.observe(redraw, names="value")
    crit.observe(on_criterion, names="value")
    redraw()
    return W.VBox([crit, W.HBox(sliders[: (len(sliders) + 1) // 2]), W.HBox(sliders[(len(sliders) + 1) // 2:]), out])
