"""Dataset registry: the offline default for real, the other formats on small files written in their real formats."""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from overthink_lib.config import ConfigError
from overthink_lib.data import DatasetUnavailable, get_dataset, iterate, list_datasets, sources
from overthink_lib.data.checksums import MADE_UP, mark_made_up


def test_fashion_mnist_offline_default(fashion_train):
    val = get_dataset("fashion_mnist", "val")
    test = get_dataset("fashion_mnist", "test")
    assert (len(fashion_train), len(val), len(test)) == (48_000, 12_000, 10_000)
    assert fashion_train.images.shape[1:] == (1, 28, 28) and fashion_train.images.dtype == torch.uint8
    # the split is a partition of the training file, reproducible from its seed
    tr, va = set(fashion_train.indices.tolist()), set(val.indices.tolist())
    assert not tr & va and len(tr | va) == 60_000
    again = get_dataset("fashion_mnist", "val")
    assert torch.equal(again.indices, val.indices)
    other = get_dataset("fashion_mnist", "val", split_seed=1)
    assert not torch.equal(other.indices, val.indices)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    x, y, i = fashion_train[5]
    assert (
        x.shape == (1, 28, 28)
        and x.dtype == torch.float32
        and isinstance(y, int)
        and i == int(fashion_train.indices[5])
    )
    assert fashion_train.provenance()["split_seed"] == 0


def test_unknown_names_are_one_clear_error():
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar1000': choose one of .*fashion_mnist"):
        get_dataset("cifar1000", "train")
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        get_dataset("fashion_mnist", "validation")
    assert {"fashion_mnist", "mnist", "cifar10", "cifar100", "svhn", "maxmin"} <= set(list_datasets())


def test_fraction_subset_is_seeded():
    a = get_dataset("fashion_mnist", "test", fraction=0.01)
    b = get_dataset("fashion_mnist", "test", fraction=0.01)
    assert len(a) == 100 and torch.equal(a.indices, b.indices)


def test_idx_round_trip_and_corruption(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    sources.write_idx(tmp_path / "a-idx3-ubyte.gz", arr)
    assert np.array_equal(sources.read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    (tmp_path / "b").write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") * 3 + b"\x00" * 5)
    with pytest.raises(DatasetUnavailable, match="truncated or corrupt"):
        sources.read_idx(tmp_path / "b")


def _write_mnist(root, folder="MNIST", n_train=30, n_test=20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        img, lab = sources._IDX_FILES[split]
        sources.write_idx(raw / img, rng.integers(0, 256, (n, 28, 28)))
        sources.write_idx(raw / lab, np.arange(n) % 10)
    mark_made_up(raw)
    return raw


def test_mnist_from_idx_files(tmp_path):
    _write_mnist(tmp_path)
    tr = get_dataset("mnist", "train", root=tmp_path, download=False)
    va = get_dataset("mnist", "val", root=tmp_path, download=False)
    te = get_dataset("mnist", "test", root=tmp_path, download=False)
    assert (len(tr), len(va), len(te)) == (24, 6, 20)
    assert te.labels.tolist() == [i % 10 for i in range(20)]


def test_missing_mnist_offline_message(tmp_path, monkeypatch):
    with pytest.raises(
        DatasetUnavailable,
        match=r"dataset 'mnist' is not on disk .*train-images-idx3-ubyte.*"
        r"python -m overthink_lib fetch mnist",
    ):
        get_dataset("mnist", "train", root=tmp_path, download=False)

    import torchvision

    def offline(*a, **k):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DatasetUnavailable, match=r"could not be downloaded \(OSError"):
        get_dataset("mnist", "train", root=tmp_path, download=True)
    assert not (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_missing_fashion_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        get_dataset("fashion_mnist", "train", root=tmp_path, download=False)


def test_fashion_copied_from_debian_layout(tmp_path, monkeypatch):
    deb = tmp_path / "deb"
    deb.mkdir()
    for split, n in (("train", 10), ("test", 5)):
        img, lab = sources._IDX_FILES[split]
        sources.write_idx(deb / f"{img}.gz", np.full((n, 28, 28), 7))
        sources.write_idx(deb / f"{lab}.gz", np.arange(n) % 10)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", deb)
    mark_made_up(tmp_path / "data" / "FashionMNIST" / "raw")  # where the copies land and are read
    te = get_dataset("fashion_mnist", "test", root=tmp_path / "data", download=False)
    assert len(te) == 5 and int(te.images.max()) == 7
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").exists()


def _write_cifar(root, name):
    rng = np.random.default_rng(1)
    sub, train_files, test_files, key = sources._CIFAR[name]
    folder = root / sub
    folder.mkdir(parents=True)
    n_cls = 10 if name == "cifar10" else 100
    for i, f in enumerate(train_files + test_files):
        data = rng.integers(0, 256, (8, 3 * 32 * 32), dtype=np.uint8)
        entry = {b"data": data, key: [(i * 8 + j) % n_cls for j in range(8)]}
        with open(folder / f, "wb") as fh:
            pickle.dump(entry, fh)
    mark_made_up(folder)
    return folder


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_pickles(tmp_path, name):
    folder = _write_cifar(tmp_path, name)
    te = get_dataset(name, "test", root=tmp_path, download=False)
    assert te.images.shape == (8, 3, 32, 32) and te.num_classes == (10 if name == "cifar10" else 100)
    with open(folder / sources._CIFAR[name][2][0], "rb") as fh:
        raw = pickle.load(fh)
    # channel-first rows of 1024 red, then green, then blue values
    assert np.array_equal(te.images[0, 1].numpy().reshape(-1), raw[b"data"][0, 1024:2048])
    tr = get_dataset(name, "train", root=tmp_path, download=False)
    assert len(tr) + len(get_dataset(name, "val", root=tmp_path, download=False)) == 8 * len(sources._CIFAR[name][1])


def test_missing_cifar100_offline_message(tmp_path):
    with pytest.raises(
        DatasetUnavailable,
        match=r"'cifar100' is not on disk \(expected train, test in .*cifar-100"
        r"-python\).*fetch cifar100",
    ):
        get_dataset("cifar100", "test", root=tmp_path, download=False)


def _write_svhn(root, n=(40, 30, 60)):
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for split, k in zip(("train", "test", "extra"), n):
        savemat(
            folder / f"{split}_32x32.mat",
            {
                "X": rng.integers(0, 256, (32, 32, 3, k), dtype=np.uint8),
                "y": (np.arange(k) % 10 + 1).reshape(-1, 1).astype(np.uint8),
            },
        )
    mark_made_up(folder)


def test_svhn_from_mat_with_extra_topup(tmp_path, monkeypatch):
    from overthink_lib.data import registry

    _write_svhn(tmp_path)
    te = get_dataset("svhn", "test", root=tmp_path, download=False)
    assert len(te) == 30 and te.labels.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # 10 → digit 0
    monkeypatch.setattr(registry, "SVHN_EXTRA_TOPUP", 25)
    va = get_dataset("svhn", "val", root=tmp_path, download=False, svhn_extra=True)
    te = get_dataset("svhn", "test", root=tmp_path, download=False, svhn_extra=True)
    assert len(va) == 8 + 25 and len(te) == 30 + 25
    extra_va, extra_te = set(va.indices[8:].tolist()), set(te.indices[30:].tolist())
    assert min(extra_va | extra_te) >= 70 and not extra_va & extra_te  # after train and test, disjoint
    with pytest.raises(ConfigError, match="svhn_extra=True applies only"):
        get_dataset("mnist", "test", svhn_extra=True)
    for bad in (2.5, "25", -3):
        with pytest.raises(ConfigError, match=r"svhn_extra must be True or a count >= 1"):
            get_dataset("svhn", "val", root=tmp_path, download=False, svhn_extra=bad)


def test_batches_are_seeded_and_augment_on_tensor(fashion_train):
    small = fashion_train.subset(torch.arange(100))
    a = [b for b in iterate(small, 32, shuffle=True, augment=True, seed=5)]
    b = [b for b in iterate(small, 32, shuffle=True, augment=True, seed=5)]
    c = [b for b in iterate(small, 32, shuffle=True, augment=True, seed=6)]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[2], y[2]) for x, y in zip(a, b))
    assert not torch.equal(a[0][2], c[0][2])
    assert [len(t[1]) for t in a] == [32, 32, 32, 4]
    plain = next(iterate(small, 100))
    assert torch.equal(plain[2], small.indices)
    x0 = small[0][0]
    assert torch.allclose(plain[0][0], x0)
    # sharding: two ranks see disjoint halves of one permutation
    r0 = torch.cat([t[2] for t in iterate(small, 16, shuffle=True, seed=1, rank=0, world_size=2)])
    r1 = torch.cat([t[2] for t in iterate(small, 16, shuffle=True, seed=1, rank=1, world_size=2)])
    assert len(r0) == len(r1) == 50 and not set(r0.tolist()) & set(r1.tolist())


class _RunsCode:
    """What a forged dataset file carries: unpickling it calls os.system (here: writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_forged_cifar_file_is_refused_and_its_code_never_runs(tmp_path, protocol):
    folder = _write_cifar(tmp_path, "cifar100")
    marker = tmp_path / "code-ran"
    entry = {b"data": np.zeros((8, 3072), np.uint8), b"fine_labels": [0] * 8, b"payload": _RunsCode(marker)}
    (folder / "test").write_bytes(pickle.dumps(entry, protocol=protocol))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(
        DatasetUnavailable,
        match=r"asks to run posix.system while loading.*refused without running "
        r"it",
    ) as err:
        get_dataset("cifar100", "test", root=tmp_path, download=False)
    assert len(str(err.value).splitlines()) == 1
    assert not marker.exists() and sorted(p.name for p in tmp_path.rglob("*")) == before


def test_cifar_pickles_of_every_protocol_and_numpy_module_name_load(tmp_path):
    """The official files are Python 2 pickles naming numpy.core.multiarray; numpy 2 writes numpy._core; a protocol-2
    pickle from Python 3 stores bytes through _codecs.encode. All are data and load."""
    folder = _write_cifar(tmp_path, "cifar10")
    entry = {b"data": np.arange(8 * 3072, dtype=np.uint8).reshape(8, 3072) % 251, b"labels": list(range(8))}
    raw = pickle.dumps(entry, protocol=2)
    old_name = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old_name != raw
    for blob in (raw, old_name, pickle.dumps(entry, protocol=5)):
        (folder / "test_batch").write_bytes(blob)
        te = get_dataset("cifar10", "test", root=tmp_path, download=False)
        assert np.array_equal(te.images.numpy().reshape(8, -1), entry[b"data"]) and te.labels.tolist() == list(range(8))
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetUnavailable, match="truncated or corrupt"):
        get_dataset("cifar10", "test", root=tmp_path, download=False)
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DatasetUnavailable, match="not a CIFAR python-format file"):
        get_dataset("cifar10", "test", root=tmp_path, download=False)


@pytest.mark.parametrize(
    "payload",
    [
        np.zeros(2, dtype=[("a", "O")]),
        np.array([1, "x"], dtype=object),
        np.zeros(2, dtype="V8"),
        np.zeros((2, 2), dtype=[("a", "u1", (2,))]),
    ],
)
def test_cifar_file_with_an_object_or_structured_array_is_refused(tmp_path, payload):
    """A structured or object dtype's pickled state can be forged so that raw bytes are read as pointers: only
    numpy's built-in numeric dtypes are rebuilt."""
    folder = _write_cifar(tmp_path, "cifar10")
    for protocol in (2, 5):
        entry = {b"data": np.zeros((8, 3072), np.uint8), b"labels": list(range(8)), b"x": payload}
        (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=protocol))
        with pytest.raises(DatasetUnavailable, match=r"asks to run numpy.dtype\(|truncated or corrupt"):
            get_dataset("cifar10", "test", root=tmp_path, download=False)


@pytest.mark.parametrize("name", ["cifar100", "svhn", "mnist"])
def test_made_up_files_where_real_data_belongs_are_refused_by_the_checksums(tmp_path, name):
    """Noise in the official format, without the made-up marker (what a benchmark once left in the data folder):
    one line naming the file, nothing trained on it."""
    {"cifar100": lambda: _write_cifar(tmp_path, "cifar100"), "svhn": lambda: _write_svhn(tmp_path)}.get(
        name, lambda: _write_mnist(tmp_path)
    )()
    for marker in tmp_path.rglob(MADE_UP):
        marker.unlink()
    # MNIST is published gzipped: plain files without their .gz cannot be checked, and the line says so
    what = "the official .*gz it was decompressed from is not beside it" if name == "mnist" else "is not the official"
    with pytest.raises(DatasetUnavailable, match=what) as err:
        get_dataset(name, "test", root=tmp_path, download=False)
    assert len(str(err.value).splitlines()) == 1 and "fetch" in str(err.value)


def test_real_fashion_mnist_is_verified_once_then_by_size_and_time(tmp_path, monkeypatch):
    """Debian's real Fashion-MNIST passes by the content of the official release; a second load reads the cache; a
    file changed in place (same size) is checked again and refused."""
    import gzip
    import os

    from overthink_lib.data import checksums

    if not (sources.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.fail("Debian's dataset-fashion-mnist is not installed (make data-deps)")
    te = get_dataset("fashion_mnist", "test", root=tmp_path, download=False)
    assert len(te) == 10000
    digests = []
    real_md5 = checksums._md5
    monkeypatch.setattr(checksums, "_md5", lambda path, **kw: digests.append(path) or real_md5(path, **kw))
    get_dataset("fashion_mnist", "test", root=tmp_path, download=False)
    assert digests == []  # verified once: the cache by size, times and inode
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "FashionMNIST", copy / "FashionMNIST", copy_function=shutil.copy2)
    shutil.copy2(tmp_path / ".verified.json", copy / ".verified.json")  # a folder copied with its cache (rsync -a)
    get_dataset("fashion_mnist", "test", root=copy, download=False)
    assert len(digests) == 4  # copies keep their modification times, not their inodes: all four files checked again
    digests.clear()
    labels = tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10  # one label changed, same size
    labels.write_bytes(bytes(raw))
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))
    with pytest.raises(DatasetUnavailable, match="t10k-labels-idx1-ubyte is not the official fashion_mnist file"):
        get_dataset("fashion_mnist", "test", root=tmp_path, download=False)
    assert digests  # checked again
    labels.unlink()  # as the line says: delete it -- Debian's copy comes back in its place and passes
    real = get_dataset("fashion_mnist", "test", root=tmp_path, download=False)
    assert len(real) == 10000 and labels.exists() and "made_up" not in real.info
    with gzip.open(sources.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as fh:
        assert labels.read_bytes() == fh.read()


def test_a_decompressed_idx_copy_passes_through_the_verified_gz_beside_it(tmp_path, monkeypatch):
    """MNIST is published gzipped (torchvision keeps the .gz beside the decompressed copy): the copy passes when the
    .gz has the official MD5 and decompresses to the same bytes; a copy that differs from its .gz does not."""
    import gzip

    from overthink_lib.data import checksums

    raw = _write_mnist(tmp_path)
    (raw / MADE_UP).unlink()
    official = {}
    for stem in (s for pair in sources._IDX_FILES.values() for s in pair):
        with open(raw / stem, "rb") as src, gzip.open(raw / f"{stem}.gz", "wb") as dst:
            dst.write(src.read())
        official[f"MNIST/raw/{stem}.gz"] = checksums._md5(raw / f"{stem}.gz")
    monkeypatch.setattr(checksums, "OFFICIAL_MD5", official)  # these .gz files play the official release
    cache = tmp_path / ".verified.json"
    cache.write_text(json.dumps({"elsewhere/file": {"stamp": [1, 2, 3, 4], "verified": "x"}, "odd": 5}))
    te = get_dataset("mnist", "test", root=tmp_path, download=False)
    assert len(te) == 20 and "made_up" not in te.info
    kept = json.loads(cache.read_text())  # another process's entry kept, a malformed one neither trusted nor fatal
    assert "elsewhere/file" in kept and "odd" not in kept and "MNIST/raw/t10k-images-idx3-ubyte" in kept
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\0" * 16)  # the copy no longer matches its .gz
    with pytest.raises(DatasetUnavailable, match="t10k-images-idx3-ubyte is not the official mnist file"):
        get_dataset("mnist", "test", root=tmp_path, download=False)


def test_svhn_records_of_the_topped_up_splits_validate(tmp_path, monkeypatch):
    """The registry writes the extra top-up as {count, index_offset} into the split's provenance: a record of such a
    split is valid (the record check once refused it as the wrong type)."""
    from overthink_lib.data import registry
    from overthink_lib.records import ExitRecord

    _write_svhn(tmp_path)
    monkeypatch.setattr(registry, "SVHN_EXTRA_TOPUP", 25)
    te = get_dataset("svhn", "test", root=tmp_path, download=False, svhn_extra=True)
    prov = {"dataset": te.provenance()}
    assert prov["dataset"]["svhn_extra"] == {"count": 25, "index_offset": 70}
    rec = ExitRecord(torch.zeros(len(te), 2, 10), te.labels, te.indices, None, provenance=prov)
    assert rec.provenance["dataset"]["fingerprint"] == te.fingerprint() and prov["dataset"]["made_up"] is True
    # its images come back with the record's own top-up count (not the thesis's 25,000, which this file cannot give)
    from overthink_lib.config import get_preset
    from overthink_lib.experiments.runs import record_images

    monkeypatch.setattr(registry, "SVHN_EXTRA_TOPUP", 25_000)
    small = get_dataset("svhn", "test", root=tmp_path, download=False, svhn_extra=25)
    prov = {"dataset": small.provenance()}
    rec = ExitRecord(torch.zeros(len(small), 2, 10), small.labels, small.indices, None, provenance=prov)
    monkeypatch.setattr(sources, "DATA_ROOT", tmp_path)
    images = record_images(rec, get_preset("smoke"))
    assert images is not None and torch.equal(images.indices, small.indices)
    assert torch.equal(images.images, small.images)


def test_the_fingerprint_follows_the_contents(tmp_path):
    """Same name, split, size and labels, other pixels: another fingerprint, so another run and record key."""
    from overthink_lib.config import get_preset
    from overthink_lib.experiments.runs import model_spec, run_folder, train_config

    _write_mnist(tmp_path / "a")
    _write_mnist(tmp_path / "b")
    img = tmp_path / "b" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    sources.write_idx(img, 255 - sources.read_idx(img))
    a = get_dataset("mnist", "train", root=tmp_path / "a", download=False)
    b = get_dataset("mnist", "train", root=tmp_path / "b", download=False)
    assert a.provenance() | {"fingerprint": ""} == b.provenance() | {"fingerprint": ""}
    assert a.fingerprint() != b.fingerprint() and a.fingerprint() == a.subset(torch.arange(len(a))).fingerprint()
    smoke = get_preset("smoke")
    cfg = train_config(smoke)
    assert run_folder(smoke, model_spec(a), cfg, a) != run_folder(smoke, model_spec(b), cfg, b)
    before = a.fingerprint()
    a.images[0, 0, 0, 0] += 1  # an in-place change is seen
    assert a.fingerprint() != before


def test_svhn_is_decoded_once_per_process_and_a_short_extra_file_is_refused(tmp_path, monkeypatch):
    """Every split of SVHN with the top-up, twice: each .mat file decoded once (the notebooks load their splits many
    times); an extra file too short for the top-up is one line, not a silently smaller validation set."""
    from scipy.io import savemat

    from overthink_lib.data import registry

    _write_svhn(tmp_path)
    monkeypatch.setattr(registry, "SVHN_EXTRA_TOPUP", 25)
    before = dict(sources.READS)
    for _ in range(2):
        for split in ("train", "val", "test"):
            get_dataset("svhn", split, root=tmp_path, download=False, svhn_extra=True)
    reads = {k: v - before.get(k, 0) for k, v in sources.READS.items() if v != before.get(k, 0)}
    assert sorted((Path(k).name, v) for k, v in reads.items()) == [
        ("extra_32x32.mat", 1),
        ("test_32x32.mat", 1),
        ("train_32x32.mat", 1),
    ]
    rng = np.random.default_rng(3)
    short = {"X": rng.integers(0, 256, (32, 32, 3, 49), dtype=np.uint8), "y": np.ones((49, 1), np.uint8)}
    savemat(tmp_path / "svhn" / "extra_32x32.mat", short)
    os.utime(tmp_path / "svhn" / "extra_32x32.mat", ns=(0, 10**18))  # a new file version, whatever the clock
    with pytest.raises(DatasetUnavailable, match=r"extra_32x32.mat holds 49 samples, but topping up .* needs 50") as e:
        get_dataset("svhn", "val", root=tmp_path, download=False, svhn_extra=True)
    assert len(str(e.value).splitlines()) == 1


def test_cifar100_class_names_come_from_its_meta_file(tmp_path):
    folder = _write_cifar(tmp_path, "cifar100")
    assert get_dataset("cifar100", "test", root=tmp_path, download=False).class_names is None  # no meta: numbers
    names = [f"class-{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names, b"coarse_label_names": [b"x"] * 20}))
    te = get_dataset("cifar100", "test", root=tmp_path, download=False)
    assert te.class_names[:2] == ("class-0", "class-1") and len(te.class_names) == 100
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names[:99]}))
    with pytest.raises(DatasetUnavailable, match="holds no list b'fine_label_names' of 100 class names"):
        get_dataset("cifar100", "test", root=tmp_path, download=False)
