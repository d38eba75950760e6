"""Max-Min composites: labels, 2:1:1 levels, balance, no overlap, disjoint base images, purity."""

import numpy as np
import pytest
import torch

from overthink_lib.config import ConfigError
from overthink_lib.data import get_dataset
from overthink_lib.data.maxmin import make_maxmin


# (canvas, item size): the thesis's 64/20 (the paper preset) and the cpu preset's 36/14
@pytest.fixture(scope="module", params=[(64, 20), (36, 14)], ids=["canvas64-item20", "canvas36-item14"])
def splits(request):
    canvas, item = request.param
    return {
        s: get_dataset("maxmin", s, size=800, seed=3, canvas=canvas, item_size=item) for s in ("train", "val", "test")
    }


def test_presets_use_the_canvas_they_name():
    from overthink_lib.config import get_preset

    assert (get_preset("paper").maxmin.canvas, get_preset("paper").maxmin.item) == (64, 20)  # the thesis
    assert (get_preset("cpu").maxmin.canvas, get_preset("cpu").maxmin.item) == (36, 14)


def test_labels_rederive_from_item_classes(splits):
    for ds in splits.values():
        cls, lvl = ds.extras["item_classes"].numpy(), ds.extras["level"].numpy()
        n_items = (cls >= 0).sum(1)
        assert np.array_equal(n_items, np.array([1, 2, 4])[lvl])
        for i in range(len(ds)):
            items = cls[i][cls[i] >= 0]
            expected = items[0] if lvl[i] == 0 else items.max() - items.min()
            assert expected == int(ds.labels[i])


def test_levels_2_1_1_and_labels_balanced(splits):
    for ds in splits.values():
        lvl = ds.extras["level"]
        assert torch.bincount(lvl).tolist() == [400, 200, 200]
        for lv in range(3):
            assert torch.bincount(ds.labels[lvl == lv], minlength=10).tolist() == [[40, 20, 20][lv]] * 10


def test_items_do_not_overlap_and_pixels_lie_inside_them(splits):
    ds = splits["train"]
    s, canvas = ds.info["item_size"], ds.info["canvas"]
    assert ds.images.shape[-2:] == (canvas, canvas)
    pos, cls = ds.extras["item_pos"].numpy(), ds.extras["item_classes"].numpy()
    for i in range(len(ds)):
        boxes = pos[i][cls[i] >= 0]
        assert ((boxes >= 0) & (boxes <= canvas - s)).all()
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                assert (np.abs(boxes[a] - boxes[b]) >= s).any(), f"sample {i} items {a},{b} overlap"
        mask = np.zeros((canvas, canvas), bool)
        for y, x in boxes:
            mask[y : y + s, x : x + s] = True
        assert (ds.images[i, 0].numpy()[~mask] == 0).all()
        assert ds.images[i, 0].numpy()[mask].max() > 0


def test_base_images_disjoint_across_splits(splits):
    used = {s: set(d.extras["item_index"][d.extras["item_index"] >= 0].tolist()) for s, d in splits.items()}
    base_train = set(get_dataset("fashion_mnist", "train").indices.tolist())
    base_val = set(get_dataset("fashion_mnist", "val").indices.tolist())
    assert used["train"] <= base_train and used["val"] <= base_val  # same file, disjoint rows
    assert not used["train"] & used["val"]
    assert splits["test"].info["base_split"] == "test"  # the base dataset's test file


def test_generation_is_a_pure_function_of_its_seed():
    a = get_dataset("maxmin", "test", size=80, seed=1)
    b = get_dataset("maxmin", "test", size=80, seed=1)
    c = get_dataset("maxmin", "test", size=80, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.extras["item_index"], b.extras["item_index"])
    assert not torch.equal(a.images, c.images)


def test_bad_sizes_are_clear_errors(fashion_train):
    with pytest.raises(ConfigError, match="multiple of 40"):
        make_maxmin(fashion_train, 50)
    with pytest.raises(ConfigError, match="at least twice the item size"):
        make_maxmin(fashion_train, 40, canvas=30, item_size=20)
    with pytest.raises(ConfigError, match="base must be 'mnist' or 'fashion_mnist'"):
        get_dataset("maxmin", "train", base="cifar10")


def test_notebook_01s_check_rederives_the_labels_and_catches_a_wrong_one(splits):
    from overthink_lib.data.maxmin import check_composites

    ds = splits["train"]
    c = check_composites(ds)
    assert c["labels_rederived"] and c["label counts equal"] and c["size"] == len(ds)
    assert sum(map(int, c["easy:medium:hard"].split(":"))) == len(ds)
    ds.labels[0] = (ds.labels[0] + 1) % ds.num_classes
    assert not check_composites(ds)["labels_rederived"]
