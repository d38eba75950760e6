"""The field's own files: official MSDNet-PyTorch checkpoints and logits, read weights-only and proven equivalent.

Fixtures in ``tests/fixtures/official_msdnet/`` were written once by the official code (kalviny/MSDNet-PyTorch at
f654595, run in a scratch folder; none of its source is in this repository), see that folder's README.md:

- ``official-msdnet-cifar10-reduced.pth.tar``: ``main.py``'s checkpoint dict (``epoch``, ``arch``, ``state_dict``
  with DataParallel's ``module.`` prefix, ``best_prec1``, ``optimizer``) of the official ``MSDNet`` built with
  ``--data cifar10 --nBlocks 2 --stepmode lin_grow --step 1 --base 1 --nChannels 4 --growthRate 2``; random weights
  and BatchNorm statistics; ``-io.npz``: 2 uint8 input images and the official model's logits ``[exits, N, C]``;
- ``official-msdnet-imagenet-reduced.pth.tar``: a bare state_dict (no prefix) of ``--data ImageNet --nBlocks 3
  --stepmode even --step 2 --base 2 --nChannels 4 --growthRate 2 --grFactor 1-2-4-4 --bnFactor 1-2-4-4`` at 224×224;
- ``logits_single.pth``/``flops.pth``: ``adaptive_inference.Tester.calc_logit`` on the CIFAR model (300 + 300 random
  images) and ``op_counter.measure_model``, saved as ``dynamic_evaluate``/``main.py`` save them.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from overthink_lib.config import ROOT, ConfigError
from overthink_lib.models.official import lab_key, load_official_msdnet
from overthink_lib.records import read_official_logits
from overthink_lib.train import model_from_checkpoint

FIX = ROOT / "tests" / "fixtures" / "official_msdnet"
CIFAR, IMAGENET = "official-msdnet-cifar10-reduced", "official-msdnet-imagenet-reduced"


def _official_logits(name):
    z = np.load(FIX / f"{name}-io.npz")
    x = (torch.from_numpy(z["images"]).float() / 255 - 0.5) / 0.25  # how the fixture's inputs were made
    return x, torch.from_numpy(z["logits"])


@pytest.mark.parametrize("name, model, exits", [(CIFAR, "msdnet_cifar", 2), (IMAGENET, "msdnet_imagenet", 3)])
def test_an_official_checkpoint_gives_the_official_logits_at_every_exit(name, model, exits):
    ours, info = load_official_msdnet(FIX / f"{name}.pth.tar")
    x, expected = _official_logits(name)
    with torch.no_grad():
        got = torch.stack(ours(x))
    diff = (got - expected).abs().max().item()
    print(f"{name}: max |ours - official| over {exits} exits = {diff:.3g}")
    assert info["model_spec"]["name"] == model and ours.num_exits == exits and got.shape == expected.shape
    assert diff <= 1e-5
    assert not ours.training and info["keys"] == len(ours.state_dict())
    if name == CIFAR:
        assert info["epoch"] == 299 and info["arch"] == "msdnet" and info["best_prec1"] == 12.5
    else:
        assert info["model_spec"]["kwargs"]["stem_bias"] is True  # the official ImageNet stem conv has a bias


def _state(name=CIFAR):
    obj = torch.load(FIX / f"{name}.pth.tar", weights_only=True)
    return obj


def test_old_checkpoints_without_batchnorm_counters_load_and_say_so(tmp_path):
    obj = _state()
    obj["state_dict"] = {k: v for k, v in obj["state_dict"].items() if not k.endswith("num_batches_tracked")}
    torch.save(obj, tmp_path / "old.pth.tar")
    ours, info = load_official_msdnet(tmp_path / "old.pth.tar")
    x, expected = _official_logits(CIFAR)
    with torch.no_grad():
        assert (torch.stack(ours(x)) - expected).abs().max() <= 1e-5
    assert info["filled_num_batches_tracked"] == sum(k.endswith("num_batches_tracked") for k in ours.state_dict())


@pytest.mark.parametrize(
    "change, message",
    [
        ("drop", r"lacks 1 tensor\(s\) of msdnet_cifar .*'blocks\.0\.1\.units\.0\.normal\.3\.weight'"),
        ("extra", r"1 tensor\(s\) that msdnet_cifar .* has no place for, e\.g\. 'module\.classifier\.2\.linear\.bias'"),
        ("foreign", r"key 'module\.fc\.weight' is not part of an official MSDNet"),
        ("shape", r"'heads\.1\.linear\.weight' \(the lab's name\) has shape \(10, 7\)"),
    ],
)
def test_a_checkpoint_with_a_missing_extra_or_foreign_key_is_one_line_naming_it(tmp_path, change, message):
    obj = _state()
    sd = obj["state_dict"]
    if change == "drop":
        del sd["module.blocks.0.1.layers.0.conv_normal.net.3.weight"]
    elif change == "extra":
        sd["module.classifier.2.linear.bias"] = torch.zeros(10)
    elif change == "foreign":
        sd["module.fc.weight"] = torch.zeros(3, 3)
    else:
        sd["module.classifier.1.linear.weight"] = torch.zeros(10, 7)
    torch.save(obj, tmp_path / "bad.pth.tar")
    with pytest.raises(ConfigError, match=message) as err:
        load_official_msdnet(tmp_path / "bad.pth.tar")
    assert len(str(err.value).splitlines()) == 1


class _RunsCode:
    """What a forged file carries: unpickling it calls os.system (here: writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind", ["checkpoint", "logits", "flops"])
def test_a_crafted_pickle_in_each_official_file_is_refused_and_never_runs(tmp_path, kind):
    marker = tmp_path / "code-ran"
    good = {"checkpoint": FIX / f"{CIFAR}.pth.tar", "logits": FIX / "logits_single.pth", "flops": FIX / "flops.pth"}
    forged = tmp_path / good[kind].name
    obj = torch.load(good[kind], weights_only=True)
    if kind == "checkpoint":
        obj["arch"] = _RunsCode(marker)
    elif kind == "logits":
        obj = (*obj, _RunsCode(marker))
    else:
        obj = [*obj, _RunsCode(marker)]
    torch.save(obj, forged, pickle_protocol=2)
    with pytest.raises(ConfigError, match=r"carries objects that need code to load: refused.*posix\.system") as err:
        if kind == "checkpoint":
            load_official_msdnet(forged)
        elif kind == "logits":
            read_official_logits(forged, FIX / "flops.pth")
        else:
            read_official_logits(FIX / "logits_single.pth", forged)
    assert len(str(err.value).splitlines()) == 1 and not marker.exists()


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "overthink_lib", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_import_checkpoint_writes_a_lab_checkpoint_with_the_same_logits(tmp_path):
    res = _cli("import-checkpoint", str(FIX / f"{IMAGENET}.pth.tar"), str(tmp_path / "lab.pt"))
    assert res.returncode == 0, res.stderr
    assert "msdnet_imagenet" in res.stdout and "159,092 parameters" in res.stdout
    model, _ = model_from_checkpoint(tmp_path / "lab.pt")
    x, expected = _official_logits(IMAGENET)
    with torch.no_grad():
        assert (torch.stack(model(x)) - expected).abs().max() <= 1e-5
    res = _cli("import-checkpoint", str(FIX / f"{CIFAR}.pth.tar"), str(tmp_path / "x.pt"), "--config", "growth=3")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "has shape" in res.stderr
    assert not (tmp_path / "x.pt").exists()


def test_official_logits_become_validation_and_test_records():
    recs = read_official_logits(FIX / "logits_single.pth")
    val_pred, val_target, test_pred, test_target = torch.load(FIX / "logits_single.pth", weights_only=True)
    for split, pred, target in (("val", val_pred, val_target), ("test", test_pred, test_target)):
        rec = recs[split]
        assert rec.num_exits == 2 and rec.num_samples == 300 and rec.num_classes == 10
        assert torch.allclose(rec.probs.permute(1, 0, 2), pred, atol=1e-6)  # log-probabilities: same softmax
        assert torch.equal(rec.labels, target.long()) and rec.labels.dtype == torch.int64
        assert rec.flops.tolist() == [1490698.0, 2649876.0]  # the official counter's, as flops.pth holds them
        assert rec.model_key() == "official-msdnet" and "op_counter" in rec.provenance["flops_source"]
        # official accuracy: argmax of the softmax against the float targets (what dynamic_eval_* compare)
        assert torch.equal(rec.accuracy(), (pred.argmax(-1) == target.long()).double().mean(1))
    assert "random order" in recs["val"].provenance["sample_ids"]


def test_official_logits_that_are_not_the_official_format_are_one_line(tmp_path):
    val_pred, val_target, test_pred, test_target = torch.load(FIX / "logits_single.pth", weights_only=True)
    cases = {
        "logits.pth": ((val_pred.log(), val_target, test_pred, test_target), "is not softmax probabilities"),
        "three.pth": ((val_pred, val_target, test_pred), "expected 4 tensors"),
        "target.pth": ((val_pred, val_target + 0.5, test_pred, test_target), "not class indices"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ConfigError, match=message) as err:
            read_official_logits(tmp_path / name, FIX / "flops.pth")
        assert len(str(err.value).splitlines()) == 1
    torch.save([1.0, 2.0, 3.0], tmp_path / "flops3.pth")
    with pytest.raises(ConfigError, match="has 3 FLOPs for 2 exits"):
        read_official_logits(FIX / "logits_single.pth", tmp_path / "flops3.pth")


def test_official_logits_through_import_record_then_notebooks_03_and_04(tmp_path):
    out = tmp_path / "official"
    res = _cli("import-record", str(FIX / "logits_single.pth"), str(out))
    assert res.returncode == 0, res.stderr
    assert "top-5 per exit (%)" in res.stdout and {p.name for p in out.iterdir()} == {"val.npz", "test.npz"}
    res = _cli("reproduce", "--preset", "smoke", "--only", "03", "--only", "04", "--param", f"record={out}", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    from overthink_lib.config import get_preset

    book = get_preset("smoke").run_dir / "record-notebooks" / "official" / "03_anytime_and_budgeted.ipynb"
    assert "top-5 %" in book.read_text()


def test_lab_keys_cover_every_official_module_name():
    assert lab_key("module.blocks.0.0.layers.2.net.1.running_var") == "blocks.0.0.layers.2.1.running_var"
    assert lab_key("blocks.0.0.layers.0.0.bias") == "blocks.0.0.layers.0.0.bias"  # the ImageNet stem
    assert lab_key("module.blocks.3.1.layers.0.conv_down.net.4.weight") == "blocks.3.1.units.0.down.4.weight"
    assert lab_key("module.blocks.1.2.m.1.net.0.weight") == "blocks.1.2.convs.1.0.weight"
    assert lab_key("module.classifier.4.m.1.net.1.bias") == "heads.4.features.1.1.bias"
    assert lab_key("module.classifier.4.linear.weight") == "heads.4.linear.weight"
    assert lab_key("module.fc.weight") is None
