import dataclasses

import pytest
import torch

from overthink_lib.config import PRESETS, ConfigError, config_hash, get_device, get_preset, seed_everything


def test_presets_are_frozen_data():
    assert set(PRESETS) == {"smoke", "cpu", "paper"}
    p = get_preset("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.epochs = 3
    assert p.run_dir.parts[-2:] == ("runs", "cpu")
    from overthink_lib.experiment import train_config

    paper = train_config(get_preset("paper"))
    assert paper.epochs == 200 and paper.batch_size == 64 and paper.lr == 0.1
    lrs = [paper.lr_at(e * 10, 10) for e in (74, 75, 149, 150)]  # ×0.1 at epochs 75 and 150 (thesis)
    assert lrs == [0.1, 0.1 * 0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1]
    assert get_preset("paper").datasets[0] == "cifar100"


def test_unknown_preset_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"unknown preset 'gpu': choose one of smoke, cpu, paper"):
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
