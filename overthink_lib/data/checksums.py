"""The real datasets' files checked against their official checksums before anything reads them.

A file of the right format and size is not yet the dataset: random pixels in CIFAR's pickle format load fine and train
a network on noise without any error. So every file a loader reads is checked once against the MD5 its publisher
gives (the sums torchvision's downloads check) and the result is kept in ``<data root>/.verified.json``, keyed by the
file's size, times and inode (:func:`file_stamp`): a changed, replaced or copied file is checked again, an unchanged one
costs a ``stat``.

IDX files (MNIST, Fashion-MNIST) are published gzipped; a decompressed copy passes when its bytes are those of the
official release (the MD5 of the decompressed content, below) or of a verified ``.gz`` beside it.

Files made up on purpose (tests, rehearsals of a preset) sit in a folder that holds a :data:`MADE_UP` file
(:func:`mark_made_up`): they are read without the check, and the loader says so in one line. Nothing else skips it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import warnings
from pathlib import Path

from ..config import ConfigError
from ..io import atomic_write_bytes


class DatasetUnavailable(ConfigError):
    """The dataset's files are missing and could not be downloaded, or they are damaged or forged."""


class DatasetMissing(DatasetUnavailable):
    """The dataset's files are simply not on disk (and no download was asked for)."""


#: A file of this name in a dataset's folder: the files there are made up on purpose (never the official ones).
MADE_UP = "MADE-UP-DATA"

#: Official MD5 of each file, by its path under the data root (torchvision's layout). From the publishers' pages as
#: torchvision's dataset classes list them (CIFAR: Krizhevsky; SVHN: Netzer et al.; MNIST: LeCun et al.;
#: Fashion-MNIST: Zalando Research).
OFFICIAL_MD5: dict[str, str] = {
    "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
    "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
    "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
    "svhn/train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "svhn/test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "svhn/extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
    "MNIST/raw/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "MNIST/raw/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "MNIST/raw/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "FashionMNIST/raw/train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

#: MD5 of the decompressed IDX content, by file name: Fashion-MNIST's, read off Debian's ``dataset-fashion-mnist``
#: (0.0~git20200523, Zalando's release recompressed: its ``.gz`` bytes differ from the official ones, its content
#: does not). MNIST's decompressed copies pass through a verified ``.gz`` beside them.
CONTENT_MD5: dict[str, dict[str, str]] = {
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

_CACHE = ".verified.json"
_CHUNK = 1 << 22
#: Files this process verified, by path: their stamp (a read-only data folder, where the cache cannot be written,
#: is then still hashed once per process, not once per load).
_VERIFIED: dict[str, list[int]] = {}
#: Folders this process already said were made up (one line each, not one per read).
_ANNOUNCED: set[Path] = set()


def mark_made_up(folder: Path, what: str = "") -> Path:
    """Mark ``folder`` as holding made-up files in a dataset's format (tests, rehearsals): they are read without the
    checksum check, and every load says so."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / MADE_UP
    marker.write_text(f"Made-up files in the official format, not the dataset. {what}\n".strip() + "\n")
    return marker


def _md5(path: Path, *, gunzip: bool = False) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with (gzip.open if gunzip else open)(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_stamp(path: Path) -> list[int]:
    """Size, modification time, inode and status-change time: a file written, replaced, renamed over or copied here
    from elsewhere (``cp -p`` and ``rsync -a`` keep the modification time, never the change time) is checked again."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _load_cache(root: Path) -> dict:
    try:
        data = json.loads((root / _CACHE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _official(rel: str, path: Path) -> str | None:
    """Why ``path`` (``rel`` under the data root) is the official file, or None when it is not."""
    if rel in OFFICIAL_MD5:
        digest = _md5(path)
        if digest == OFFICIAL_MD5[rel]:
            return f"md5 {digest}"
    folder, name = Path(rel).parent, Path(rel).name
    family = CONTENT_MD5.get(folder.parent.name if folder.name == "raw" else folder.name, {})
    stem = name[:-3] if name.endswith(".gz") else name
    if stem in family and _md5(path, gunzip=name.endswith(".gz")) == family[stem]:
        return f"content md5 {family[stem]}"
    if not name.endswith(".gz") and f"{rel}.gz" in OFFICIAL_MD5:
        packed = path.with_name(name + ".gz")
        if packed.exists() and _md5(packed) == OFFICIAL_MD5[f"{rel}.gz"] and _md5(packed, gunzip=True) == _md5(path):
            return f"the official {packed.name}, decompressed"
    return None


def verify(root: Path, files: list[Path], dataset: str, how: str) -> None:
    """Check ``files`` (paths under ``root``) against the official checksums, once per file version.

    Raises:
        DatasetUnavailable: a file that is not the official one (made-up, damaged, another release), naming it and
            saying how to fetch the real one; a file with no known checksum is refused the same way.
    """
    root = Path(os.path.abspath(root))  # links kept: a dataset folder may be a link into a shared store
    cache = _load_cache(root)
    changed = False
    for path in files:
        path = Path(os.path.abspath(path))
        if (path.parent / MADE_UP).exists():
            if path.parent not in _ANNOUNCED:
                _ANNOUNCED.add(path.parent)
                warnings.warn(
                    f"dataset {dataset!r}: {path.parent} holds made-up files ({MADE_UP}), not the dataset: numbers "
                    "from them mean nothing",
                    stacklevel=3,
                )
            continue
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            raise ConfigError(f"{path} lies outside the data root {root}") from None
        stamp = file_stamp(path)
        entry = cache.get(rel)
        if _VERIFIED.get(str(path)) == stamp or (isinstance(entry, dict) and entry.get("stamp") == stamp):
            _VERIFIED[str(path)] = stamp
            continue
        why = _official(rel, path)
        if why is None:
            family = CONTENT_MD5.get(path.parent.parent.name, {})  # <root>/<Family>/raw/<file>
            packed = (
                f"{rel}.gz" in OFFICIAL_MD5
                and path.name not in family
                and not path.with_name(path.name + ".gz").exists()
            )
            raise DatasetUnavailable(
                f"{path} cannot be checked: the official {path.name}.gz it was decompressed from is not beside it "
                f"(keep the .gz files a download leaves, they are what is checked): {how}"
                if packed
                else f"{path} is not the official {dataset} file (its checksum matches no release: made-up, damaged "
                f"or another version): delete it and {how}"
            )
        cache[rel] = {"stamp": stamp, "verified": why}
        _VERIFIED[str(path)] = stamp
        changed = True
    if changed:
        # another process may have verified other files meanwhile: keep its entries (ours win for our files)
        merged = {rel: e for rel, e in {**_load_cache(root), **cache}.items() if isinstance(e, dict)}
        try:
            atomic_write_bytes(root / _CACHE, (json.dumps(merged, indent=1, sort_keys=True) + "\n").encode())
        except OSError:  # a read-only data folder: verified again next time, never trusted unverified
            pass


def made_up(path: Path) -> bool:
    """Whether ``path``'s folder is marked as holding made-up files."""
    return (Path(path).parent / MADE_UP).exists()


__all__ = [
    "CONTENT_MD5",
    "MADE_UP",
    "OFFICIAL_MD5",
    "DatasetMissing",
    "DatasetUnavailable",
    "file_stamp",
    "made_up",
    "mark_made_up",
    "verify",
]
