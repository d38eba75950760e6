"""The threshold widget wraps a plain function; both work headless."""

import matplotlib

matplotlib.use("Agg")

import pytest
from test_exits_overthinking import make_record

from overthink_lib import widgets
from overthink_lib.analysis import exits, overthinking


def _opaque_share(png: bytes) -> float:
    """Share of pixels in a PNG that are not white or transparent (a blank render has none)."""
    import io

    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(io.BytesIO(png), format="png")
    alpha = img[..., 3] if img.shape[-1] == 4 else np.ones(img.shape[:2])
    return float(((alpha > 0.5) & (img[..., :3].min(-1) < 0.95)).mean())


def _explorer():
    rec = make_record()
    anytime = exits.anytime_curve(rec)
    curves = {"thesis": exits.budgeted_curve(rec, rec, ps=[5, 20])}
    return rec, widgets.threshold_explorer(rec, anytime, curves, overthinking.bounds(rec), initial=[0.75, 0.8])


def test_threshold_point_and_explorer():
    rec = make_record()
    anytime = exits.anytime_curve(rec)
    curves = {"thesis": exits.budgeted_curve(rec, rec, ps=[5, 20])}
    res, fig = widgets.threshold_point(rec, [0.75, 0.8], "max_softmax", anytime, curves, overthinking.bounds(rec))
    assert res["accuracy"] == pytest.approx(5 / 6) and len(fig.axes) == 2
    _, view = _explorer()
    sliders = [view.controls["T1"], view.controls["T2"]]
    assert [s.description for s in sliders] == ["T1", "T2"]
    assert view.renders == 1 and _opaque_share(view.image.value) > 0.02
    first = view.image.value
    sliders[0].value = sliders[0].min  # moving a slider redraws, and the picture changes
    assert view.renders == 2 and view.image.value != first and view.error is None
    view.controls["criterion"].value = "entropy"  # switching the criterion moves every slider but draws once
    assert sliders[0].max <= 0 and view.renders == 3 and view.error is None  # negative entropy is ≤ 0


def test_explorers_leave_no_pyplot_figure_and_print_nothing(capsys):
    import matplotlib.pyplot as plt

    plt.close("all")
    rec, view = _explorer()
    view.controls["T2"].value = view.controls["T2"].min
    lam = widgets.lambda_explorer(rec, 5.0)
    browse = widgets.sample_browser(3, lambda i: widgets.label_share_figure(rec, 1.0 + i))
    browse.controls["i"].value = 2
    assert plt.get_fignums() == [] and capsys.readouterr().out == ""
    assert lam.renders == 1 and browse.renders == 2


def test_lambda_slider_is_labelled_and_starts_at_lam():
    rec = make_record()
    view = widgets.lambda_explorer(rec, 5.0)
    slider = view.controls["lam"]
    assert slider.description == "λ" and slider.value == pytest.approx(5.0, abs=1e-12)
    slider.value = 50.0
    assert view.renders == 2 and view.error is None
    with pytest.raises(ValueError, match="outside the slider's range"):
        widgets.lambda_explorer(rec, 1000.0)


def test_a_failing_draw_is_shown_not_blank():
    import ipywidgets as W

    def draw(v):
        if v > 1:
            raise RuntimeError("no exit at this value")
        return widgets.label_share_figure(make_record(), 5.0)

    view = widgets.FigureView(draw, {"v": W.IntSlider(value=0, min=0, max=3)})
    view.controls["v"].value = 2
    assert "no exit at this value" in view.message.value and view.renders == 1


def test_redraws_from_many_threads_are_never_blank():
    """The comm thread and the main thread may both redraw (JupyterLab's commsOverSubshells): every picture whole."""
    import threading

    _rec, view = _explorer()
    lo, hi = view.controls["T1"].min, view.controls["T1"].max
    pngs, errors = [], []

    def drag(k):
        for j in range(4):
            try:
                view.controls[f"T{1 + k % 2}"].value = lo + (hi - lo) * (j + k) / 10
                pngs.append(view.image.value)
            except Exception as err:
                errors.append(err)

    threads = [threading.Thread(target=drag, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and view.error is None
    assert min(_opaque_share(p) for p in pngs) > 0.02


def test_rule_explorer_switches_rule_and_setting_and_clips_the_index():
    from overthink_lib.analysis import rules

    rec = make_record()
    curves = {name: rules.rule_curve(name, rec, rec) for name in ("threshold", "patience")}
    view = widgets.rule_explorer(curves, exits.anytime_curve(rec))
    assert view.renders == 1 and view.error is None and _opaque_share(view.image.value) > 0.01
    view.controls["rule"].value = "patience"  # 3 settings: the slider's index (up to 38) is clipped to them
    view.controls["setting"].value = 30
    assert view.renders == 3 and view.error is None
    fig = widgets.rule_point(curves, "patience", 30, exits.anytime_curve(rec))
    assert "patience=2" in fig.axes[1].get_title()
