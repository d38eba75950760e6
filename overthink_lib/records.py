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

from .config import ConfigError, atomic_write_bytes, safe_torch_load

FORMAT = "overthink.ExitRecord/1"
#: The file suffix of records; ``.pt`` files of the older format still load (weights-only).
SUFFIX = ".npz"


def _tensor(x: Any, dtype: torch.dtype | None, name: str) -> torch.Tensor:
    """A CPU tensor of ``dtype`` (None: its own) from a tensor, numpy array or nested list; anything else → one
    ConfigError."""
    try:
        t = x.detach().cpu() if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"ExitRecord {name} must be numeric (a numpy array or tensor), got {type(x).__name__}: "
                          f"{err}") from None
    if not (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                                                  torch.bool)):
        raise ConfigError(f"ExitRecord {name} must be numeric, got dtype {t.dtype}")
    return t if dtype is None else t.to(dtype)


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
        if self.logits.ndim != 3:
            raise ConfigError(f"ExitRecord logits must be [N, E, C], got shape {tuple(self.logits.shape)}")
        n, e, _ = self.logits.shape
        n_flops = e if self.flops is None else len(self.flops)
        if len(self.labels) != n or len(self.indices) != n or n_flops != e:
            raise ConfigError(f"ExitRecord parts disagree: logits {tuple(self.logits.shape)}, labels {len(self.labels)},"
                              f" indices {len(self.indices)}, flops {n_flops}")
        for k, v in self.extras.items():
            if len(v) != n:
                raise ConfigError(f"ExitRecord extra {k!r} has {len(v)} rows for {n} samples")

    @classmethod
    def from_arrays(cls, logits: Any, labels: Any, *, flops: Any = None, indices: Any = None,
                    extras: dict[str, Any] | None = None, model: str | None = None,
                    provenance: dict[str, Any] | None = None) -> "ExitRecord":
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
        logits = _tensor(logits, torch.float32, "logits")
        if logits.ndim != 3:
            raise ConfigError(f"ExitRecord logits must be [N, E, C] (samples, exits, classes), got shape "
                              f"{tuple(logits.shape)}")
        labels = _tensor(labels, torch.int64, "labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[2]):
            raise ConfigError(f"ExitRecord labels must lie in 0..{logits.shape[2] - 1} (the classes of the logits), "
                              f"got {int(labels.min())}..{int(labels.max())}")
        idx = torch.arange(len(logits)) if indices is None else _tensor(indices, torch.int64, "indices")
        fl = None if flops is None else _tensor(flops, torch.float64, "flops").reshape(-1)
        ex = {k: _tensor(v, None, f"extra {k}") for k, v in (extras or {}).items()}
        prov = {"source": "arrays", "weights_hash": model or "unknown", **(provenance or {})}
        return cls(logits, labels, idx, fl, ex, prov)

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

    def accuracy(self) -> torch.Tensor:
        """Per-exit accuracy ``[E]``."""
        return self.correct.double().mean(0)

    def model_key(self) -> str:
        """Identifies the model that made the record (analyses refuse to mix records of different models)."""
        return self.provenance.get("weights_hash", "unknown")

    def require_flops(self, what: str = "this analysis") -> torch.Tensor:
        """The per-exit FLOPs, or one ConfigError saying that ``what`` needs them and how to give them."""
        if self.flops is None:
            raise ConfigError(f"{what} needs the cost of each exit, and this record has none: pass flops=[...] "
                              "(cumulative per exit) to ExitRecord.from_arrays or record_from_model")
        return self.flops

    def summary(self) -> str:
        acc = " ".join(f"{a * 100:.2f}" for a in self.accuracy().tolist())
        p = self.provenance
        return (f"{p.get('dataset', {}).get('name', '?')}/{p.get('dataset', {}).get('split', '?')}: "
                f"{self.num_samples} samples, {self.num_exits} exits, accuracy per exit (%) {acc}")

    def to_frame(self):
        """Tidy table: one row per (sample, exit) with label, pred, confidence, entropy, margin, correct, flops."""
        import pandas as pd

        p = self.probs
        top2 = p.topk(min(2, self.num_classes), -1).values
        n, e = self.num_samples, self.num_exits
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
        margin = top2[..., 0] - (top2[..., 1] if self.num_classes > 1 else 0)
        frame = pd.DataFrame({
            "sample": self.indices.repeat_interleave(e).numpy(),
            "exit": torch.arange(1, e + 1).repeat(n).numpy(),
            "label": self.labels.repeat_interleave(e).numpy(),
            "pred": self.preds.reshape(-1).numpy(),
            "confidence": top2[..., 0].reshape(-1).numpy(),
            "entropy": entropy.reshape(-1).numpy(),
            "margin": margin.reshape(-1).numpy(),
            "correct": self.correct.reshape(-1).numpy(),
            "flops": self.flops.repeat(n).numpy() if self.flops is not None else np.nan,
        })
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
        arrays = {"format": np.array(FORMAT), "logits": self.logits.numpy(), "labels": self.labels.numpy(),
                  "indices": self.indices.numpy(),
                  "provenance": np.array(json.dumps(self.provenance, sort_keys=True, default=str))}
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
    def load(cls, path: Path) -> "ExitRecord":
        """Load a record without running any code it may carry; a missing, truncated, corrupt or foreign file →
        one clear ConfigError."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no ExitRecord file at {path}: make one with python -m overthink_lib record ... "
                              "(or ExitRecord.from_arrays(...).save(path))")
        if path.suffix == ".pt":
            return cls._load_legacy(path)
        if not zipfile.is_zipfile(path):  # np.load would take any other bytes for a pickle
            raise ConfigError(f"ExitRecord {path} is truncated, corrupt or not an .npz archive; make it again")
        try:
            with np.load(path, allow_pickle=False) as z:
                blob = {k: z[k] for k in z.files}
        except ValueError as err:  # an object array: something that needs unpickling
            raise ConfigError(f"{path} holds pickled objects, which a record never does: refused ({err})") from None
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise ConfigError(f"ExitRecord {path} is truncated, corrupt or not an .npz archive "
                              f"({type(err).__name__}); make it again") from None
        if blob.get("format") is None or str(blob["format"]) != FORMAT or not {"logits", "labels", "indices",
                                                                              "provenance"} <= set(blob):
            raise ConfigError(f"{path} is not an ExitRecord file (format {FORMAT} with logits, labels, indices and "
                              "provenance expected)")
        try:
            prov = json.loads(str(blob["provenance"]))
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: its provenance is not valid JSON; make the record again") from None
        extras = {k.split("/", 1)[1]: torch.from_numpy(v) for k, v in blob.items() if k.startswith("extra/")}
        flops = torch.from_numpy(blob["flops"]) if "flops" in blob else None
        return cls(torch.from_numpy(blob["logits"]), torch.from_numpy(blob["labels"]),
                   torch.from_numpy(blob["indices"]), flops, extras, prov)

    @classmethod
    def _load_legacy(cls, path: Path) -> "ExitRecord":
        """A record of the older ``.pt`` format, loaded weights-only (tensors and plain containers, no code)."""
        blob = safe_torch_load(path, "ExitRecord")
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ConfigError(f"{path} is not an ExitRecord file (format {FORMAT} expected)")
        return cls(blob["logits"], blob["labels"], blob["indices"], blob["flops"], blob["extras"], blob["provenance"])


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
            raise ConfigError(f"record {text!r} is neither a folder nor VAL,TEST: give a folder holding val.npz and "
                              "test.npz, or the two files separated by a comma")
        files = sorted(p for p in folder.iterdir() if p.suffix in (SUFFIX, ".pt") and p.is_file())
        found = {}
        for split in ("val", "test"):
            hits = [p for p in files if p.stem == split] or [p for p in files if split in p.stem]
            if len(hits) != 1:
                raise ConfigError(f"record folder {folder}: expected one {split} record ({split}{SUFFIX}), found "
                                  f"{len(hits)} ({', '.join(p.name for p in hits) or 'none'})")
            found[split] = hits[0]
        val_path, test_path = found["val"], found["test"]
    recs = {"val": ExitRecord.load(val_path), "test": ExitRecord.load(test_path)}
    check_same_model(recs["val"], recs["test"])
    if recs["val"].num_exits != recs["test"].num_exits or recs["val"].num_classes != recs["test"].num_classes:
        raise ConfigError(f"records {val_path} and {test_path} disagree in exits or classes")
    return recs


def check_same_model(*records: ExitRecord) -> None:
    """Refuse records of different models (e.g. thresholds from one model's validation set on another's test set)."""
    keys = {r.model_key() for r in records}
    if len(keys) > 1:
        raise ConfigError(f"records come from different models (weights {', '.join(sorted(keys))}): use the "
                          "validation and test records of one model")
