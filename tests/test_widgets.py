"""The threshold widget wraps a plain function; both work headless."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from overthink_lib import exits, overthinking, widgets  # noqa: E402
from test_exits_overthinking import make_record  # noqa: E402


def test_threshold_point_and_explorer():
    rec = make_record()
    anytime = exits.anytime_curve(rec)
    curves = {"thesis": exits.budgeted_curve(rec, rec, ps=[5, 20])}
    res, fig = widgets.threshold_point(rec, [0.75, 0.8], "max_softmax", anytime, curves, overthinking.bounds(rec))
    assert res["accuracy"] == pytest.approx(5 / 6) and len(fig.axes) == 2
    box = widgets.threshold_explorer(rec, anytime, curves, overthinking.bounds(rec), initial=[0.75, 0.8])
    sliders = [w for row in box.children[1:3] for w in row.children]
    assert [s.description for s in sliders] == ["T1", "T2"]
    sliders[0].value = sliders[0].min  # moving a slider redraws without error
    box.children[0].value = "entropy"  # so does switching the criterion
    assert sliders[0].max <= 0  # negative entropy is ≤ 0
