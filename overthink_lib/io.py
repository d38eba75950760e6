"""File I/O and hashing: atomic writes, loads that run no code, stable hashes and safe names.

Every write is atomic (:func:`atomic_write_bytes`: ``.<name>.tmp-<host>-<pid>``, then rename; temporaries of dead
writers on this host are removed on the next write to the folder). Torch files load with ``weights_only=True``
(:func:`safe_torch_load`), refusing what would run code with one line that names it. Every folder or file name
built from a file's contents or a parameter goes through :func:`safe_name`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError


def config_hash(obj: Any) -> str:
    """A short, stable hash of a (nested) config: dataclasses, dicts, lists, scalars."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def safe_name(text: str, max_len: int = 80) -> str:
    """``text`` as one safe folder or file name: letters, digits, ``.``, ``_`` and ``-`` only, no leading dot, at
    most ``max_len`` characters. A name that had to change gets a hash of the original appended, so two different
    texts never share a name. Every name built from a file's contents or a parameter goes through here: ``../``, an
    absolute path or a NUL byte never becomes part of a path."""
    import re

    text = str(text)
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-")[:max_len]
    if clean != text or not clean:
        clean = f"{clean[: max_len - 9]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return clean.lstrip("-") or "x"


def _host() -> str:
    import socket

    return safe_name(socket.gethostname() or "host", 40)


#: A temporary file younger than this is never taken for an orphan (its writer may be alive where we cannot see it).
ORPHAN_AGE_S = 60


def remove_orphaned_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that writers on this host killed mid-write left in ``folder``
    (``.<name>.tmp-<host>-<pid>``, older than :data:`ORPHAN_AGE_S`, whose process is gone); those of live processes
    and of other hosts stay."""
    import re
    import time

    gone = []
    pattern = re.compile(rf"^\..+\.tmp-{re.escape(_host())}-(\d+)$")
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return gone
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            if time.time() - entry.stat().st_mtime < ORPHAN_AGE_S:
                continue  # young: perhaps a writer of another PID namespace with the same host name
            os.kill(int(m.group(1)), 0)
            continue  # its writer still runs
        except (ProcessLookupError, OverflowError, ValueError):
            pass  # no such process (or no such PID at all)
        except OSError:
            continue  # a live process of another user, or the file is gone already
        try:
            entry.unlink()
            gone.append(entry)
        except OSError:
            pass
    return gone


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename); temporaries that
    killed writers left in that folder are removed first (:func:`remove_orphaned_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{_host()}-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: no temporary left behind
        tmp.unlink(missing_ok=True)
        raise


def _pickle_global(path: Path) -> str | None:
    """The first callable a pickle (plain, or the ``data.pkl`` of a ``torch.save`` zip) names that is not one of
    torch's own tensor rebuilders — read with ``pickletools``, so nothing in it runs; None when it names none."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                member = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                raw = z.read(member) if member else b""
        else:
            raw = Path(path).read_bytes()
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(raw):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            name = (
                arg.replace(" ", ".")
                if op.name == "GLOBAL"
                else ".".join(strings[-2:])
                if op.name == "STACK_GLOBAL" and len(strings) >= 2
                else None
            )
            if name and not name.startswith(("torch.", "collections.OrderedDict", "builtins.set")):
                return name
    except Exception:
        return None
    return None


def safe_torch_load(path: Path, what: str, allow: list | None = None) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code the file carries.

    ``allow``: more globals to accept when the file needs them (data types, no code of the file's choosing).
    A truncated, corrupt or code-carrying file → one ConfigError naming ``what`` it should have been.
    """
    import pickle
    import re

    try:
        with torch.serialization.safe_globals(allow or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module x is blocked"
        found = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(err), re.IGNORECASE)
        name = found.group(1) if found else _pickle_global(path)
        if name:  # the file asks for a class or function to be called while loading
            raise ConfigError(
                f"{what} {path} carries objects that need code to load: refused (it asks for "
                f"{name}); open "
                "only files from sources you trust, or make it again"
            ) from None
        raise ConfigError(
            f"{what} {path} is truncated, corrupt or unreadable (UnpicklingError); make it again"
        ) from None
    except Exception as err:
        raise ConfigError(
            f"{what} {path} is truncated, corrupt or unreadable ({type(err).__name__}); make it again"
        ) from None


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically: a killed process never leaves a half-written file."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
