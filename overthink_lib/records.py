"""ExitRecord: what every analysis reads — per-sample × per-exit logits of one model on one split, with provenance.

A record comes from the lab's own models (:mod:`overthink_lib.recording`, cached under ``runs/<preset>/records/`` by
the weights' content hash) or from anyone's: :meth:`ExitRecord.from_arrays` takes logits computed anywhere.

Files are ``.npz`` archives of plain numeric arrays plus the provenance as a JSON string, read with
``numpy.load(allow_pickle=False)``: opening a record someone sent you cannot run code (a pickle, which ``torch.save``
writes, can). Chosen over safetensors because numpy reads it with no extra dependency and any other framework can
write one (``numpy.savez``). Records of the older ``.pt`` format still load, with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import ConfigError
from .io import atomic_write_bytes, safe_torch_load

FORMAT = "overthink.ExitRecord/1"
#: The file suffix of records; ``.pt`` files of the older format still load (weights-only).
SUFFIX = ".npz"
#: Formats people send that a record is not read from (one line saying what to do instead).
UNSUPPORTED = {".safetensors": "safetensors", ".pkl": "pickled", ".pickle": "pickled", ".h5": "HDF5", ".hdf5": "HDF5"}


class RecordWarning(UserWarning):
    """A record that loads but looks wrong in a way that may be legitimate (e.g. two exits of equal cost)."""


_INT_KINDS = "iub"  # numpy kinds of integer (and bool) arrays


def _tensor(x: Any, dtype: torch.dtype | None, name: str) -> torch.Tensor:
    """A CPU tensor of ``dtype`` (None: its own) from a tensor, numpy array or nested list; anything that is not a
    plain numeric array → one ConfigError naming the field."""
    if torch.is_tensor(x):
        t = x.detach().cpu().clone()
        if t.is_complex():
            raise ConfigError(f"ExitRecord {name} must be real numbers, got dtype {t.dtype}")
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"ExitRecord {name} must be numeric (a numpy array or tensor), got {type(x).__name__}: {err}"
            ) from None
        if a.dtype.kind not in _INT_KINDS + "f":
            raise ConfigError(f"ExitRecord {name} must be numeric, got dtype {a.dtype} ({type(x).__name__})")
        if a.dtype.kind == "u" and a.dtype.itemsize > 1:  # torch has no full uint16/32/64 support
            if a.dtype.itemsize == 8 and a.size and a.max() > np.iinfo(np.int64).max:
                raise ConfigError(f"ExitRecord {name} holds uint64 values above 2**63 - 1: not a record's numbers")
            a = a.astype(np.int64)
        elif a.dtype.kind == "f" and a.dtype.itemsize == 2:
            a = a.astype(np.float32)  # float16 logits: kept exactly in float32
        # a copy: the caller changing its array afterwards never changes a record already checked
        t = torch.from_numpy(np.array(a, dtype=a.dtype.newbyteorder("="), order="C", copy=True))
    return t if dtype is None else t.to(dtype)


def _where(bad: torch.Tensor) -> str:
    """``'first at sample 3, exit 2'`` for a boolean mask over ``[N, E, ...]`` logits (1-based exits)."""
    first = bad.nonzero()[0].tolist()
    return f"first at sample {first[0]}" + (f", exit {first[1] + 1}" if len(first) > 1 else "")


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    if logits.ndim != 3:
        raise ConfigError(
            f"ExitRecord logits must be [N, E, C] (samples, exits, classes), got shape {tuple(logits.shape)}"
        )
    if logits.dtype == torch.bool:
        raise ConfigError("ExitRecord logits must be scores (floating point), got booleans")
    logits = logits.float()
    if logits.shape[0] < 1:
        raise ConfigError(f"ExitRecord holds no samples (logits of shape {tuple(logits.shape)}): record at least one")
    if logits.shape[1] < 1 or logits.shape[2] < 2:
        raise ConfigError(f"ExitRecord logits {tuple(logits.shape)} need at least one exit and two classes")
    bad = ~torch.isfinite(logits)
    if bad.any():  # policy: refused, never guessed — a NaN would silently move accuracy and every threshold
        nan, pos = int(torch.isnan(logits).sum()), int((logits == float("inf")).sum())
        raise ConfigError(
            f"ExitRecord logits hold {int(bad.sum())} non-finite values (NaN {nan}, +Inf {pos}, "
            f"-Inf {int(bad.sum()) - nan - pos}; {_where(bad)}): fix the model or the export; for "
            "log-probabilities with log(0) clip first, e.g. np.log(np.clip(p, 1e-30, 1))"
        )
    return logits


def _check_labels(labels: torch.Tensor, n: int, c: int) -> torch.Tensor:
    if labels.ndim == 2 and labels.shape == (n, c):
        raise ConfigError(
            f"ExitRecord labels must be class indices [N], got shape {tuple(labels.shape)} (one-hot?): "
            "pass labels.argmax(1)"
        )
    if labels.ndim != 1:
        raise ConfigError(f"ExitRecord labels must be 1-D class indices [N], got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ConfigError(
            f"ExitRecord labels must be integer class indices, got dtype {labels.dtype}: convert "
            "whole-number labels with labels.astype(np.int64)"
        )
    if labels.dtype == torch.bool:
        raise ConfigError("ExitRecord labels must be integer class indices, got booleans")
    labels = labels.long()
    if len(labels) and (labels.min() < 0 or labels.max() >= c):
        raise ConfigError(
            f"ExitRecord labels must lie in 0..{c - 1} (the classes of the logits), got "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return labels


def _check_indices(indices: torch.Tensor, n: int) -> torch.Tensor:
    if indices.ndim != 1 or indices.is_floating_point() or indices.dtype == torch.bool:
        raise ConfigError(
            f"ExitRecord indices must be 1-D integer sample ids [N], got shape {tuple(indices.shape)} "
            f"dtype {indices.dtype}"
        )
    indices = indices.long()
    if len(indices) and int(indices.min()) < 0:
        raise ConfigError(f"ExitRecord indices must be >= 0 (dataset indices), got {int(indices.min())}")
    if len(torch.unique(indices)) != len(indices):
        raise ConfigError(
            f"ExitRecord indices repeat ({len(indices) - len(torch.unique(indices))} duplicates): each "
            "sample needs its own dataset index"
        )
    return indices


def _check_flops(flops: torch.Tensor | None, e: int) -> torch.Tensor | None:
    if flops is None:
        return None
    flops = flops.reshape(-1).double()
    if len(flops) != e:
        return flops  # the shape check of __post_init__ names every part
    if not torch.isfinite(flops).all() or not (flops > 0).all():
        raise ConfigError(f"ExitRecord flops must be finite and > 0 (cumulative cost per exit), got {flops.tolist()}")
    down = [k for k in range(1, e) if flops[k] < flops[k - 1]]  # 0-based: exit k + 1 costs less than exit k
    if down:
        raise ConfigError(
            f"ExitRecord flops must be cumulative (non-decreasing), but exit {down[0] + 1} costs less "
            f"than exit {down[0]}: {flops.tolist()}; give the cost of reaching each exit from the input"
        )
    same = [k + 1 for k in range(1, e) if flops[k] == flops[k - 1]]
    if same:
        import warnings

        warnings.warn(
            f"ExitRecord flops: exit {', '.join(map(str, same))} cost as much as the exit before "
            f"({flops.tolist()}); a model whose forward ignores upto=k gives this",
            RecordWarning,
            stacklevel=3,
        )
    return flops


#: Types of the dataset fields a record's provenance may carry (``svhn_extra``: a flag, or the top-up's count and index
#: offset as the registry writes it; ``fingerprint``: the contents' hash, :meth:`ImageSet.fingerprint`).
_DATASET_TYPES = {
    "name": str,
    "split": str,
    "val_fraction": (int, float),
    "split_seed": int,
    "svhn_extra": (bool, dict),
    "fingerprint": str,
    "made_up": bool,
}


def _check_provenance(prov: Any) -> dict[str, Any]:
    if not isinstance(prov, dict):
        raise ConfigError(f"ExitRecord provenance must be a dict (JSON object), got {type(prov).__name__}")
    if "weights_hash" in prov and not isinstance(prov["weights_hash"], str):
        raise ConfigError(f"ExitRecord provenance weights_hash must be a string, got {prov['weights_hash']!r}")
    if "dataset" in prov:
        d = prov["dataset"]
        if not isinstance(d, dict):
            raise ConfigError(
                f"ExitRecord provenance dataset must be a dict like {{'name': 'cifar100', 'split': 'test'}}, got {d!r}"
            )
        for key, kind in _DATASET_TYPES.items():
            if (
                key in d
                and d[key] is not None
                and (
                    not isinstance(d[key], kind)
                    or (bool not in (kind if isinstance(kind, tuple) else (kind,)) and isinstance(d[key], bool))
                )
            ):
                raise ConfigError(f"ExitRecord provenance dataset.{key} has the wrong type: {d[key]!r}")
    if prov.get("model_spec") is not None and not isinstance(prov["model_spec"], dict):
        raise ConfigError(f"ExitRecord provenance model_spec must be a dict, got {type(prov['model_spec']).__name__}")
    return prov


@dataclass
class ExitRecord:
    """Logits of every exit for every sample of one split.

    Attributes:
        logits: ``[N, E, C]`` float32.
        labels: ``[N]`` int64.
        indices: ``[N]`` int64 dataset indices (the same sample has the same index in every record).
        flops: ``[E]`` cumulative multiply-adds per exit (see :mod:`overthink_lib.flops`), or None when unknown
            (a record from arrays without FLOPs): analyses that need costs then say so (:meth:`require_flops`).
        extras: per-sample extras, ``[N, ...]`` tensors (e.g. the Max-Min ``level``).
        provenance: model spec, dataset description, split, seeds, checkpoint/weights hash, code version.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    flops: torch.Tensor | None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # Every record passes here, wherever it comes from (arrays, a file, a model): one validation, once.
        self.logits = _check_logits(_tensor(self.logits, None, "logits"))
        n, e, c = self.logits.shape
        self.labels = _check_labels(_tensor(self.labels, None, "labels"), n, c)
        self.indices = _check_indices(_tensor(self.indices, None, "indices"), n)
        self.flops = None if self.flops is None else _check_flops(_tensor(self.flops, None, "flops"), e)
        n_flops = e if self.flops is None else len(self.flops)
        if len(self.labels) != n or len(self.indices) != n or n_flops != e:
            raise ConfigError(
                f"ExitRecord parts disagree: logits {tuple(self.logits.shape)}, labels {len(self.labels)},"
                f" indices {len(self.indices)}, flops {n_flops}"
            )
        if not isinstance(self.extras, dict):
            raise ConfigError(f"ExitRecord extras must be a dict of arrays, got {type(self.extras).__name__}")
        self.extras = {str(k): _tensor(v, None, f"extra {k!r}") for k, v in self.extras.items()}
        for k, v in self.extras.items():
            if v.ndim == 0 or len(v) != n:
                raise ConfigError(f"ExitRecord extra {k!r} has {len(v) if v.ndim else 0} rows for {n} samples")
        self.provenance = _check_provenance(self.provenance)

    @classmethod
    def from_arrays(
        cls,
        logits: Any,
        labels: Any,
        *,
        flops: Any = None,
        indices: Any = None,
        extras: dict[str, Any] | None = None,
        model: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> ExitRecord:
        """A record of logits computed anywhere (numpy arrays or tensors).

        Args:
            logits: ``[N, E, C]``, exits shallow to deep.
            labels: ``[N]`` true classes.
            flops: ``[E]`` cumulative cost of reaching each exit (any unit, e.g. MACs), or None.
            indices: ``[N]`` sample ids shared by every record of the same split (default 0..N−1).
            extras: per-sample arrays ``[N, ...]`` (e.g. a difficulty level).
            model: a name of the model; the validation and test records of one model must share it (thresholds
                from one model are refused on another's test set). Default ``"unknown"``.
            provenance: anything else worth keeping (JSON-serialisable), e.g. ``{"dataset": {"name": "cifar100",
                "split": "test"}}``.
        """
        idx = torch.arange(len(logits)) if indices is None else indices
        prov = {"source": "arrays", "weights_hash": model or "unknown", **(provenance or {})}
        return cls(logits, labels, idx, flops, dict(extras or {}), prov)

    # ------------------------------------------------------------------ views
    @property
    def num_samples(self) -> int:
        return self.logits.shape[0]

    @property
    def num_exits(self) -> int:
        return self.logits.shape[1]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[2]

    @property
    def probs(self) -> torch.Tensor:
        """Softmax probabilities ``[N, E, C]``."""
        return F.softmax(self.logits.float(), -1)

    @property
    def preds(self) -> torch.Tensor:
        """Predicted class per sample and exit ``[N, E]``."""
        return self.logits.argmax(-1)

    @property
    def correct(self) -> torch.Tensor:
        """``[N, E]`` bool: exit e classifies sample n correctly."""
        return self.preds == self.labels[:, None]

    def accuracy(self, top: int = 1) -> torch.Tensor:
        """Per-exit accuracy ``[E]``; ``top=5``: the true class among each exit's 5 highest logits (top-5)."""
        if top == 1:
            return self.correct.double().mean(0)
        return self.top_correct(top).double().mean(0)

    def top_correct(self, top: int) -> torch.Tensor:
        """``[N, E]`` bool: the true class is among exit e's ``top`` highest logits (ties: torch.topk's order)."""
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= self.num_classes:
            raise ConfigError(f"top-k accuracy needs 1 <= k <= {self.num_classes} classes, got {top!r}")
        best = self.logits.topk(top, dim=-1).indices  # [N, E, k]
        return (best == self.labels[:, None, None]).any(-1)

    def model_key(self) -> str:
        """Identifies the model that made the record (analyses refuse to mix records of different models)."""
        return self.provenance.get("weights_hash", "unknown")

    def require_flops(self, what: str = "this analysis") -> torch.Tensor:
        """The per-exit FLOPs, or one ConfigError saying that ``what`` needs them and how to give them."""
        if self.flops is None:
            raise ConfigError(
                f"{what} needs the cost of each exit, and this record has none: pass flops=[...] "
                "(cumulative per exit) to ExitRecord.from_arrays or record_from_model"
            )
        return self.flops

    def summary(self) -> str:
        acc = " ".join(f"{a * 100:.2f}" for a in self.accuracy().tolist())
        p = self.provenance
        return (
            f"{p.get('dataset', {}).get('name', '?')}/{p.get('dataset', {}).get('split', '?')}: "
            f"{self.num_samples} samples, {self.num_exits} exits, accuracy per exit (%) {acc}"
        )

    def to_frame(self):
        """Tidy table: one row per (sample, exit) with label, pred, confidence, entropy, margin, correct, flops."""
        import pandas as pd

        p = self.probs
        top2 = p.topk(min(2, self.num_classes), -1).values
        n, e = self.num_samples, self.num_exits
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
        margin = top2[..., 0] - (top2[..., 1] if self.num_classes > 1 else 0)
        frame = pd.DataFrame(
            {
                "sample": self.indices.repeat_interleave(e).numpy(),
                "exit": torch.arange(1, e + 1).repeat(n).numpy(),
                "label": self.labels.repeat_interleave(e).numpy(),
                "pred": self.preds.reshape(-1).numpy(),
                "confidence": top2[..., 0].reshape(-1).numpy(),
                "entropy": entropy.reshape(-1).numpy(),
                "margin": margin.reshape(-1).numpy(),
                "correct": self.correct.reshape(-1).numpy(),
                "flops": self.flops.repeat(n).numpy() if self.flops is not None else np.nan,
            }
        )
        for k, v in self.extras.items():
            if v.ndim == 1:
                frame[k] = v.repeat_interleave(e).numpy()
        return frame

    # ------------------------------------------------------------------ files
    def save(self, path: Path) -> Path:
        """One ``.npz`` file (plain arrays + JSON provenance), written atomically; the suffix is added if missing."""
        path = Path(path)
        if path.suffix != SUFFIX:
            path = path.with_name(path.name + SUFFIX)
        arrays = {
            "format": np.array(FORMAT),
            "logits": self.logits.numpy(),
            "labels": self.labels.numpy(),
            "indices": self.indices.numpy(),
            "provenance": np.array(json.dumps(self.provenance, sort_keys=True, default=str)),
        }
        if self.flops is not None:
            arrays["flops"] = self.flops.numpy()
        for k, v in self.extras.items():
            arrays[f"extra/{k}"] = v.numpy()
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: Path) -> ExitRecord:
        """Load a record without running any code it may carry; a missing, truncated, corrupt or foreign file →
        one clear ConfigError."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"no ExitRecord file at {path}: make one with python -m overthink_lib record ... "
                "(or ExitRecord.from_arrays(...).save(path))"
            )
        if path.suffix == ".pt":
            return cls._load_legacy(path)
        if path.suffix in UNSUPPORTED:
            raise ConfigError(
                f"{path}: {UNSUPPORTED[path.suffix]} records are not supported; write an .npz instead "
                "(numpy.savez(path, logits=..., labels=...), then python -m overthink_lib import-record)"
            )
        if not zipfile.is_zipfile(path):  # np.load would take any other bytes for a pickle
            raise ConfigError(f"ExitRecord {path} is truncated, corrupt or not an .npz archive; make it again")
        try:
            with np.load(path, allow_pickle=False) as z:
                blob = {k: z[k] for k in z.files}
        except ValueError as err:  # an object array: something that needs unpickling
            raise ConfigError(f"{path} holds pickled objects, which a record never does: refused ({err})") from None
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise ConfigError(
                f"ExitRecord {path} is truncated, corrupt or not an .npz archive ({type(err).__name__}); make it again"
            ) from None
        if (
            blob.get("format") is None
            or str(blob["format"]) != FORMAT
            or not {"logits", "labels", "indices", "provenance"} <= set(blob)
        ):
            raise ConfigError(
                f"{path} is not an ExitRecord file (format {FORMAT} with logits, labels, indices and "
                "provenance expected)"
            )
        try:
            prov = json.loads(str(blob["provenance"]))
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: its provenance is not valid JSON; make the record again") from None
        extras = {k.split("/", 1)[1]: v for k, v in blob.items() if k.startswith("extra/")}
        try:
            return cls(blob["logits"], blob["labels"], blob["indices"], blob.get("flops"), extras, prov)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    @classmethod
    def _load_legacy(cls, path: Path) -> ExitRecord:
        """A record of the older ``.pt`` format, loaded weights-only (tensors and plain containers, no code)."""
        blob = safe_torch_load(path, "ExitRecord")
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ConfigError(f"{path} is not an ExitRecord file (format {FORMAT} expected)")
        try:
            return cls(
                blob["logits"],
                blob["labels"],
                blob["indices"],
                blob.get("flops"),
                blob.get("extras") or {},
                blob.get("provenance") or {},
            )
        except KeyError as err:
            raise ConfigError(f"{path} is not a complete ExitRecord file (no {err})") from None
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


#: What the official MSDNet code's FLOPs count (``op_counter.py``): multiply-adds of convolutions and linear layers
#: plus one operation per ReLU element and per pooled element (BatchNorm: none); the lab's own (``flops.exit_flops``) are the
#: multiply-adds alone, about 1 % lower on MSDNet.
OFFICIAL_FLOPS = "official op_counter.py: conv/linear multiply-adds plus ReLU elements and pooling windows"


def read_official_logits(
    path: str | Path, flops: str | Path | None = None, *, model: str = "official-msdnet"
) -> dict[str, ExitRecord]:
    """The validation and test records in the official MSDNet code's ``logits_single.pth`` (``adaptive_inference.py``).

    That file is ``(val_pred, val_target, test_pred, test_target)``: softmax probabilities ``[exits, N, C]`` and
    float class indices ``[N]``. Read weights-only; probabilities become log-probabilities (their softmax is the same
    probabilities; a probability below float32's smallest normal, 1.2e-38, becomes that). ``flops``: its
    ``flops.pth`` (a list of per-exit FLOPs, :data:`OFFICIAL_FLOPS`), default the one beside ``path`` when present.
    Sample ids are positions: the test loader keeps the dataset's order, the validation loader samples the held-out
    training images in a random order (and under training augmentation), which the record's provenance says.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no file {path}: the official adaptive_inference.py writes <save>/logits_single.pth")
    obj = safe_torch_load(path, "official logits file")
    if not (isinstance(obj, (tuple, list)) and len(obj) == 4 and all(torch.is_tensor(t) for t in obj)):
        raise ConfigError(
            f"{path} is not the official logits_single.pth: expected 4 tensors (val_pred, val_target, test_pred, "
            f"test_target), found {type(obj).__name__}" + (f" of {len(obj)}" if isinstance(obj, (tuple, list)) else "")
        )
    flops_path = Path(flops) if flops is not None else path.with_name("flops.pth")
    costs = None
    if flops is not None or flops_path.is_file():
        if not flops_path.is_file():
            raise ConfigError(f"no file {flops_path}: the official main.py writes <save>/flops.pth")
        raw = safe_torch_load(flops_path, "official FLOPs file")
        if not isinstance(raw, (list, tuple)) or not all(isinstance(v, (int, float)) for v in raw):
            raise ConfigError(f"{flops_path} is not the official flops.pth: expected a list of per-exit numbers")
        costs = [float(v) for v in raw]
    out = {}
    for split, (pred, target) in {"val": obj[:2], "test": obj[2:]}.items():
        if pred.ndim != 3 or target.ndim != 1 or pred.shape[1] != len(target):
            raise ConfigError(
                f"{path}: {split}_pred must be [exits, N, C] and {split}_target [N], got "
                f"{list(pred.shape)} and {list(target.shape)}"
            )
        p = pred.double()
        sums = p.sum(-1)
        if not torch.isfinite(p).all() or (p < 0).any() or (sums - 1).abs().max() > 1e-3:
            raise ConfigError(
                f"{path}: {split}_pred is not softmax probabilities (rows sum to {sums.min():.4g}..{sums.max():.4g}); "
                "logits from elsewhere: import them with import-record from an .npz"
            )
        t = target.double()
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ConfigError(f"{path}: {split}_target holds values that are not class indices")
        if costs is not None and len(costs) != pred.shape[0]:
            raise ConfigError(f"{flops_path} has {len(costs)} FLOPs for {pred.shape[0]} exits in {path}")
        logp = pred.float().clamp_min(torch.finfo(torch.float32).tiny).log().permute(1, 0, 2).contiguous()
        order = (
            "test loader, dataset order"
            if split == "test"
            else "validation loader: held-out training images, random order, training augmentation"
        )
        out[split] = ExitRecord.from_arrays(
            logp,
            t.long(),
            flops=costs,
            model=model,
            provenance={
                "source": "official logits_single.pth",
                "imported_from": str(path),
                "sample_ids": f"positions ({order})",
                "logits": "log of the official softmax probabilities",
                **({"flops_source": OFFICIAL_FLOPS} if costs is not None else {}),
            },
        )
    return out


def load_records(where: str | Path) -> dict[str, ExitRecord]:
    """The validation and test records of one model, for the analysis notebooks' ``record`` parameter.

    ``where``: a folder holding ``val.npz`` and ``test.npz`` (any names containing ``val`` and ``test`` also do, one
    each), or two paths ``VAL,TEST``. The two must come from the same model (:func:`check_same_model`).
    """
    text = str(where).strip()
    if "," in text:
        parts = [Path(p.strip()).expanduser() for p in text.split(",")]
        if len(parts) != 2:
            raise ConfigError(f"record {text!r}: give a folder or two files VAL,TEST")
        val_path, test_path = parts
    else:
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"record {text!r} is neither a folder nor VAL,TEST: give a folder holding val.npz and "
                "test.npz, or the two files separated by a comma"
            )
        files = sorted(p for p in folder.iterdir() if p.suffix in (SUFFIX, ".pt") and p.is_file())
        found = {}
        for split in ("val", "test"):
            hits = [p for p in files if p.stem == split] or [p for p in files if split in p.stem]
            if len(hits) != 1:
                other = [p.name for p in folder.iterdir() if p.suffix in UNSUPPORTED and split in p.stem]
                raise ConfigError(
                    f"record folder {folder}: expected one {split} record ({split}{SUFFIX}), found "
                    f"{len(hits)} ({', '.join(p.name for p in hits) or 'none'})"
                    + (f"; {', '.join(other)} is not a supported format: convert it to .npz" if other else "")
                )
            found[split] = hits[0]
        val_path, test_path = found["val"], found["test"]
    if Path(val_path).resolve() == Path(test_path).resolve():
        raise ConfigError(
            f"record {text!r}: the validation and the test record are the same file ({val_path}); "
            "thresholds fitted on the test set would flatter every budgeted number"
        )
    recs = {"val": ExitRecord.load(val_path), "test": ExitRecord.load(test_path)}
    check_same_model(recs["val"], recs["test"])
    check_val_test(recs["val"], recs["test"], f"records {val_path} and {test_path}")
    return recs


def check_val_test(val: ExitRecord, test: ExitRecord, what: str = "the validation and test records") -> None:
    """Refuse a validation/test pair that would give wrong or flattering numbers: other exits or classes, other
    costs per exit, a split named against its role, or the same samples on both sides."""
    if val.num_exits != test.num_exits or val.num_classes != test.num_classes:
        raise ConfigError(
            f"{what} disagree in exits or classes ({val.num_exits}/{test.num_exits} exits, "
            f"{val.num_classes}/{test.num_classes} classes)"
        )
    if val.flops is not None and test.flops is not None and not torch.allclose(val.flops, test.flops, rtol=1e-6):
        raise ConfigError(
            f"{what} give other FLOPs per exit ({val.flops.tolist()} vs {test.flops.tolist()}): one "
            "model costs the same on both splits"
        )
    dv, dt = val.provenance.get("dataset") or {}, test.provenance.get("dataset") or {}
    if dv.get("split") in ("test",) or dt.get("split") in ("train", "val"):
        raise ConfigError(
            f"{what}: the validation record is of split {dv.get('split')!r} and the test record of "
            f"{dt.get('split')!r}: give the validation split's record first"
        )
    if dv.get("name") is not None and dv.get("name") == dt.get("name") and dv.get("split") == dt.get("split"):
        shared = len(set(val.indices.tolist()) & set(test.indices.tolist()))
        if shared:
            where = dv.get("name") + (f"/{dv['split']}" if dv.get("split") else "")
            raise ConfigError(
                f"{what} both hold samples of {where} ({shared} shared): "
                "thresholds must be fitted on other samples than the ones they are tested on"
            )


def check_same_model(*records: ExitRecord) -> None:
    """Refuse records of different models (e.g. thresholds from one model's validation set on another's test set)."""
    keys = {r.model_key() for r in records}
    if len(keys) > 1:
        raise ConfigError(
            f"records come from different models (weights {', '.join(sorted(keys))}): use the "
            "validation and test records of one model"
        )
