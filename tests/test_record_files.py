"""Records from anything (arrays, any list-of-logits model), safe files, and notebooks on a given record."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from helpers import random_set, tiny_spec
from overthink_lib.config import ROOT, ConfigError
from overthink_lib.flops import exit_flops
from overthink_lib.recording import make_record, record_from_model
from overthink_lib.records import ExitRecord, load_records
from overthink_lib.train import CHECKPOINT, TrainConfig, build_model, fit, load_checkpoint


def arrays(n=60, e=3, c=4, seed=0):
    g = np.random.default_rng(seed)
    labels = g.integers(0, c, n)
    logits = g.normal(size=(n, e, c)).astype(np.float32)
    logits[np.arange(n), :, labels] += np.linspace(0.2, 2.0, e)  # later exits more often right
    return logits, labels


def test_from_arrays_round_trips_exactly(tmp_path):
    logits, labels = arrays()
    rec = ExitRecord.from_arrays(
        logits,
        labels,
        flops=[1e6, 2e6, 3.5e6],
        indices=np.arange(100, 160),
        extras={"level": np.arange(60) % 3},
        model="my-net",
        provenance={"dataset": {"name": "mine", "split": "test"}},
    )
    assert rec.logits.dtype == torch.float32 and rec.labels.dtype == torch.int64 and rec.model_key() == "my-net"
    back = ExitRecord.load(rec.save(tmp_path / "test.npz"))
    for a, b in (
        (rec.logits, back.logits),
        (rec.labels, back.labels),
        (rec.indices, back.indices),
        (rec.flops, back.flops),
        (rec.extras["level"], back.extras["level"]),
    ):
        assert torch.equal(a, b) and a.dtype == b.dtype
    assert back.provenance == rec.provenance
    no_flops = ExitRecord.from_arrays(torch.from_numpy(logits), torch.from_numpy(labels))
    back = ExitRecord.load(no_flops.save(tmp_path / "nf.npz"))
    assert back.flops is None and torch.equal(back.logits, no_flops.logits)
    with pytest.raises(ConfigError, match="needs the cost of each exit"):
        back.require_flops("the anytime curve")


def test_from_arrays_refuses_bad_input():
    logits, labels = arrays()
    with pytest.raises(ConfigError, match=r"\[N, E, C\]"):
        ExitRecord.from_arrays(logits[:, 0], labels)
    with pytest.raises(ConfigError, match="labels must lie in 0..3"):
        ExitRecord.from_arrays(logits, labels + 4)
    with pytest.raises(ConfigError, match="parts disagree"):
        ExitRecord.from_arrays(logits, labels, flops=[1, 2])
    with pytest.raises(ConfigError, match="must be numeric"):
        ExitRecord.from_arrays(np.array([["a"]]), labels)


class ListOfLogits(nn.Module):
    """Not a lab model: a plain CNN with two linear probes, forward returns a list (the SDN/ZTW convention)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.b = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
        self.p1, self.p2 = nn.Linear(64, 10), nn.Linear(32, 10)

    def forward(self, x):
        h = self.a(x)
        return [self.p1(h), self.p2(self.b(h))]


def test_record_from_model_equals_a_record_built_by_hand():
    torch.manual_seed(0)
    model = ListOfLogits()
    ds = random_set(50, split="test")
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    rec = record_from_model(model, ds, batch_size=16, flops=[10.0, 20.0], name="probes")
    model.eval()
    with torch.no_grad():
        by_hand = ExitRecord.from_arrays(
            torch.stack(model(x), 1), ds.labels, flops=[10.0, 20.0], indices=ds.indices, model="probes"
        )
    torch.testing.assert_close(rec.logits, by_hand.logits)
    assert torch.equal(rec.labels, by_hand.labels) and torch.equal(rec.indices, by_hand.indices)
    assert rec.provenance["dataset"]["split"] == "test" and rec.model_key() == "probes"
    # tensors (x, y) and an iterable of batches give the same logits; no stop-at-exit → no FLOPs
    pair = record_from_model(model, (x, ds.labels), batch_size=7)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, ds.labels), batch_size=9)
    from_loader = record_from_model(model, loader)
    torch.testing.assert_close(pair.logits, rec.logits)
    torch.testing.assert_close(from_loader.logits, rec.logits)
    assert pair.flops is None and pair.provenance["flops_source"] == "none"
    with pytest.raises(ConfigError, match="must return a list or tuple"):
        record_from_model(nn.Sequential(nn.Flatten(), nn.Linear(256, 10)), (x, ds.labels))


def test_record_from_a_lab_model_measures_flops_and_matches_make_record():
    model = build_model(tiny_spec(), 0)
    ds = random_set(40, split="val")
    rec = record_from_model(model, ds)
    ref = make_record(model, ds)
    torch.testing.assert_close(rec.logits, ref.logits)
    assert rec.flops.tolist() == exit_flops(model, (1, 16, 16)) == ref.flops.tolist()


def test_load_records_from_a_folder_or_a_pair(tmp_path):
    logits, labels = arrays()
    for split in ("val", "test"):
        ExitRecord.from_arrays(logits, labels, model="m").save(tmp_path / f"{split}.npz")
    recs = load_records(tmp_path)
    assert set(recs) == {"val", "test"}
    assert load_records(f"{tmp_path / 'val.npz'},{tmp_path / 'test.npz'}")["test"].num_samples == 60
    ExitRecord.from_arrays(logits, labels, model="other").save(tmp_path / "other" / "test.npz")
    ExitRecord.from_arrays(logits, labels, model="m").save(tmp_path / "other" / "val.npz")
    with pytest.raises(ConfigError, match="different models"):
        load_records(tmp_path / "other")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="expected one val record"):
        load_records(tmp_path / "empty")
    with pytest.raises(ConfigError, match="neither a folder nor VAL,TEST"):
        load_records(tmp_path / "missing")


class Payload:
    """Unpickling this creates a marker file: what a malicious record or checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_files_are_refused_without_running_their_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = Payload(str(marker))
    # a checkpoint with every key a real one has, plus the payload
    model = build_model(tiny_spec(), 0)
    fit(model, random_set(32), None, TrainConfig(epochs=1, batch_size=16), out_dir=tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    torch.save({**ckpt, "extra": {"note": evil}}, tmp_path / "evil_checkpoint.pt")
    with pytest.raises(ConfigError, match="carries objects that need code to load: refused") as err:
        load_checkpoint(tmp_path / "evil_checkpoint.pt")
    assert "\n" not in str(err.value)
    # a legacy .pt record, and an .npz record whose provenance is a pickled object array
    logits, labels = arrays()
    torch.save(
        {
            "format": "overthink.ExitRecord/1",
            "logits": torch.from_numpy(logits),
            "labels": labels,
            "indices": torch.arange(60),
            "flops": torch.ones(3),
            "extras": {},
            "provenance": {"x": evil},
        },
        tmp_path / "evil_record.pt",
    )
    with pytest.raises(ConfigError, match="carries objects that need code to load"):
        ExitRecord.load(tmp_path / "evil_record.pt")
    obj = np.empty((), dtype=object)
    obj[()] = evil
    np.savez(
        tmp_path / "evil_record.npz",
        format=np.array("overthink.ExitRecord/1"),
        logits=logits,
        labels=labels,
        indices=np.arange(60),
        provenance=obj,
    )
    with pytest.raises(ConfigError, match="holds pickled objects"):
        ExitRecord.load(tmp_path / "evil_record.npz")
    assert not marker.exists()
    # sanity: the payload does what it says when unpickled the unsafe way
    pickle.loads(pickle.dumps(evil))
    assert marker.exists()


def test_truncated_files_are_one_line(tmp_path):
    logits, labels = arrays()
    path = ExitRecord.from_arrays(logits, labels).save(tmp_path / "r.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match="truncated, corrupt") as err:
        ExitRecord.load(path)
    assert "\n" not in str(err.value)
    model = build_model(tiny_spec(), 0)
    fit(model, random_set(32), None, TrainConfig(epochs=1, batch_size=16), out_dir=tmp_path / "run", progress=False)
    ck = tmp_path / "run" / CHECKPOINT
    ck.write_bytes(ck.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="truncated, corrupt or unreadable"):
        load_checkpoint(ck)


def test_old_checkpoints_with_a_numpy_rng_state_still_load(tmp_path):
    model = build_model(tiny_spec(), 0)
    fit(model, random_set(32), None, TrainConfig(epochs=1, batch_size=16), out_dir=tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    ckpt["rng"]["numpy"] = np.random.get_state()  # how checkpoints stored it before
    torch.save(ckpt, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(old["rng"]["numpy"][1], np.ndarray) and old["epoch"] == 1


def test_import_record_command(tmp_path):
    logits, labels = arrays()
    np.savez(tmp_path / "mine.npz", logits=logits, labels=labels, flops=np.array([1e6, 2e6, 3e6]))
    out = tmp_path / "recs" / "test.npz"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "overthink_lib",
            "import-record",
            str(tmp_path / "mine.npz"),
            str(out),
            "--model",
            "mine",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rec = ExitRecord.load(out)
    assert torch.equal(rec.logits, torch.from_numpy(logits)) and rec.flops.tolist() == [1e6, 2e6, 3e6]
    np.savez(tmp_path / "bad.npz", scores=logits)
    res = subprocess.run(
        [sys.executable, "-m", "overthink_lib", "import-record", str(tmp_path / "bad.npz"), str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "no array 'logits'" in res.stderr


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "overthink_lib", *args], capture_output=True, text=True, cwd=ROOT, timeout=1200
    )


def test_notebooks_03_04_and_11_run_headless_on_records_from_arrays_without_flops(tmp_path):
    """Records from arrays, without FLOPs or images: what needs FLOPs says so and is skipped. (Records with FLOPs and
    images: the analysis regression runs 03, 04, 06 and 11 on them and checks their figures.)"""
    from overthink_lib.config import get_preset

    preset = get_preset("smoke")
    name = "given-noflops"
    folder = tmp_path / name
    for split, seed in (("val", 1), ("test", 2)):
        lg, lb = arrays(n=300, e=4, c=10, seed=seed)
        ExitRecord.from_arrays(lg, lb, flops=None, model="given").save(folder / f"{split}.npz")
    before = {f: f.stat().st_mtime for f in preset.figure_dir.glob("0[34]_*")}
    only = ("--only", "03", "--only", "04", "--only", "11")
    res = _cli("reproduce", "--preset", "smoke", *only, "--param", f"record={folder}", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    figs = preset.figure_dir / "records" / name
    assert (figs / "04_pairwise.png").stat().st_size > 1000
    assert {f: f.stat().st_mtime for f in preset.figure_dir.glob("0[34]_*")} == before  # the preset's own untouched
    book = json.loads((preset.run_dir / "record-notebooks" / name / "03_anytime_and_budgeted.ipynb").read_text())
    executed = "".join("".join(o.get("text", "")) for c in book["cells"] for o in c.get("outputs", []))
    rules_book = preset.run_dir / "record-notebooks" / name / "11_exit_rules.ipynb"
    rules_text = "".join(
        "".join(o.get("text", "")) for c in json.loads(rules_book.read_text())["cells"] for o in c.get("outputs", [])
    )
    assert (figs / "11_reliability.png").stat().st_size > 1000  # calibration needs no FLOPs
    assert "this record has no per-exit FLOPs" in executed and "skipped: needs per-exit FLOPs" in executed
    assert not (figs / "03_anytime_budgeted.png").exists()
    assert "the rules are compared on accuracy alone" in rules_text and "SDN's confusion" in rules_text
    assert not (figs / "11_exit_rules_plane.png").exists()
    res = _cli("reproduce", "--preset", "smoke", "--only", "05", "--param", f"record={folder}")
    assert res.returncode == 1 and "GradCAM (notebook 05) needs the model itself" in res.stderr


def test_the_readme_example_makes_records_of_a_model_outside_the_registry(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "resnet18_probes.py"),
            "--seconds",
            "3",
            "--limit",
            "256",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    recs = load_records(tmp_path)
    assert (
        recs["test"].num_exits == 4 and recs["test"].num_samples == 256 and recs["val"].model_key() == "resnet18-probes"
    )
    flops = recs["test"].flops.tolist()
    assert flops == sorted(flops) and flops[0] > 0  # measured with flop_counter through forward(x, upto=k)
    assert recs["test"].provenance["dataset"]["name"] == "fashion_mnist"


def _reproduce_on_record(folder):
    """``reproduce --preset smoke`` of the notebooks that take a record (03, 04, 06, 08) on the records in ``folder``."""
    only = [arg for book in ("03", "04", "06", "08") for arg in ("--only", book)]
    return _cli("reproduce", "--preset", "smoke", *only, "--param", f"record={folder}", "--no-html")


def test_notebooks_03_04_06_08_finish_on_a_record_without_flops_and_train_nothing_it_does_not_need(tmp_path):
    """A record with images but no FLOPs: the cost-free parts run, the rest say so in one line; 06 and 08 leave out
    the preset's Max-Min network and 08 trains no policy (the binary labels need FLOPs): no run folder appears."""
    from overthink_lib.config import get_preset
    from overthink_lib.experiments.main import main_records

    preset = get_preset("smoke")
    folder = tmp_path / "noflops"
    for split, r in main_records("smoke").items():
        ExitRecord(r.logits, r.labels, r.indices, None, r.extras, r.provenance).save(folder / f"{split}.npz")
    models = preset.run_dir / "models"
    before = sorted(p.name for p in models.iterdir())
    res = _reproduce_on_record(folder)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = res.stdout
    for line in (
        "this record has no per-exit FLOPs: the D_ee score labels (Eq 4.1) need them",
        "a given record: the Max-Min sanity check",
        "a given record: the Max-Min part",
        "this record has no per-exit FLOPs: the binary D_ee labels (Eq 6)",
        "skipped: no policy to place",
    ):
        assert line in out, line
    import re

    assert not re.search(r"training \w+ on ", out) and sorted(p.name for p in models.iterdir()) == before
    results = json.loads((preset.run_dir / "record-notebooks" / "noflops" / "results.json").read_text())
    assert "overthinking" in results and "dct" in results and "maxmin" not in results


def test_a_one_exit_record_says_there_is_nothing_to_budget(tmp_path):
    """One exit, with FLOPs and images: 03 has no budget to spend, 04 nothing to overthink, 06 no D_ee groups to
    compare, 08 no binary policy to learn — each says so in a line and finishes."""
    from overthink_lib.experiments.main import main_records

    folder = tmp_path / "one-exit"
    for split, r in main_records("smoke").items():
        ExitRecord(r.logits[:, -1:], r.labels, r.indices, r.flops[-1:], r.extras, r.provenance).save(
            folder / f"{split}.npz"
        )
    res = _reproduce_on_record(folder)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    for line in (
        "this record has one exit: there is no earlier exit to stop at",
        "skipped: needs two exits or more",
        "no sample can be overthought",
        "every sample falls in one group",
        "this record has one exit: first and last exit are the same",
    ):
        assert line in res.stdout, line
