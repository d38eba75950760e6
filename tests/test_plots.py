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


def test_images_are_drawn_as_they_are_colour_in_colour():
    """A colour image in colour (not its red channel in grey), a grey one in grey; other shapes are refused."""
    _fig, axes = plots.subplots(1, 2)
    rgb = np.zeros((3, 4, 4), np.uint8)
    rgb[1] = 200  # green only: its red channel is black
    plots.show_image(axes[0], rgb)
    plots.show_image(axes[1], np.full((1, 4, 4), 9, np.uint8))
    shown = axes[0].get_images()[0].get_array()
    assert shown.shape == (4, 4, 3) and shown[..., 1].min() == 200 and shown[..., 0].max() == 0
    grey = axes[1].get_images()[0]
    assert grey.get_array().shape == (4, 4) and grey.get_cmap().name == "gray"
    with pytest.raises(ConfigError, match=r"1 or 3 channels, got shape \(2, 4, 4\)"):
        plots.show_image(axes[0], np.zeros((2, 4, 4)))


def test_class_distribution_names_few_classes_and_stays_readable_with_many():
    labels = {"train": np.array([0, 0, 1, 2]), "test": np.array([2, 2])}
    fig, table = plots.class_distribution(labels, ("a", "b", "c"), "t")
    counts = table.set_index(["split", "class"])["images"].to_dict()
    assert counts == {
        ("train", "a"): 2,
        ("train", "b"): 1,
        ("train", "c"): 1,
        ("test", "a"): 0,
        ("test", "b"): 0,
        ("test", "c"): 2,
    }
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    many = {"train": np.arange(500) % 100, "val": np.arange(100) % 100}
    fig, table = plots.class_distribution(many, None, "cifar100")
    ax = fig.axes[0]
    assert len(table) == 200 and (table["images"] == [5] * 100 + [1] * 100).all()
    assert list(ax.get_xticks()) == list(range(0, 100, 10)) and len(ax.get_lines()) == 2


def test_class_distribution_refuses_too_few_names():
    with pytest.raises(ConfigError, match="2 class names for labels up to 2"):
        plots.class_distribution({"train": np.array([0, 2])}, ("a", "b"))
    _fig, table = plots.class_distribution({"train": np.array([], dtype=int)}, ("a", "b"))
    assert table["images"].tolist() == [0, 0]
