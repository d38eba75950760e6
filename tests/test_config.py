import dataclasses

import pytest
import torch

from overthink_lib.config import PRESETS, ConfigError, get_device, get_preset, seed_everything
from overthink_lib.io import config_hash


def test_presets_are_frozen_data():
    assert set(PRESETS) == {"smoke", "cpu", "paper", "paper-rehearsal"}
    p = get_preset("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.training.epochs = 3
    assert p.run_dir.parts[-2:] == ("runs", "cpu")
    from overthink_lib.experiments.runs import train_config

    paper = train_config(get_preset("paper"))
    assert paper.epochs == 200 and paper.batch_size == 64 and paper.lr == 0.1
    lrs = [paper.lr_at(e * 10, 10) for e in (74, 75, 149, 150)]  # ×0.1 at epochs 75 and 150 (thesis)
    assert lrs == [0.1, 0.1 * 0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1]
    assert get_preset("paper").datasets[0] == "cifar100"


def test_for_dataset_makes_another_dataset_the_main_one():
    paper = get_preset("paper")
    svhn = paper.for_dataset("svhn")
    assert svhn.datasets == ("svhn", "cifar100", "mnist") and svhn.name == "paper" and svhn.run_dir == paper.run_dir
    assert paper.for_dataset("cifar100") == paper
    assert get_preset("smoke").for_dataset("mnist").datasets == ("mnist", "fashion_mnist")
    assert get_preset("paper").data.svhn_extra and not get_preset("cpu").data.svhn_extra


def test_paired_differences_over_seeds_by_hand():
    import pandas as pd
    from scipy import stats

    from overthink_lib.analysis.imta_study import paired_over_seeds

    t = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1, 2, 2],
            "arm": ["2E", "ISC", "2E", "ISC", "2E", "ISC"],
            "overthought": [0.10, 0.07, 0.12, 0.10, 0.09, 0.08],
        }
    )
    m, lo, hi = paired_over_seeds(t, "overthought", "ISC", "2E")
    d = [-0.03, -0.02, -0.01]  # per seed
    half = stats.t.ppf(0.975, 2) * pd.Series(d).std() / 3**0.5
    assert m == pytest.approx(-0.02) and lo == pytest.approx(-0.02 - half) and hi == pytest.approx(-0.02 + half)


def test_unknown_preset_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"unknown preset 'gpu': choose one of smoke, cpu, paper, paper-rehearsal"):
        get_preset("gpu")


def test_seed_everything_is_deterministic():
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_config_hash_changes_with_content():
    assert config_hash({"a": 1}) == config_hash({"a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash(get_preset("cpu")) != config_hash(get_preset("smoke"))


def test_device_selection():
    assert get_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="unknown device"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            get_device("cuda")


def test_subset_splits_are_seeded_subsets_and_zero_means_all():
    from overthink_lib.experiments.imta import imta_over_seeds
    from overthink_lib.experiments.runs import load_splits, subset_splits

    smoke = get_preset("smoke")
    full = load_splits(smoke, "fashion_mnist", 0)
    a, b = subset_splits(smoke, 0, 100, 50), subset_splits(smoke, 0, 100, 50)
    assert len(a["train"]) == 100 and len(a["test"]) == 50
    assert torch.equal(a["train"].indices, b["train"].indices) and torch.equal(a["test"].indices, b["test"].indices)
    assert set(a["train"].indices.tolist()) <= set(full["train"].indices.tolist())
    whole = subset_splits(smoke, 0, 0, 0)
    assert len(whole["train"]) == len(full["train"]) and len(whole["test"]) == len(full["test"])
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        imta_over_seeds(smoke, seeds=1)


def test_a_preset_travels_as_json_and_comes_back_the_same():
    import json

    from overthink_lib.config import Preset

    for preset in PRESETS.values():
        again = Preset.from_dict(json.loads(json.dumps(preset.to_dict())))
        assert again == preset and hash(again) == hash(preset)
    changed = get_preset("cpu").with_parts(training={"threads": 0}, name="x")
    assert (changed.training.threads, changed.training.epochs, changed.name) == (0, 2, "x")
    assert get_preset("cpu").training.threads == 1  # the original is untouched
    bad = get_preset("smoke").to_dict()
    bad["imta"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"preset field imta has unknown entries \['epoch'\]"):
        Preset.from_dict(bad)
    bad = get_preset("smoke").to_dict()
    del bad["maxmin"]["sizes"]["val"]
    with pytest.raises(ConfigError, match="preset field maxmin.sizes is incomplete"):
        Preset.from_dict(bad)
    with pytest.raises(ConfigError, match="preset field data must be a mapping"):
        Preset.from_dict({**get_preset("smoke").to_dict(), "data": ["fashion_mnist"]})
    for part, key, value, line in [
        ("training", "epochs", "2", r"preset field training.epochs must be int, got '2'"),
        ("training", "threads", True, r"preset field training.threads must be int, got True"),
        ("data", "datasets", "fashion_mnist", r"preset field data.datasets must be tuple"),
        ("data", "svhn_extra", 1, r"preset field data.svhn_extra must be bool, got 1"),
        ("maxmin", "sizes", {"train": 4.5, "val": 40, "test": 40}, r"maxmin.sizes.train must be int, got 4.5"),
        (None, "seed", None, r"preset field seed must be int, got None"),
    ]:
        bad = get_preset("smoke").to_dict()
        (bad if part is None else bad[part])[key] = value
        with pytest.raises(ConfigError, match=line):
            Preset.from_dict(bad)
    ok = get_preset("smoke").to_dict()
    ok["training"]["lr"] = 1  # an int where a float goes is a number all the same
    assert Preset.from_dict(ok).training.lr == 1


def test_torchrun_puts_rank_r_on_gpu_r(monkeypatch):
    """Under torchrun, LOCAL_RANK picks this process's GPU (and makes it current); DDP then gets device_ids=[r]."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for rank in ("0", "3"):
        monkeypatch.setenv("LOCAL_RANK", rank)
        assert get_device("auto") == torch.device("cuda", int(rank)) == get_device("cuda")
    assert chosen == [0, 0, 3, 3]
    assert get_device("cuda:1") == torch.device("cuda", 1)  # an explicit GPU stays as asked
    for bad in ("4", "x"):
        monkeypatch.setenv("LOCAL_RANK", bad)
        with pytest.raises(ConfigError, match="--nproc_per_node at most 4"):
            get_device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "3")  # a launcher that shows each rank only its own GPU
    assert get_device("cuda") == torch.device("cuda", 0)
    monkeypatch.delenv("LOCAL_RANK")
    assert get_device("auto") == torch.device("cuda")  # one process: plain cuda, as before


def test_the_rehearsal_keeps_or_shrinks_every_field_and_keeps_every_code_path():
    """Every field of a preset is either kept or shrunk by the rehearsal (a new field must say which), and the
    rehearsal of paper is paper with only sizes, lengths and counts smaller."""
    from overthink_lib.config import _PARTS, REHEARSAL_KEEPS, REHEARSAL_SHRINKS, rehearsal, rehearsal_table

    own = {"name", "figures_dir"}
    for part, kind in [(None, type(get_preset("paper"))), *_PARTS.items()]:
        fields = {f.name for f in dataclasses.fields(kind)} - (set(_PARTS) | own if part is None else set())
        kept, shrunk = set(REHEARSAL_KEEPS[part]), set(REHEARSAL_SHRINKS[part])
        assert not kept & shrunk and kept | shrunk == fields, f"{part}: say whether the rehearsal keeps or shrinks it"
    paper, small = get_preset("paper"), get_preset("paper-rehearsal")
    assert small == rehearsal(paper) and small.name == "paper-rehearsal"
    assert small.figure_dir == small.run_dir / "figures"
    table = {name: (kind, a, b) for name, kind, a, b in rehearsal_table(paper)}
    assert all(a == b for kind, a, b in table.values() if kind == "kept")
    assert table["data.datasets"][2] == ("cifar100", "svhn", "mnist") and table["policy.depth"][2] == 34
    assert table["training.epochs"] == ("shrunk", 200, 2) and table["maxmin.canvas"] == ("kept", 64, 64)


def test_an_svhn_top_up_of_nothing_is_refused():
    from overthink_lib.experiments.runs import load_splits

    preset = get_preset("paper").with_parts(data={"svhn_extra_count": 0})
    with pytest.raises(ConfigError, match="data.svhn_extra_count must be >= 1 when svhn_extra is on, got 0"):
        load_splits(preset, "svhn")


def test_the_network_is_a_preset_field():
    """The protocols train ``training.model`` (any registered model), and its cost is that model's."""
    from types import SimpleNamespace

    from overthink_lib.experiments.runs import main_spec
    from overthink_lib.jobs import Task
    from overthink_lib.jobs.estimate import task_hours

    paper = get_preset("paper")
    sdn = paper.with_parts(training={"model": "sdn_resnet20"})
    ds = SimpleNamespace(num_classes=100, channels=3)
    assert main_spec(paper, ds)["name"] == "msdnet_cifar" and main_spec(sdn, ds)["name"] == "sdn_resnet20"
    assert task_hours(sdn, Task("main", "cifar100")) != task_hours(paper, Task("main", "cifar100"))
