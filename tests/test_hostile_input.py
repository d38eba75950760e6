"""Bad and hostile input: every record field validated wherever a record comes from, records matched to their images,
names from files never becoming paths, outputs of a run with parameters kept apart, leftovers of killed writers
removed. Each bad input gets one ConfigError line naming what was wrong."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from overthink_lib.config import ROOT, ConfigError, get_preset
from overthink_lib.io import atomic_write_bytes, safe_name
from overthink_lib.records import FORMAT, ExitRecord, RecordWarning, load_records


def good(n=40, e=3, c=5, seed=0):
    g = np.random.default_rng(seed)
    return {
        "logits": g.normal(size=(n, e, c)).astype(np.float32),
        "labels": g.integers(0, c, n),
        "indices": np.arange(n),
        "flops": np.array([1e6, 2e6, 3e6][:e]),
    }


def _nan_column(a):
    a["logits"][:, :, 2] = np.nan
    return a


def _set(key, value):
    def change(a):
        a[key] = value(a) if callable(value) else value
        return a

    return change


def _poke(value, where=(3, 1, 0)):
    def change(a):
        a["logits"][where] = value
        return a

    return change


#: (what, how the good arrays are spoiled, the one line it must get). The README's "What a record must hold".
BAD = [
    (
        "one NaN logit",
        _poke(np.nan),
        r"logits hold 1 non-finite values \(NaN 1, \+Inf 0, -Inf 0; first at sample 3, exit 2\)",
    ),
    ("a NaN class column", _nan_column, r"logits hold 120 non-finite values \(NaN 120"),
    ("+Inf logit", _poke(np.inf), r"non-finite values \(NaN 0, \+Inf 1"),
    ("-Inf logit (log 0)", _poke(-np.inf), r"-Inf 1.*clip first"),
    ("labels above the classes", _set("labels", lambda a: a["labels"] + 5), r"labels must lie in 0\.\.4"),
    ("negative labels", _set("labels", lambda a: a["labels"] - 5), r"labels must lie in 0\.\.4"),
    (
        "float labels",
        _set("labels", lambda a: a["labels"].astype(np.float32)),
        r"labels must be integer class indices, got dtype torch.float32",
    ),
    (
        "one-hot labels",
        _set("labels", lambda a: np.eye(5, dtype=np.int64)[a["labels"]]),
        r"got shape \(40, 5\) \(one-hot\?\): pass labels.argmax\(1\)",
    ),
    ("2-D labels", _set("labels", lambda a: a["labels"][:, None]), r"labels must be 1-D class indices"),
    (
        "boolean labels",
        _set("labels", lambda a: a["labels"] > 2),
        r"labels must be integer class indices, got booleans",
    ),
    ("string logits", _set("logits", np.array([[["a"]]])), r"logits must be numeric, got dtype <U1"),
    ("2-D logits", _set("logits", lambda a: a["logits"][:, 0]), r"logits must be \[N, E, C\]"),
    ("one class", _set("logits", lambda a: a["logits"][:, :, :1]), r"need at least one exit and two classes"),
    ("NaN FLOPs", _set("flops", np.array([1e6, np.nan, 3e6])), r"flops must be finite and > 0"),
    ("Inf FLOPs", _set("flops", np.array([1e6, 2e6, np.inf])), r"flops must be finite and > 0"),
    ("zero FLOPs", _set("flops", np.array([0.0, 2e6, 3e6])), r"flops must be finite and > 0"),
    ("negative FLOPs", _set("flops", np.array([-1.0, 2e6, 3e6])), r"flops must be finite and > 0"),
    (
        "decreasing FLOPs",
        _set("flops", np.array([1e6, 3e6, 2e6])),
        r"flops must be cumulative \(non-decreasing\), but exit 3 costs less than exit 2",
    ),
    ("FLOPs of the wrong length", _set("flops", np.array([1e6, 2e6])), r"parts disagree"),
    ("repeated indices", _set("indices", lambda a: np.zeros(40, np.int64)), r"indices repeat \(39 duplicates\)"),
    ("negative indices", _set("indices", lambda a: -np.arange(40) - 1), r"indices must be >= 0"),
    ("float indices", _set("indices", lambda a: np.arange(40) + 0.5), r"indices must be 1-D integer sample ids"),
    ("labels of another length", _set("labels", lambda a: a["labels"][:30]), r"parts disagree"),
    ("no samples", lambda a: {k: (v[:0] if k != "flops" else v) for k, v in a.items()}, r"holds no samples"),
    (
        "uint64 labels above 2**63",
        _set("labels", lambda a: a["labels"].astype(np.uint64) + np.uint64(2**63)),
        r"uint64 values above 2\*\*63",
    ),
]


def _arrays_call(a, provenance=None):
    return ExitRecord.from_arrays(
        a["logits"], a["labels"], flops=a.get("flops"), indices=a.get("indices"), provenance=provenance
    )


def _raw_file(path, a, provenance='{"weights_hash": "m"}'):
    """An .npz in the record format written without the lab's checks: what a file from elsewhere may hold."""
    np.savez(
        path, format=np.array(FORMAT), provenance=np.array(provenance), **{k: v for k, v in a.items() if v is not None}
    )
    return path


@pytest.mark.parametrize("what,spoil,line", BAD, ids=[b[0] for b in BAD])
def test_every_bad_record_is_one_line_from_arrays_and_from_a_file(tmp_path, what, spoil, line):
    a = spoil(good())
    with pytest.raises(ConfigError, match=line) as err:
        _arrays_call(a)
    assert "\n" not in str(err.value)
    path = _raw_file(tmp_path / "r.npz", a)
    with pytest.raises(ConfigError, match=line) as err:
        ExitRecord.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)  # the file is named


@pytest.mark.parametrize(
    "provenance,line",
    [
        ("[1, 2]", r"provenance must be a dict"),
        ('{"weights_hash": 7}', r"weights_hash must be a string"),
        ('{"dataset": "cifar100"}', r"provenance dataset must be a dict"),
        ('{"dataset": {"name": 3, "split": "test"}}', r"dataset.name has the wrong type"),
        ('{"dataset": {"name": "mnist", "split_seed": "0"}}', r"dataset.split_seed has the wrong type"),
        ('{"dataset": {"name": "mnist", "svhn_extra": 1}}', r"dataset.svhn_extra has the wrong type"),
        ('{"dataset": {"name": "mnist", "svhn_extra": "yes"}}', r"dataset.svhn_extra has the wrong type"),
        ('{"dataset": {"name": "mnist", "fingerprint": 12}}', r"dataset.fingerprint has the wrong type"),
        ('{"model_spec": "msdnet"}', r"model_spec must be a dict"),
        ('{"dataset": null}', r"provenance dataset must be a dict"),
    ],
)
def test_provenance_of_the_wrong_types_is_one_line(tmp_path, provenance, line):
    with pytest.raises(ConfigError, match=line):
        ExitRecord.load(_raw_file(tmp_path / "r.npz", good(), provenance))


def test_what_is_fine_stays_fine(tmp_path):
    """float16/float64 logits, int32/uint16 labels, big-endian arrays and FLOPs given as ints load exactly."""
    a = good()
    a16 = {
        **a,
        "logits": a["logits"].astype(np.float16),
        "labels": a["labels"].astype(np.uint16),
        "indices": a["indices"].astype(">i4"),
        "flops": np.array([1, 2, 3]),
    }
    rec = ExitRecord.load(_raw_file(tmp_path / "r.npz", a16))
    assert rec.logits.dtype == torch.float32 and torch.equal(
        rec.logits, torch.from_numpy(a16["logits"].astype(np.float32))
    )
    assert rec.labels.dtype == torch.int64 and rec.labels.tolist() == a["labels"].tolist()
    assert rec.indices.tolist() == list(range(40)) and rec.flops.tolist() == [1.0, 2.0, 3.0]
    big = ExitRecord.from_arrays(a["logits"].astype(">f8"), a["labels"].astype(np.int32))
    assert torch.allclose(big.logits, torch.from_numpy(a["logits"]))


def test_flops_equal_at_two_exits_warn_naming_the_exits():
    a = good()
    with pytest.warns(RecordWarning, match=r"exit 2, 3 cost as much as the exit before .*ignores upto=k"):
        _arrays_call({**a, "flops": np.array([5.0, 5.0, 5.0])})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _arrays_call(a)  # strictly increasing: silent


def test_a_model_that_ignores_upto_warns():
    from torch import nn

    from overthink_lib.recording import record_from_model

    class IgnoresUpto(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 4), nn.Linear(16, 4)

        def forward(self, x, upto=None):  # always both exits
            h = x.flatten(1)
            return [self.a(h), self.b(h)]

    x, y = torch.randn(8, 1, 4, 4), torch.arange(8) % 4
    with pytest.warns(RecordWarning, match="exit 2 cost as much"):
        record_from_model(IgnoresUpto(), (x, y))


def test_unsupported_formats_say_so(tmp_path):
    (tmp_path / "val.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ConfigError, match=r"safetensors records are not supported; write an .npz"):
        ExitRecord.load(tmp_path / "val.safetensors")
    with pytest.raises(ConfigError, match=r"val.safetensors is not a supported format: convert it to .npz"):
        load_records(tmp_path)


def test_a_record_in_another_sample_order_than_its_dataset_is_refused(tmp_path):
    from overthink_lib.data import get_dataset
    from overthink_lib.experiments.main import analysis_experiment
    from overthink_lib.experiments.runs import record_images

    preset = get_preset("smoke")
    test_set = get_dataset("fashion_mnist", "test", download=False)
    n = 200
    g = np.random.default_rng(0)
    labels = test_set.labels[:n].numpy()
    logits = g.normal(size=(n, 2, 10)).astype(np.float32)
    prov = {"dataset": {"name": "fashion_mnist", "split": "test"}}
    right = ExitRecord.from_arrays(logits, labels, provenance=prov)
    assert torch.equal(record_images(right, preset).labels, right.labels)
    shuffled = ExitRecord.from_arrays(logits, labels[g.permutation(n)], provenance=prov)  # samples reordered
    agree = (shuffled.labels.numpy() == labels).mean() * 100
    with pytest.raises(
        ConfigError,
        match=rf"agree with fashion_mnist/test's labels .* for only {agree:.1f} % of its "
        r"200 samples",
    ) as err:
        record_images(shuffled, preset)
    assert "\n" not in str(err.value)
    folder = tmp_path / "recs"
    shuffled.save(folder / "test.npz")
    val_set = get_dataset("fashion_mnist", "val", download=False)  # a good validation record: the test record's
    ExitRecord.from_arrays(
        logits,
        val_set.labels[:n],
        indices=val_set.indices[:n],  # order is what is refused
        provenance={"dataset": {"name": "fashion_mnist", "split": "val"}},
    ).save(folder / "val.npz")
    with pytest.raises(ConfigError, match="agree with"):
        analysis_experiment(preset, 0, str(folder))
    wide = ExitRecord.from_arrays(np.zeros((n, 2, 20), np.float32), labels, provenance=prov)
    with pytest.raises(ConfigError, match=r"the record has 20 classes but fashion_mnist has 10"):
        record_images(wide, preset)
    outside = ExitRecord.from_arrays(logits, labels, indices=np.arange(n) + 10**6, provenance=prov)
    with pytest.raises(ConfigError, match=r"200 of its 200 sample indices are not in that split"):
        record_images(outside, preset)


@pytest.mark.parametrize("text", ["../../etc", "/etc/passwd", "a\x00b", "..", ".", "", "ok-name_1.0", "é/ü", "x" * 300])
def test_safe_name_never_makes_a_path(text):
    name = safe_name(text)
    assert name and "/" not in name and "\x00" not in name and name not in (".", "..") and not name.startswith(".")
    assert len(name) <= 80 and (name == text) == (text == "ok-name_1.0")
    assert (Path("/base") / name).parent == Path("/base")
    assert safe_name("a/b") != safe_name("a_b")  # a name that had to change carries a hash of the original


def test_a_record_is_a_copy_of_the_arrays_it_was_made_from():
    a = good()
    rec = _arrays_call(a)
    a["logits"][:] = np.nan  # the caller's array changes after the record was checked
    assert torch.isfinite(rec.logits).all()


def _pair(tmp_path, val, test, name="pair"):
    folder = tmp_path / name
    val.save(folder / "val.npz")
    test.save(folder / "test.npz")
    return folder


def test_a_validation_and_test_pair_that_would_flatter_the_numbers_is_refused(tmp_path):
    a, b = good(seed=1), good(seed=2)
    val = ExitRecord.from_arrays(a["logits"], a["labels"], flops=a["flops"], model="m")
    test = ExitRecord.from_arrays(b["logits"], b["labels"], flops=b["flops"], model="m")
    assert set(load_records(_pair(tmp_path, val, test))) == {"val", "test"}
    path = val.save(tmp_path / "t.npz")
    with pytest.raises(ConfigError, match=r"the validation and the test record are the same file"):
        load_records(f"{path},{path}")
    other = ExitRecord.from_arrays(b["logits"], b["labels"], flops=b["flops"] * 2, model="m")
    with pytest.raises(ConfigError, match=r"give other FLOPs per exit"):
        load_records(_pair(tmp_path, val, other, "flops"))

    def on(r, split):
        return ExitRecord(
            r.logits,
            r.labels,
            r.indices,
            r.flops,
            {},
            {**r.provenance, "dataset": {"name": "mnist", "split": split}},
        )

    with pytest.raises(ConfigError, match=r"validation record is of split 'test'"):
        load_records(_pair(tmp_path, on(val, "test"), on(test, "test"), "roles"))
    with pytest.raises(ConfigError, match=r"both hold samples of mnist \(40 shared\)"):
        load_records(_pair(tmp_path, on(val, None), on(test, None), "shared"))


def test_a_policy_is_never_reused_for_another_records_labels():
    """Two records of one split, both of model 'unknown', with D_ee sets of the same size: other runs."""
    from helpers import random_set
    from overthink_lib.experiments.policy import policy_training_set

    val = random_set(40, classes=3, size=12, split="val")
    sources = set()
    for seed in (0, 1):
        logits = np.random.default_rng(seed).normal(size=(40, 3, 3)).astype(np.float32)
        logits[:, 2] += 10 * np.eye(3, dtype=np.float32)[val.labels.numpy()]  # the last exit always right
        rec = ExitRecord.from_arrays(
            logits,
            val.labels,
            flops=[1e6, 2e6, 3e6],
            indices=val.indices,
            provenance={"dataset": {"name": "random", "split": "val"}},
        )
        labels, _, source = policy_training_set(rec, val, "score", 5.0)
        assert len(labels.rows) == 40
        sources.add(source)
        # λ given as an integer (--param lam=5) names the same runs as 5.0: a job and its notebook agree
        assert policy_training_set(rec, val, "score", 5)[2] == source
    assert len(sources) == 2


def test_the_preset_given_twice_is_refused():
    from overthink_lib.suite import run_suite

    with pytest.raises(ConfigError, match=r"the preset is given twice \('cpu' and the parameter preset='smoke'\)"):
        run_suite("cpu", only=["03"], params={"preset": "smoke"}, progress=False)


def _listing(*folders):
    out = set()
    for f in folders:
        for p in Path(f).iterdir():
            if p.name not in ("runs", ".git", ".venv", ".pytest_cache", "__pycache__"):
                out.add(str(p))
    return out


def test_a_record_whose_model_name_climbs_out_trains_its_policy_inside_runs(tmp_path):
    """notebook 08's policy run folder is built from the record's model name: '../', absolute paths and NUL stay
    inside runs/<preset>/models/."""
    from helpers import random_set
    from overthink_lib.experiments.policy import policy_training_set, train_policy

    preset = get_preset("smoke").with_parts(name="hostile-test", policy={"depth": 18, "width": 4, "epochs": 1})
    around = (ROOT, ROOT.parent)
    before = _listing(*around)
    try:
        for model in ("../../../../escape", "/tmp/escape-abs", "nul\x00byte/../x"):
            val = random_set(40, classes=3, size=12, split="val")
            logits = np.random.default_rng(0).normal(size=(40, 3, 3)).astype(np.float32)
            logits[np.arange(40), 2, val.labels.numpy()] += 5  # the last exit right: D_ee is not empty
            rec = ExitRecord.from_arrays(
                logits,
                val.labels,
                flops=[1e6, 2e6, 3e6],
                indices=val.indices,
                model=model,
                provenance={"dataset": {"name": "random", "split": "val"}},
            )
            _, d_ee, source = policy_training_set(rec, val, "score", 5.0)
            _, _, run = train_policy(preset, d_ee, 0, source=source, progress=False)
            assert run.resolve().parent == (preset.run_dir / "models").resolve() and (run / "checkpoint.pt").exists()
        assert _listing(*around) == before  # nothing written beside runs/
        assert not Path("/tmp/escape-abs").exists() and not (ROOT.parent / "escape").exists()
    finally:
        import shutil

        shutil.rmtree(preset.run_dir, ignore_errors=True)


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporaries_of_killed_writers_go_on_the_next_write(tmp_path):
    from overthink_lib.io import _host

    orphan = tmp_path / f".test.npz.tmp-{_host()}-{_dead_pid()}"
    alive = tmp_path / f".other.npz.tmp-{_host()}-{os.getppid()}"
    other_host = tmp_path / f".x.npz.tmp-some-other-node-{_dead_pid()}"
    young = tmp_path / f".young.npz.tmp-{_host()}-{_dead_pid()}"
    huge_pid = tmp_path / f".huge.npz.tmp-{_host()}-99999999999"
    for f in (orphan, alive, other_host, young, huge_pid):
        f.write_bytes(b"half a file")
        if f is not young:
            os.utime(f, (f.stat().st_mtime - 120,) * 2)  # older than ORPHAN_AGE_S
    ExitRecord.from_arrays(**{k: v for k, v in good().items() if k in ("logits", "labels")}).save(tmp_path / "test.npz")
    assert not orphan.exists() and not huge_pid.exists() and alive.exists() and other_host.exists() and young.exists()
    # a writer killed mid-write (SIGKILL) leaves one; the next write removes it
    code = (
        "import os, signal, numpy as np; from overthink_lib import io as lab_io\n"
        "real = os.replace\n"
        "def die(*a): os.kill(os.getpid(), signal.SIGKILL)\n"
        "lab_io.os.replace = die\n"
        f"lab_io.atomic_write_bytes(__import__('pathlib').Path({str(tmp_path / 'k.bin')!r}), b'x' * 1000)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120)
    assert res.returncode == -9
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".k.bin.tmp-")]
    assert len(left) == 1 and not (tmp_path / "k.bin").exists()
    os.utime(left[0], (left[0].stat().st_mtime - 120,) * 2)
    atomic_write_bytes(tmp_path / "k.bin", b"done")
    assert not left[0].exists() and (tmp_path / "k.bin").read_bytes() == b"done"


def _cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "overthink_lib", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def test_import_record_into_a_folder_and_its_checks(tmp_path):
    a = good(c=10)
    np.savez(tmp_path / "mine.npz", logits=a["logits"], labels=a["labels"])
    folder = tmp_path / "recs"
    folder.mkdir()
    res = _cli("import-record", str(tmp_path / "mine.npz"), str(folder), "--split", "val", "--model", "m")
    assert res.returncode == 0, res.stderr
    assert (folder / "val.npz").exists() and not (tmp_path / "recs.npz").exists()
    res = _cli("import-record", str(tmp_path / "mine.npz"), str(folder), "--dataset", "../etc")
    assert res.returncode == 2 and "the dataset must be one of" in res.stderr
    res = _cli("import-record", str(tmp_path / "mine.npz"), str(tmp_path / "x.npz"), "--dataset", "fashion_mnist")
    assert res.returncode == 2 and "agree with fashion_mnist/test's labels" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.npz").exists()
    np.savez(tmp_path / "nan.npz", logits=_poke(np.nan)(good())["logits"], labels=a["labels"] % 5)
    res = _cli("import-record", str(tmp_path / "nan.npz"), str(tmp_path / "y.npz"))
    assert res.returncode == 2 and "non-finite" in res.stderr and not (tmp_path / "y.npz").exists()


def _digest(folder):
    import hashlib

    folder = Path(folder)
    return (
        {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        if folder.exists()
        else {}
    )


def test_a_run_with_parameters_never_touches_the_presets_outputs():
    preset = get_preset("smoke")
    own = [preset.run_dir / "notebooks", preset.figure_dir, preset.run_dir / "results"]
    own_files = [preset.run_dir / "results.json", preset.run_dir / "results.md"]
    before = [_digest(f) for f in own] + [f.read_bytes() if f.exists() else None for f in own_files]
    # a bad value is refused before any kernel starts: nothing is written or replaced
    res = _cli("reproduce", "--preset", "smoke", "--only", "03", "--param", "seed=-1", "--quiet", "--no-html")
    assert res.returncode == 2 and res.stderr.strip() == "error: parameter seed must be an integer >= 0, got -1"
    import shutil

    shutil.rmtree(preset.run_dir / "variants" / "seed-1", ignore_errors=True)  # nothing left from an earlier run
    res = _cli("reproduce", "--preset", "smoke", "--only", "03", "--param", "seed=1", "--quiet", "--no-html")
    assert res.returncode == 0, res.stdout + res.stderr
    variant = preset.run_dir / "variants" / "seed-1"
    assert "variants/seed-1" in res.stdout
    assert (variant / "notebooks" / "03_anytime_and_budgeted.ipynb").exists()
    assert json.loads((variant / "results.json").read_text())["params"] == {"seed": 1}
    assert "with seed=1" in (variant / "results.md").read_text()
    assert (variant / "figures" / "03_anytime_budgeted.png").stat().st_size > 1000
    after = [_digest(f) for f in own] + [f.read_bytes() if f.exists() else None for f in own_files]
    assert after == before


def test_papermill_run_by_hand_refuses_a_name_the_notebook_does_not_take_and_keeps_overrides_apart(tmp_path):
    preset = get_preset("smoke")
    book = ROOT / "notebooks" / "04_overthinking.ipynb"
    pm = [sys.executable, "-m", "papermill", str(book)]
    res = subprocess.run(
        [*pm, str(tmp_path / "a.ipynb"), "-p", "preset", "smoke", "-p", "lam", "3"],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode != 0
    assert (
        "ConfigError: this notebook has no parameter 'lam' (given with papermill -p): it takes dataset, n_boot, "
        "n_examples, preset, record, seed" in res.stdout + res.stderr
    )
    before = _digest(preset.figure_dir)
    import shutil

    shutil.rmtree(preset.run_dir / "variants" / "n_boot-50", ignore_errors=True)
    res = subprocess.run(
        [*pm, str(tmp_path / "b.ipynb"), "-p", "preset", "smoke", "-p", "n_boot", "50"],
        cwd=ROOT / "notebooks",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert _digest(preset.figure_dir) == before
    assert (preset.run_dir / "variants" / "n_boot-50" / "figures" / "04_pairwise.png").exists()


def test_every_notebook_hands_start_each_parameter_it_declares():
    """start() refuses injected names the notebook does not pass on; so every declared name must be passed on."""
    import ast

    from overthink_lib.notebooks import _ALIASES, declared_parameters
    from overthink_lib.suite import list_notebooks

    for book in list_notebooks():
        cells = json.loads(book.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        call = next(
            n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "start"
        )
        passed = {_ALIASES.get(k.arg, k.arg) for k in call.keywords}
        assert passed == set(declared_parameters(book)), book.name


def test_a_torch_file_that_calls_os_system_says_so(tmp_path):
    """torch words the refusal "unsupported GLOBAL posix.system whose module posix is blocked": still named."""
    from overthink_lib.train import load_checkpoint

    marker = tmp_path / "ran"

    class Calls:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"epoch": 1, "x": Calls()}, tmp_path / "evil.pt")
    for load in (load_checkpoint, ExitRecord.load):
        with pytest.raises(
            ConfigError,
            match=r"carries objects that need code to load: refused \(it asks for "
            r"posix.system\)",
        ):
            load(tmp_path / "evil.pt")
    assert not marker.exists()
