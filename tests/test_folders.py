"""Image folders streamed from disk (``imagefolder``, ``imagenette``, ``imagenet``), records of them, top-5."""

import numpy as np
import pytest
import torch

from overthink_lib.config import ConfigError, get_preset
from overthink_lib.data import FolderSet, get_dataset
from overthink_lib.data.checksums import DatasetMissing
from overthink_lib.data.madeup import FOLDER_FORMATS, write_image_folder
from overthink_lib.experiments.runs import record_images
from overthink_lib.models import get_model
from overthink_lib.recording import record_from_folder
from overthink_lib.records import ExitRecord


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """10 classes × (20 train + 10 val) images of four sizes in six formats; one truncated JPEG in val."""
    return write_image_folder(tmp_path_factory.mktemp("imagefolder"), 10, (20, 10), corrupt=1)


def test_splits_of_a_folder_follow_the_registry(folder):
    train, val = (get_dataset("imagefolder", s, root=folder, val_fraction=0.25) for s in ("train", "val"))
    test = get_dataset("imagefolder", "test", root=folder)
    assert isinstance(test, FolderSet) and (len(train), len(val), len(test)) == (150, 50, 100)
    assert not set(train.indices.tolist()) & set(val.indices.tolist())  # a seeded hold-out of train/
    assert all(f.startswith("train/") for f in train.files + val.files) and all(
        f.startswith("val/") for f in test.files
    )
    assert test.class_names == tuple(f"c{c:02d}" for c in range(10)) and test.num_classes == 10
    assert test.labels.tolist() == sorted(test.labels.tolist())  # class folders sorted, as ImageFolder
    assert {f.rsplit(".", 1)[1] for f in test.files} == {ext for ext, _ in FOLDER_FORMATS}
    assert test.provenance()["made_up"] is True and test.provenance()["shape"] == [3, 224, 224]
    limited = get_dataset("imagefolder", "test", root=folder, limit=30)
    assert len(limited) == 30 and set(limited.indices.tolist()) <= set(test.indices.tolist())


def test_every_format_and_size_decodes_to_the_evaluation_transform(folder):
    test = get_dataset("imagefolder", "test", root=folder, resize=72, crop=64).subset(
        range(5, 17)
    )  # past the corrupt file
    images = test.to_imageset()
    assert images.images.shape == (12, 3, 64, 64) and images.images.dtype == torch.uint8
    x, y, i = test[3]
    assert (
        x.shape == (3, 64, 64) and y == int(test.labels[3]) and i == int(test.indices[3]) and x.dtype == torch.float32
    )
    expected = (images.images[3].float() / 255 - torch.tensor(test.mean)[:, None, None]) / torch.tensor(test.std)[
        :, None, None
    ]
    assert torch.allclose(x, expected, atol=1e-6)


def test_a_corrupt_image_is_one_line_naming_it_and_exclude_leaves_it_out(folder):
    test = get_dataset("imagefolder", "test", root=folder, resize=72, crop=64)
    with pytest.raises(ConfigError, match=r"val/c00/val_00_\d+\.jpg is not a readable image") as err:
        for _ in test.batches(16, workers=2):
            pass
    assert len(str(err.value).splitlines()) == 1 and "exclude" in str(err.value)
    bad = str(err.value).split(" is not")[0].split(str(folder) + "/")[1]
    kept = get_dataset("imagefolder", "test", root=folder, resize=72, crop=64, exclude=[bad])
    assert len(kept) == 99 and bad not in kept.files and kept.provenance()["excluded"] == [bad]
    with pytest.raises(ConfigError, match="not an image of"):
        get_dataset("imagefolder", "test", root=folder, exclude=["val/none.jpg"])


def test_records_of_a_folder_stream_with_top5_and_find_their_images_again(folder):
    test = get_dataset("imagefolder", "test", root=folder, resize=72, crop=64)
    bad = next(f for f in test.files if f.endswith(".jpg"))
    test = get_dataset("imagefolder", "test", root=folder, resize=72, crop=64, exclude=[bad])
    torch.manual_seed(0)
    model = get_model("msdnet_imagenet", num_classes=10, channels=4, growth=2, n_blocks=2, step=2, base=2)
    rec = record_from_folder(model, test, batch_size=16, workers=2, name="tiny")
    assert rec.num_samples == 99 and rec.num_exits == 2 and torch.equal(rec.indices, test.indices)
    assert rec.flops is not None and rec.flops[0] < rec.flops[1]
    model.eval()  # record_from_model ran it in eval mode and restored train mode
    with torch.no_grad():  # the same logits as the model on the decoded images
        direct = torch.stack(model(torch.stack([test[i][0] for i in range(8)])), 1)
    assert torch.allclose(rec.logits[:8], direct, atol=1e-5)
    top5 = rec.accuracy(5)
    assert (top5 >= rec.accuracy()).all() and top5.shape == (2,)
    images = record_images(rec, get_preset("smoke"))  # provenance → root, transform, rows → decoded ImageSet
    assert images.images.shape == (99, 3, 64, 64) and torch.equal(images.labels, rec.labels)


def test_missing_folders_say_what_to_do(tmp_path):
    with pytest.raises(DatasetMissing, match=r"imagenette is not on disk .*imagenette2\.tgz"):
        get_dataset("imagenette", "test", root=tmp_path)
    with pytest.raises(ConfigError, match="needs root="):
        get_dataset("imagefolder", "test")
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no images"):
        get_dataset("imagefolder", "test", root=tmp_path)
    with pytest.raises(DatasetMissing, match="no .*train for the val split"):
        get_dataset("imagefolder", "val", root=tmp_path)
    with pytest.raises(ConfigError, match="0 < crop <= resize"):
        get_dataset("imagefolder", "test", root=tmp_path, resize=64, crop=72)


def test_top_k_accuracy_by_hand():
    logits = torch.tensor(
        [
            [[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]],  # label 0: exit 1 top-1; exit 2 ranks it 6th
            [[0, 5, 4, 3, 2, 1], [1, 0, 5, 4, 3, 2]],  # label 1: exit 1 top-1; exit 2 ranks it 6th
            [[5, 4, 3, 2, 1, 0], [0, 5, 4, 3, 2, 1]],  # label 4: exit 1 5th; exit 2 4th
        ]
    )
    rec = ExitRecord.from_arrays(logits, np.array([0, 1, 4]))
    assert rec.accuracy().tolist() == [2 / 3, 0.0]
    assert rec.accuracy(5).tolist() == [1.0, 1 / 3]
    assert rec.accuracy(6).tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="1 <= k <= 6"):
        rec.accuracy(7)


def test_the_official_imagenet_example_runs_on_an_image_folder(folder, tmp_path):
    """examples/official_imagenet.py: official checkpoint → records of a val-only folder (two halves) → top-1/top-5."""
    import shutil
    import subprocess
    import sys

    from overthink_lib.config import ROOT
    from overthink_lib.records import load_records

    checkpoint = ROOT / "tests" / "fixtures" / "official_msdnet" / "official-msdnet-imagenet-reduced.pth.tar"
    val_only = tmp_path / "inet"
    shutil.copytree(folder / "val", val_only / "val")
    (val_only / "val" / "c00" / "val_00_0004.jpg").unlink()  # the corrupt one
    res = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "official_imagenet.py"), str(checkpoint), "--data", str(val_only)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )  # 10 class folders for a 1000-class network: its labels would mean other classes
    assert res.returncode == 2 and "has 1000 classes but" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    shutil.rmtree(val_only)
    write_image_folder(val_only, 1000, (0, 1), sizes=((64, 48), (40, 56)))
    shutil.rmtree(val_only / "train")
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "official_imagenet.py"),
            str(checkpoint),
            "--data",
            str(val_only),
            "--out",
            str(tmp_path / "records"),
            "--workers",
            "1",
            "--batch-size",
            "16",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "top-5" in res.stdout and "images/s (batch 16, stopping there)" in res.stdout and "peak RSS" in res.stdout
    recs = load_records(tmp_path / "records")  # validation and test halves: disjoint, same model
    assert recs["val"].num_samples + recs["test"].num_samples == 1000 and recs["test"].num_exits == 3
    assert not set(recs["val"].indices.tolist()) & set(recs["test"].indices.tolist())


def test_notebook_06_runs_on_imagenette_when_it_is_on_disk(tmp_path):
    """Fig A.4's path: ``--param dataset=imagenette`` decodes the folder into memory at the preset's crop, trains the
    lab's MSDNet on it and writes 06's figures under ``<figures>/imagenette/`` (here on a made-up Imagenette)."""
    import os
    import subprocess
    import sys

    from overthink_lib.config import ROOT
    from overthink_lib.data.sources import DATA_ROOT

    data = tmp_path / "data"
    data.mkdir()
    for entry in DATA_ROOT.iterdir():  # the preset's own datasets, as they are here
        (data / entry.name).symlink_to(entry)
    write_image_folder(data / "imagenette2", 10, (40, 20), sizes=((160, 120), (120, 160), (213, 160)))
    # a variant (seed=0 given): its results and figures stay out of the preset's own (runs/smoke/variants/seed-0/)
    args = ["reproduce", "--preset", "smoke", "--only", "06", "--param", "dataset=imagenette", "--param", "seed=0"]
    args += ["--quiet", "--no-html"]
    res = subprocess.run(
        [sys.executable, "-m", "overthink_lib", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1200,
        env={**os.environ, "OVERTHINK_DATA": str(data)},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    variant = get_preset("smoke").run_dir / "variants" / "seed-0"
    figs = variant / "figures" / "imagenette"
    assert (figs / "06_clutter_by_exit.png").stat().st_size > 1000
    from overthink_lib.train import load_checkpoint

    runs = sorted((get_preset("smoke").run_dir / "models").glob("msdnet_cifar-imagenette-*/checkpoint.pt"))
    data = [load_checkpoint(r)["train_data"] for r in runs]
    assert any(d["shape"] == [3, 64, 64] and d["crop"] == 64 and d.get("made_up") for d in data)


def test_the_notebooks_refuse_datasets_they_cannot_hold_in_memory():
    from overthink_lib.notebooks import RULES

    for name in ("imagenet", "imagefolder"):
        with pytest.raises(ConfigError, match="record_from_folder") as err:
            RULES["dataset"](name)
        assert len(str(err.value).splitlines()) == 1
    RULES["dataset"]("imagenette")
