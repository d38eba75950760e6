"""Policy networks: which exit should answer? (thesis ch. 4; paper §4–5; SPEC §6). D_ee labels from ExitRecords.

D_ee pairs each sample with the exit that "should" classify it; samples that no exit gets right are dropped (the
count is reported). Its training set comes from D's *validation* record, its test set from D's *test* record.

Labels:
- ``first``: the first correct exit;
- ``score`` (Eq 4.1–4.2): score_i = 1 / (λ · flops_i · 10⁻⁶) + conf_i when exit i is correct, else 0;
  label = argmax_i score_i (flops in FLOPs, so flops·10⁻⁶ is MFLOPs; conf = max softmax). Small λ favours cheap exits,
  large λ favours confident ones;
- ``binary`` (paper Eq 6): the score method with only the first and the last exit allowed to score (label 0 = first,
  1 = last).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import ConfigError
from .records import ExitRecord

LABELINGS = ("first", "score", "binary")


@dataclass
class ExitLabels:
    """D_ee labels of one record: ``rows`` (record rows kept), ``labels`` (0-based; for ``binary`` 0/1), ``dropped``."""

    rows: torch.Tensor
    labels: torch.Tensor
    dropped: int
    num_labels: int
    method: str
    lam: float | None

    def distribution(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=self.num_labels) / max(1, len(self.labels))


def _check_lam(lam) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not np.isfinite(lam) or lam <= 0:
        raise ConfigError(f"λ (lam) must be a finite number > 0, got {lam!r}")
    return float(lam)


def scores(rec: ExitRecord, lam: float) -> torch.Tensor:
    """``[N, E]`` Eq 4.1 scores (0 where the exit is wrong)."""
    lam = _check_lam(lam)
    conf = rec.probs.max(-1).values.double()
    s = 1.0 / (lam * rec.flops.double() * 1e-6) + conf
    return torch.where(rec.correct, s, torch.zeros_like(s))


def exit_labels(rec: ExitRecord, method: str = "score", lam: float = 5.0) -> ExitLabels:
    """D_ee labels for every sample some exit gets right (see the module docstring)."""
    if method not in LABELINGS:
        raise ConfigError(f"unknown D_ee labelling {method!r}: choose one of {', '.join(LABELINGS)}")
    correct = rec.correct
    if method == "binary":
        correct = correct[:, [0, -1]]
    keep = correct.any(1)
    rows = torch.nonzero(keep).squeeze(1)
    if method == "first":
        labels = correct.int().argmax(1)
        lam_used = None
    else:
        s = scores(rec, lam)
        if method == "binary":
            s = s[:, [0, -1]]
        labels = s.argmax(1)
        lam_used = float(lam)
    n_labels = 2 if method == "binary" else rec.num_exits
    return ExitLabels(rows, labels[rows], int((~keep).sum()), n_labels, method, lam_used)


def class_weights(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Eq 4.3: w_y = max(C) / C[y], C the count of each label in the training set (absent labels get weight 0)."""
    counts = torch.bincount(labels, minlength=num_labels).double()
    w = torch.where(counts > 0, counts.max() / counts.clamp_min(1), torch.zeros_like(counts))
    return w.float()
