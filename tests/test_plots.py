"""Figures of the presentation layer on hand-made records: what each panel shows, and no pyplot figure left behind."""

import matplotlib

matplotlib.use("Agg")

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_exits_overthinking import make_record

from overthink_lib import plots
from overthink_lib.config import ConfigError


def _image_set(ids, channels=1):
    """Images whose pixels all equal their dataset index (so a panel shows which sample it took), in `ids` order."""
    ids = torch.as_tensor(ids)
    images = ids.to(torch.uint8)[:, None, None, None].expand(len(ids), channels, 4, 4).clone()
    return SimpleNamespace(images=images, indices=ids, class_names=("zero", "one"))


def test_exit_predictions_show_each_rows_image_label_and_exits():
    import matplotlib.pyplot as plt

    plt.close("all")
    rec = make_record()  # ids 100..105, label 0; row 1 right, wrong, right at 0.80, 0.60, 0.90
    image_set = _image_set([105, 103, 101, 100, 104, 102])  # another order than the record's
    fig = plots.exit_predictions(rec, image_set, [1, 5])
    assert plt.get_fignums() == [] and len(fig.axes) == 2
    first, second = (ax.get_title(loc="left").split("\n") for ax in fig.axes)
    assert first == ["#101 true: zero", "e1 ✓ zero 0.80", "e2 ✗ one 0.60", "e3 ✓ zero 0.90"]
    assert second == ["#105 true: zero", "e1 ✓ zero 0.95", "e2 ✗ one 0.70", "e3 ✗ one 0.90"]
    assert [int(np.asarray(ax.images[0].get_array())[0, 0]) for ax in fig.axes] == [101, 105]  # by index, not row
    named = plots.exit_predictions(rec, SimpleNamespace(**{**vars(image_set), "class_names": None}), [2])
    assert named.axes[0].get_title(loc="left").split("\n")[:2] == ["#102 true: 0", "e1 ✗ 1 0.55"]
    rgb = plots.exit_predictions(rec, _image_set(range(100, 106), channels=3), [0])
    assert np.asarray(rgb.axes[0].images[0].get_array()).shape == (4, 4, 3)


def test_exit_predictions_with_no_rows_and_with_a_foreign_image_set():
    rec = make_record()
    empty = plots.exit_predictions(rec, _image_set(range(100, 106)), [])
    assert len(empty.axes) == 1 and not empty.axes[0].axison and not empty.axes[0].images
    with pytest.raises(ConfigError, match=r"samples \[104\] of the record are not in the image set"):
        plots.exit_predictions(rec, _image_set([100, 101]), [0, 4])
