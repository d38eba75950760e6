"""ExitRecord: what every analysis reads — per-sample × per-exit logits of one model on one split, with provenance.

Records are made in eval mode without augmentation, saved as one file (atomically) and cached under
``runs/<preset>/records/`` keyed by the content hash of the model's weights and the dataset split's description, so a
changed model can never reuse an old record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import ConfigError, atomic_torch_save, code_version, config_hash
from .data import ImageSet

FORMAT = "overthink.ExitRecord/1"


@dataclass
class ExitRecord:
    """Logits of every exit for every sample of one split.

    Attributes:
        logits: ``[N, E, C]`` float32.
        labels: ``[N]`` int64.
        indices: ``[N]`` int64 dataset indices (the same sample has the same index in every record).
        flops: ``[E]`` cumulative multiply-adds per exit (see :mod:`overthink_lib.flops`).
        extras: per-sample extras, ``[N, ...]`` tensors (e.g. the Max-Min ``level``).
        provenance: model spec, dataset description, split, seeds, checkpoint/weights hash, code version.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    flops: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.logits.ndim != 3:
            raise ConfigError(f"ExitRecord logits must be [N, E, C], got shape {tuple(self.logits.shape)}")
        n, e, _ = self.logits.shape
        if len(self.labels) != n or len(self.indices) != n or len(self.flops) != e:
            raise ConfigError(f"ExitRecord parts disagree: logits {tuple(self.logits.shape)}, labels {len(self.labels)},"
                              f" indices {len(self.indices)}, flops {len(self.flops)}")
        for k, v in self.extras.items():
            if len(v) != n:
                raise ConfigError(f"ExitRecord extra {k!r} has {len(v)} rows for {n} samples")

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
            "flops": self.flops.repeat(n).numpy(),
        })
        for k, v in self.extras.items():
            if v.ndim == 1:
                frame[k] = v.repeat_interleave(e).numpy()
        return frame

    # ------------------------------------------------------------------ files
    def save(self, path: Path) -> Path:
        """One file, written atomically."""
        atomic_torch_save({"format": FORMAT, "logits": self.logits, "labels": self.labels, "indices": self.indices,
                           "flops": self.flops, "extras": self.extras, "provenance": self.provenance}, path)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "ExitRecord":
        """Load a record; a missing, corrupt or foreign file → one clear ConfigError."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"no ExitRecord at {path}: make it with python -m overthink_lib record ...")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"ExitRecord {path} is corrupt or unreadable ({type(err).__name__}); delete it and "
                              "record again") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ConfigError(f"{path} is not an ExitRecord file (format {FORMAT} expected)")
        return cls(blob["logits"], blob["labels"], blob["indices"], blob["flops"], blob["extras"], blob["provenance"])


def make_record(model, ds: ImageSet, *, device: torch.device | None = None, batch_size: int = 512,
                provenance: dict[str, Any] | None = None, progress: bool = False,
                weights_hash: str | None = None, speed=None) -> ExitRecord:
    """Run ``model`` (eval mode, no augmentation) over ``ds`` and keep every exit's logits.

    ``weights_hash``: the model's :func:`~overthink_lib.train.state_hash` when the caller already has it.
    ``speed``: inference :class:`~overthink_lib.speed.Speed` (default fp32 eager, what the lab's records use);
    anything else is written into the provenance.
    """
    from .flops import exit_flops
    from .speed import Speed
    from .train import predict, state_hash

    if getattr(model, "config", None) is not None and hasattr(model.config, "num_classes") and \
            model.config.num_classes != ds.num_classes:
        raise ConfigError(f"model has {model.config.num_classes} classes but dataset {ds.name} has {ds.num_classes}: "
                          "train a model for this dataset")
    speed = speed or Speed()
    logits, labels, indices = predict(model, ds, batch_size=batch_size, device=device, progress=progress, speed=speed)
    flops = torch.tensor(exit_flops(model, tuple(ds.images.shape[1:])), dtype=torch.float64)
    prov = {"model_spec": getattr(model, "spec", None), "dataset": ds.describe(), "weights_hash": weights_hash or state_hash(model),
            "code_version": code_version(), **({} if speed.is_default else {"inference_speed": speed.describe()}),
            **(provenance or {})}
    return ExitRecord(logits, labels, indices, flops, {k: v.clone() for k, v in ds.extras.items()}, prov)


def cached_record(model, ds: ImageSet, cache_dir: Path, **kwargs) -> ExitRecord:
    """:func:`make_record`, cached in ``cache_dir`` under a key of (weights hash, dataset description)."""
    from .train import state_hash

    weights = state_hash(model)  # hashed once: the cache key and the record's provenance
    speed = kwargs.get("speed")
    key = config_hash({"weights": weights, "data": ds.describe(), "spec": getattr(model, "spec", None),
                       **({"speed": speed.describe()} if speed is not None and not speed.is_default else {})})
    path = Path(cache_dir) / f"{ds.name}-{ds.split}-{key}.pt"
    if path.exists():
        return ExitRecord.load(path)
    rec = make_record(model, ds, weights_hash=weights, **kwargs)
    rec.save(path)
    return rec


def check_same_model(*records: ExitRecord) -> None:
    """Refuse records of different models (e.g. thresholds from one model's validation set on another's test set)."""
    keys = {r.model_key() for r in records}
    if len(keys) > 1:
        raise ConfigError(f"records come from different models (weights {', '.join(sorted(keys))}): use the "
                          "validation and test records of one model")
