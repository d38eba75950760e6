"""Readers of the datasets' real file formats, and their downloads.

Loading is ours (IDX for MNIST/Fashion-MNIST, the CIFAR python pickles, SVHN's ``.mat``), so it can be tested on
small files written in the same formats; fetching goes through torchvision's download code, which checks the
official MD5 sums. Offline and absent → :class:`DatasetUnavailable` with one line naming the dataset, the files
expected and the command that fetches them.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import socket
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import ROOT
from .checksums import DatasetMissing, DatasetUnavailable, file_stamp, made_up, verify

#: Where Debian's ``dataset-fashion-mnist`` puts the IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Our data folder (ignored by git); ``OVERTHINK_DATA`` may move it.
DATA_ROOT = Path(os.environ.get("OVERTHINK_DATA") or ROOT / "data").expanduser().resolve()

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``): the MNIST format. Returns an array of the stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetUnavailable(f"{path} is not an IDX file (bad magic number): delete it and fetch it again")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape))
    offset = 4 + 4 * ndim
    if len(raw) - offset != count * dtype.itemsize:
        raise DatasetUnavailable(
            f"{path} is truncated or corrupt ({len(raw) - offset} bytes of data, "
            f"{count * dtype.itemsize} expected): delete it and fetch it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file; ``.gz`` suffix → gzip. Used for tests and the Debian copy."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())


def _download(name: str, fetch, expected: str, how: str) -> None:
    """Run ``fetch()`` (a torchvision download); any network failure → one clear DatasetUnavailable line."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        fetch()
    except Exception as exc:
        raise DatasetUnavailable(
            f"dataset {name!r} is not on disk ({expected}) and could not be downloaded "
            f"({type(exc).__name__}: {str(exc)[:80]}); {how}"
        ) from exc
    finally:
        socket.setdefaulttimeout(old)


#: Decoded arrays of this process, by (file, size, modification time): a notebook loads its dataset's splits many
#: times, and SVHN's .mat files cost seconds and GBs to decode. Callers never change them in place (the registry
#: indexes them into new arrays).
_DECODED: dict[str, tuple[tuple, object]] = {}
#: How often each file was decoded in this process (tests count them).
READS: Counter[str] = Counter()


def _decoded_once(path: Path, read, also: tuple[Path, ...] = ()):
    """``read(path)``, decoded once per process and version of ``path`` and of the files ``also`` it reads with it (a
    changed, replaced or copied file, by :func:`~overthink_lib.data.checksums.file_stamp`, is decoded again)."""
    name = os.path.abspath(path)
    stamp = tuple(tuple(file_stamp(p)) for p in (path, *also))
    if name not in _DECODED or _DECODED[name][0] != stamp:  # an older version is dropped, never reused
        _DECODED[name] = (stamp, read(path))
        READS[name] += 1
    return _DECODED[name][1]


# ---------------------------------------------------------------- MNIST-format sets: mnist, fashion_mnist
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_paths(folder: Path, split: str) -> list[Path] | None:
    """The image and label files of ``split`` in ``folder`` (plain, else .gz); None when one is absent."""
    found = []
    for stem in _IDX_FILES[split]:
        path = next((c for c in (folder / stem, folder / f"{stem}.gz") if c.exists()), None)
        if path is None:
            return None
        found.append(path)
    return found


def _idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Images [N, 1, H, W] uint8 and labels [N] from ``folder`` (plain or .gz files); None when absent."""
    paths = _idx_paths(folder, split)
    if paths is None:
        return None
    images, labels = (_decoded_once(p, read_idx) for p in paths)
    if len(images) != len(labels):
        raise DatasetUnavailable(
            f"{folder}: {len(images)} images but {len(labels)} labels in the {split} files; "
            "delete the folder and fetch the dataset again"
        )
    return images[:, None], labels.astype(np.int64)


def _install_debian_fashion(raw: Path) -> bool:
    """Copy Debian's Fashion-MNIST into torchvision's layout (``data/FashionMNIST/raw``), decompressed."""
    if not all((DEBIAN_FASHION_MNIST / f"{stem}.gz").exists() for pair in _IDX_FILES.values() for stem in pair):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for pair in _IDX_FILES.values():
        for stem in pair:
            target = raw / stem
            if target.exists():
                continue
            tmp = raw / f".{stem}.{os.getpid()}.tmp"  # two processes may install it at once
            with gzip.open(DEBIAN_FASHION_MNIST / f"{stem}.gz", "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
    return True


def load_mnist_format(name: str, root: Path | None = None, download: bool = True) -> dict:
    """``mnist`` or ``fashion_mnist`` as {"train": (images, labels), "test": (...)} in torchvision's layout."""
    import torchvision

    root = Path(root or DATA_ROOT)
    folder, cls = {
        "mnist": ("MNIST", torchvision.datasets.MNIST),
        "fashion_mnist": ("FashionMNIST", torchvision.datasets.FashionMNIST),
    }[name]
    raw = root / folder / "raw"
    files = ", ".join(s for pair in _IDX_FILES.values() for s in pair)
    if name == "fashion_mnist" and (_idx_paths(raw, "train") is None or _idx_paths(raw, "test") is None):
        _install_debian_fashion(raw)  # copies only what is missing
    how = (
        f"install Debian's copy with `apt-get install dataset-fashion-mnist`, or put {files} in {raw}"
        if name == "fashion_mnist"
        else f"on a machine with internet run `python -m overthink_lib fetch {name}`, or put {files} in {raw}"
    )
    if _idx_paths(raw, "train") is None or _idx_paths(raw, "test") is None:
        if not download:
            raise DatasetMissing(f"dataset {name!r} is not on disk (expected {files} in {raw}); {how}")
        _download(name, lambda: cls(str(root), train=True, download=True), f"{files} in {raw}", how)
    files = [p for split in ("train", "test") for p in _idx_paths(raw, split) or []]
    verify(root, files, name, how)
    return {**{split: _idx_pair(raw, split) for split in ("train", "test")}, "made_up": any(map(made_up, files))}


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100 (python pickles)
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}
#: The file with the class names, and its key (both releases ship it; the names label figures instead of numbers).
_CIFAR_META = {"cifar10": ("batches.meta", b"label_names"), "cifar100": ("meta", b"fine_label_names")}


def _cifar_class_names(folder: Path, name: str) -> tuple[str, ...] | None:
    """The class names of the release's meta file, when it is there (verified like the data); else None."""
    meta, key = _CIFAR_META[name]
    path = folder / meta
    if not path.exists():
        return None
    verify(folder.parent, [path], name, f"fetch it again: `python -m overthink_lib fetch {name}`")
    entry = read_data_pickle(path, "CIFAR meta")
    names = entry.get(key) if isinstance(entry, dict) else None
    classes = 10 if name == "cifar10" else 100
    if not isinstance(names, list) or len(names) != classes or not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetUnavailable(
            f"{path} holds no list {key!r} of {classes} class names: delete it and fetch the dataset again"
        )
    return tuple(n.decode() if isinstance(n, bytes) else n for n in names)


def _builtin_dtype(name, align=False, copy=False):
    """``numpy.dtype`` as a pickle may call it: only a built-in numeric dtype (native byte order), returned as numpy's
    own shared instance, which ignores whatever state the pickle then tries to set on it. Object, void, structured
    and sub-array dtypes are refused: their state could be forged to make raw bytes read as pointers."""
    text = name.decode("latin1") if isinstance(name, bytes) else name
    try:
        d = np.dtype(text) if isinstance(text, str) and len(text) <= 4 else None
    except TypeError:
        d = None
    if d is None or d.isbuiltin != 1 or d.kind not in "biuf":
        raise pickle.UnpicklingError(f"global numpy.dtype({name!r})")
    return d


def _reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` for plain ndarrays of built-in dtypes only (the subtype is ignored)."""
    from numpy._core.multiarray import _reconstruct as real

    return real(np.ndarray, shape, _builtin_dtype(dtype))


class _NotCallable:
    """What ``numpy.ndarray`` resolves to: an argument of ``_reconstruct``, never something a pickle can call."""


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR files' contents — dicts, lists, bytes, numbers and numeric numpy arrays — and nothing else.

    A pickle can name any importable callable and have it called while loading (``os.system``, say), so a forged
    dataset file would run its code under plain ``pickle.load``. Here every global the file asks for is replaced by
    a guarded stand-in: arrays are rebuilt only as plain ndarrays of built-in numeric dtypes (a forged object or
    structured dtype could smuggle raw pointers into an array); anything else refuses the file before it is called.
    """

    def find_class(self, module: str, name: str):
        mod = module.replace("numpy._core", "numpy.core")  # numpy 2 writes numpy._core, the official files numpy.core
        if (mod, name) == ("numpy.core.multiarray", "_reconstruct"):
            return _reconstruct
        if (mod, name) == ("numpy", "dtype"):
            return _builtin_dtype
        if (mod, name) == ("numpy", "ndarray"):
            return _NotCallable
        if (mod, name) == ("numpy.core.multiarray", "scalar"):
            return lambda dtype, *data: np._core.multiarray.scalar(_builtin_dtype(dtype.char), *data)
        if (mod, name) == ("numpy.core.numeric", "_frombuffer"):  # protocol 5
            return lambda buf, dtype, shape, order: np._core.numeric._frombuffer(
                buf, _builtin_dtype(dtype.char), shape, order
            )
        if (module, name) == ("_codecs", "encode"):  # how a protocol-2 pickle written by Python 3 stores bytes
            return lambda text, encoding="latin1": text.encode("latin1")
        raise pickle.UnpicklingError(f"global {module}.{name}")


def read_data_pickle(path: Path, what: str) -> object:
    """A pickled dataset file read with :class:`_DataOnlyUnpickler`; a file that asks for code, or that is not a
    readable pickle → one :class:`DatasetUnavailable` line (its code never runs)."""
    try:
        with open(path, "rb") as fh:
            return _DataOnlyUnpickler(fh, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("global "):
            raise DatasetUnavailable(
                f"{path} is not a {what} file: it asks to run {str(err)[7:]} while loading, which "
                "a dataset file never does — refused without running it; delete it and fetch "
                "the dataset again from its official source"
            ) from None
        raise DatasetUnavailable(f"{path} is truncated or corrupt ({err}): delete it and fetch it again") from None
    except OSError:
        raise
    except Exception as err:
        raise DatasetUnavailable(
            f"{path} is truncated or corrupt ({type(err).__name__}): delete it and fetch it again"
        ) from None


def _read_cifar_files(folder: Path, files: list[str], key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for f in files:
        entry = read_data_pickle(folder / f, "CIFAR python-format")
        if not isinstance(entry, dict) or b"data" not in entry or key not in entry:
            raise DatasetUnavailable(
                f"{folder / f} is not a CIFAR python-format file (a dict with {b'data'!r} and "
                f"{key!r} expected): delete it and fetch the dataset again"
            )
        try:
            data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            lab = np.asarray(entry[key], dtype=np.int64).reshape(-1)
        except (ValueError, TypeError) as err:
            raise DatasetUnavailable(
                f"{folder / f}: its arrays do not have the CIFAR shapes ({err}): delete it and fetch the dataset again"
            ) from None
        if len(data) != len(lab):
            raise DatasetUnavailable(
                f"{folder / f}: {len(data)} images but {len(lab)} labels: delete it and fetch the dataset again"
            )
        images.append(data)
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def load_cifar(name: str, root: Path | None = None, download: bool = True) -> dict:
    """CIFAR-10/100 from the official python pickles under ``root``; images [N, 3, 32, 32] uint8."""
    import torchvision

    root = Path(root or DATA_ROOT)
    sub, train_files, test_files, key = _CIFAR[name]
    folder = root / sub
    expected = f"{', '.join(train_files + test_files)} in {folder}"
    if not all((folder / f).exists() for f in train_files + test_files):
        how = (
            f"on a machine with internet run `python -m overthink_lib fetch {name}` (or torchvision's "
            f"{'CIFAR10' if name == 'cifar10' else 'CIFAR100'}(root='{root}', download=True)) and copy {folder} here"
        )
        if not download:
            raise DatasetMissing(f"dataset {name!r} is not on disk (expected {expected}); {how}")
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        _download(name, lambda: cls(str(root), train=True, download=True), expected, how)
    verify(
        root,
        [folder / f for f in train_files + test_files],
        name,
        f"fetch it again: `python -m overthink_lib fetch {name}`",
    )
    out = {
        split: _decoded_once(
            folder / files[0],
            lambda _, fs=files: _read_cifar_files(folder, fs, key),
            tuple(folder / f for f in files[1:]),
        )
        for split, files in (("train", train_files), ("test", test_files))
    }
    return {**out, "class_names": _cifar_class_names(folder, name), "made_up": made_up(folder / train_files[0])}


# ---------------------------------------------------------------- SVHN (.mat)
def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(str(path))
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)), dtype=np.uint8)  # [32,32,3,N] → [N,3,32,32]
    labels = mat["y"].astype(np.int64).reshape(-1) % 10  # the digit 0 is stored as 10
    return images, labels


def _svhn_path(root: Path | None, split: str, download: bool) -> Path:
    """``<root>/svhn/<split>_32x32.mat``, fetched when missing and allowed, verified against its official MD5."""
    import torchvision

    folder = Path(root or DATA_ROOT) / "svhn"
    path = folder / f"{split}_32x32.mat"
    if not path.exists():
        how = (
            f"on a machine with internet run `python -m overthink_lib fetch svhn` (or torchvision's "
            f"SVHN(root='{folder}', split='{split}', download=True)) and copy {folder} here"
        )
        if not download:
            raise DatasetMissing(f"dataset 'svhn' is not on disk (expected {path}); {how}")
        _download("svhn", lambda: torchvision.datasets.SVHN(str(folder), split=split, download=True), str(path), how)
    verify(folder.parent, [path], "svhn", "fetch it again: `python -m overthink_lib fetch svhn`")
    return path


def load_svhn(root: Path | None = None, download: bool = True, extra: bool = False) -> dict:
    """SVHN from ``{train,test,extra}_32x32.mat`` under ``root/svhn``; ``extra`` also loads the 531k extra set."""
    splits = ["train", "test"] + (["extra"] if extra else [])
    paths = {split: _svhn_path(root, split, download) for split in splits}
    return {**{s: _decoded_once(p, _read_svhn) for s, p in paths.items()}, "made_up": made_up(paths["train"])}


#: The official extra file's size (Netzer et al. 2011).
SVHN_EXTRA_SIZE = 531_131
_TOPUPS: dict[tuple, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}


def svhn_extra_topup(
    root: Path | None, download: bool, seed: int, count: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``count`` seeded samples of SVHN's extra file for each of validation and test, disjoint: {"val" | "test":
    (images, labels, rows of the extra file)}. The extra file is decoded only when this process has not drawn these
    top-ups from this file version before (the selection is kept, never the 531k decoded images).

    Raises:
        DatasetUnavailable: an extra file with fewer than ``2 * count`` samples (the official one has 531,131).
    """
    path = _svhn_path(root, "extra", download)
    key = (os.path.abspath(path), *file_stamp(path), seed, count)
    if key not in _TOPUPS:
        images, labels = _read_svhn(path)
        READS[key[0]] += 1
        if len(labels) < 2 * count:
            raise DatasetUnavailable(
                f"{path} holds {len(labels):,} samples, but topping up validation and test with {count:,} each needs "
                f"{2 * count:,} (the official file has {SVHN_EXTRA_SIZE:,}): fetch it again with "
                "`python -m overthink_lib fetch svhn`"
            )
        perm = np.random.default_rng(seed + 7).permutation(len(labels))
        parts = {"val": np.sort(perm[:count]), "test": np.sort(perm[count : 2 * count])}
        for old in [k for k in _TOPUPS if k[0] == key[0]]:  # another version of the file: dropped
            del _TOPUPS[old]
        _TOPUPS[key] = {split: (images[rows], labels[rows], rows) for split, rows in parts.items()}
    return _TOPUPS[key]
