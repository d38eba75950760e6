"""GradCAM per exit: shapes, range, one target per image, hooks released, a planted left-half model, bad input."""

import numpy as np
import pytest
import torch
from torch import nn

from overthink_lib.cams import cam_statistics, exit_cams, overlay
from overthink_lib.config import ConfigError
from overthink_lib.models import get_model
from overthink_lib.models.base import MultiExit


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_maps_per_exit_shape_range_and_hooks(channels, size):
    torch.manual_seed(0)
    model = get_model("msdnet_cifar", num_classes=10, in_channels=channels, channels=4, growth=2, head_channels=8)
    x = torch.randn(4, channels, size, size)
    before = _hooks(model)
    out = exit_cams(model, x, labels=torch.tensor([0, 1, 2, 3]), target="label")
    assert out.cams.shape == (4, 5, size, size)
    assert out.cams.min() >= 0 and out.cams.max() <= 1
    assert out.preds.shape == (4, 5) and out.exits == [0, 1, 2, 3, 4]
    assert _hooks(model) == before == 0
    assert model.training  # the model's mode is restored


def test_one_target_per_image():
    torch.manual_seed(0)
    model = get_model("msdnet_cifar", num_classes=10, in_channels=1, channels=4, growth=2, head_channels=8)
    x = torch.randn(1, 1, 28, 28).repeat(3, 1, 1, 1)  # the same image three times, three different targets
    maps = exit_cams(model, x, labels=torch.tensor([0, 5, 0]), exits=[2], method="hirescam", target="label").cams[:, 0]
    assert np.allclose(maps[0], maps[2], atol=1e-5)
    assert not np.allclose(maps[0], maps[1], atol=1e-3)


class LeftHalf(MultiExit):
    """Two exits; the first reads only the left half of the image (1×1 conv, no bias: no bleed across)."""

    def __init__(self):
        super().__init__()
        self.num_exits = 2
        self.conv = nn.Conv2d(1, 4, 1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(4, 3)

    def stage(self, k, state):
        if k == 0:
            mask = torch.zeros_like(state)
            mask[..., : state.shape[-1] // 2] = 1
            a = torch.relu(self.conv(state * mask))
            return a, self.fc1(a.mean((2, 3)))
        b = torch.relu(self.conv2(state))
        return b, self.fc2(b.mean((2, 3)))

    def cam_layers(self):
        return ["conv", "conv2"]


def test_exit_reading_left_half_puts_its_mass_left():
    torch.manual_seed(1)
    model = LeftHalf()
    x = torch.rand(6, 1, 16, 16)
    for method in ("gradcam", "gradcam++", "hirescam", "layercam"):
        maps = exit_cams(model, x, exits=[0], target="pred", method=method).cams[:, 0]
        left, right = maps[..., :8].sum(), maps[..., 8:].sum()
        assert right <= 0.01 * left, method
    # EigenCAM (first principal component, no gradients) has no sign: the right half is flat, the left half is not
    maps = exit_cams(model, x, exits=[0], method="eigencam", target="pred").cams[:, 0]
    assert np.ptp(maps[..., 8:], axis=(1, 2)).max() < 1e-4 < np.ptp(maps[..., :8], axis=(1, 2)).min()


def test_statistics_on_planted_maps():
    cams = np.zeros((2, 2, 9, 9), np.float32)
    cams[0, 0, 4, 4] = 1  # one pixel in the centre
    cams[0, 1] = 1  # uniform
    cams[1, 0, 0, 0] = 1  # a corner
    cams[1, 1, 0, 0] = 1
    s = cam_statistics(cams)
    assert s["com_distance"][0, 0] == pytest.approx(0) and s["com_distance"][1, 0] == pytest.approx(1)
    assert s["entropy"][0, 0] == pytest.approx(0) and s["entropy"][0, 1] == pytest.approx(1)
    assert np.isnan(s["similarity_prev"][:, 0]).all() and s["similarity_prev"][1, 1] == pytest.approx(1)
    assert overlay(np.zeros((1, 9, 9), np.uint8), cams[0, 0]).shape == (9, 9, 3)


def test_disjoint_pairs_compare_the_two_groups_cis():
    import pandas as pd

    from overthink_lib.cams import disjoint_pairs

    def row(group, statistic, e, low, high):
        return {"group": group, "statistic": statistic, "exit": e, "mean": (low + high) / 2, "low": low, "high": high}

    stats = pd.DataFrame(
        [
            row("overthought", "entropy", 1, 0.6, 0.8),
            row("other", "entropy", 1, 0.2, 0.5),  # above: disjoint
            row("overthought", "entropy", 2, 0.1, 0.2),
            row("other", "entropy", 2, 0.3, 0.4),  # below: disjoint
            row("overthought", "com_distance", 1, 0.2, 0.5),
            row("other", "com_distance", 1, 0.5, 0.9),  # touching: not
            row("overthought", "com_distance", 2, 0.2, 0.6),
            row("other", "com_distance", 2, 0.3, 0.4),  # nested: not
            row("overthought", "similarity_prev", 2, 0.9, 1.0),  # only one group has it: not
        ]
    )
    pairs, n = disjoint_pairs(stats)
    assert pairs == [("entropy", 1), ("entropy", 2)] and n == 5
    assert all(type(s) is str and type(e) is int for s, e in pairs)
    assert disjoint_pairs(stats, ("other", "overthought")) == (pairs, n)  # symmetric
    with pytest.raises(ConfigError, match="needs the groups 'overthought' and 'right'"):
        disjoint_pairs(stats, ("overthought", "right"))


def test_bad_input_is_one_clear_error():
    model = get_model("msdnet_cifar", num_classes=10, in_channels=1, channels=4, growth=2, head_channels=8)
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(ConfigError, match="exit index 5 is out of range: the model has exits 0..4"):
        exit_cams(model, x, exits=[5], labels=[0, 1])
    with pytest.raises(ConfigError, match="target layer 'heads.9.tap' does not exist .*heads.0.tap"):
        exit_cams(model, x, exits=[0], labels=[0, 1], layers=["heads.9.tap"])
    with pytest.raises(ConfigError, match="unknown CAM method"):
        exit_cams(model, x, labels=[0, 1], method="scorecam++")
    with pytest.raises(ConfigError, match="needs the labels"):
        exit_cams(model, x, target="label")


def test_default_explains_each_exit_prediction_and_works_on_a_frozen_imta_network():
    from overthink_lib.models.imta import load_backbone

    torch.manual_seed(0)
    spec = {
        "name": "msdnet_cifar",
        "kwargs": dict(num_classes=10, in_channels=1, channels=4, growth=2, head_channels=8),
    }
    backbone = get_model(spec["name"], **spec["kwargs"])
    x = torch.randn(3, 1, 28, 28)
    pred = exit_cams(model=backbone, x=x, exits=[1])
    by_pred = exit_cams(backbone, x, exits=[1], target="label", labels=pred.preds[:, 0])
    assert np.allclose(pred.cams, by_pred.cams)  # the default target is the exit's own prediction
    imta = get_model("imta", backbone=spec)  # the official stage 2: everything pretrained frozen
    load_backbone(imta, backbone)
    out = exit_cams(imta, x, exits=[0, 4])
    assert out.cams.shape == (3, 2, 28, 28) and np.isfinite(out.cams).all() and out.cams.max() > 0


def test_cams_for_rows_in_batches_equal_one_call_on_the_chosen_rows():
    from overthink_lib.cams import cams_for_rows
    from overthink_lib.data import ImageSet, normalize

    torch.manual_seed(0)
    model = get_model("msdnet_cifar", num_classes=3, in_channels=1, channels=4, growth=2, head_channels=8)
    g = torch.Generator().manual_seed(1)
    ds = ImageSet(
        "toy",
        "test",
        torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8, generator=g),
        torch.tensor([0, 1, 2, 0, 1, 2, 0]),
        torch.arange(7),
        3,
        (0.5,),
        (0.25,),
    )
    rows = [5, 0, 3, 6, 2]
    batched = cams_for_rows(model, ds, rows, batch=2, target="label")  # batches of 2, 2 and 1
    whole = exit_cams(model, normalize(ds, ds.images[rows]), labels=ds.labels[rows], target="label")
    assert batched.cams.shape == (5, 5, 28, 28) and np.allclose(batched.cams, whole.cams, atol=1e-6)
    assert np.array_equal(batched.preds, whole.preds)


def test_an_empty_group_gives_no_heatmaps_and_no_statistics():
    """No overthought sample (a small or very good test set): notebook 05 still runs, its empty group has no maps
    and no statistics rather than an error."""
    from overthink_lib.cams import cams_for_rows, group_statistics
    from overthink_lib.data import ImageSet

    torch.manual_seed(0)
    model = get_model("msdnet_cifar", num_classes=3, in_channels=1, channels=4, growth=2, head_channels=8)
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    ds = ImageSet("toy", "test", images, torch.tensor([0, 1, 2, 0]), torch.arange(4), 3, (0.5,), (0.25,))
    none = cams_for_rows(model, ds, [])
    assert none.cams.shape == (0, 5, 28, 28) and len(none.rows([])) == 0
    stats = group_statistics({"overthought": none, "other": cams_for_rows(model, ds, [0, 1, 2])}, n_boot=50)
    assert set(stats["group"]) == {"other"} and len(stats) > 0


def test_notebook_05s_study_on_a_toy_network():
    """cam_study.study: its numbers are the cams functions' own, the groups are the record's, and with no overthought
    sample in its groups it compares nothing."""
    from overthink_lib import cam_study
    from overthink_lib.cams import cams_for_rows, disjoint_pairs, group_statistics
    from overthink_lib.data import ImageSet
    from overthink_lib.recording import make_record

    torch.manual_seed(0)
    model = get_model("msdnet_cifar", num_classes=3, in_channels=1, channels=4, growth=2, head_channels=8).eval()
    g = torch.Generator().manual_seed(2)
    n = 40
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    ds = ImageSet("toy", "test", images, torch.randint(0, 3, (n,), generator=g), torch.arange(n), 3, (0.5,), (0.25,))
    rec = make_record(model, ds)
    s = cam_study.study(model, rec, ds, n_stat=10, target="pred", method="gradcam", n_boot=50, seed=0)
    ot = s.rows["overthought"]
    heads = {k: v for k, v, _, _ in s.headlines}
    assert len(ot) > 0  # the toy network overthinks some samples: the comparison below runs
    if len(ot):
        heat = {name: cams_for_rows(model, ds, r, target="pred") for name, r in s.rows.items()}
        disjoint, n_pairs = disjoint_pairs(group_statistics(heat, n_boot=50, seed=0))
        assert heads["pairs_with_disjoint_cis"] == f"{len(disjoint)} of {n_pairs}"
        assert list(heads)[-3:] == ["similarity_minus_others", "similarity_minus_matched", "matched_overthought"]
        assert s.similarity is not None and len(s.sentences["similarity"]) == 5
    quiet = cam_study.study(model, rec, ds, n_stat=0, target="pred", method="gradcam", n_boot=50, seed=0)
    assert quiet.stats is None and quiet.headlines == [] and quiet.similarity is None
