"""Policy networks: which exit should answer? (thesis ch. 4 and App. B §4–5). D_ee labels from ExitRecords.

D_ee pairs each sample with the exit that "should" classify it; samples that no exit gets right are dropped (the
count is reported). Its training set comes from D's *validation* record, its test set from D's *test* record.

Labels:
- ``first``: the first correct exit;
- ``score`` (Eq 4.1–4.2): score_i = 1 / (λ · flops_i · 10⁻⁶) + conf_i when exit i is correct, else 0;
  label = argmax_i score_i (flops in FLOPs, so flops·10⁻⁶ is MFLOPs; conf = max softmax). Small λ favours cheap exits,
  large λ favours confident ones;
- ``binary`` (paper Eq 6): the score method with only the first and the last exit allowed to score (label 0 = first,
  1 = last). Samples that only middle exits get right score 0 at both ends; Eq 6 read literally would label them by
  argmax over two zeros, i.e. "first" by the tie rule, an artefact of the implementation rather than a statement
  about the sample. We drop them, like the samples no exit gets right, and count them apart
  (``ExitLabels.dropped_middle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config import ConfigError
from ..records import ExitRecord

if TYPE_CHECKING:  # for annotations only: pandas loads when a table is built
    import pandas as pd

LABELINGS = ("first", "score", "binary")


@dataclass
class ExitLabels:
    """D_ee labels of one record: ``rows`` (record rows kept), ``labels`` (0-based; for ``binary`` 0/1), ``dropped``
    (samples left out), of which ``dropped_middle`` (``binary`` only) some middle exit gets right."""

    rows: torch.Tensor
    labels: torch.Tensor
    dropped: int
    num_labels: int
    method: str
    lam: float | None
    dropped_middle: int = 0

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
    s = 1.0 / (lam * rec.require_flops("the score labels (Eq 4.1)").double() * 1e-6) + conf
    return torch.where(rec.correct, s, torch.zeros_like(s))


#: λ of the score labels (thesis eq. 4.1) where a caller does not choose: the lab's one default (notebooks 06 and 08
#: write it in their parameters cell; tests/test_jobs.py holds them to this value).
DEFAULT_LAMBDA = 5.0


def exit_labels(rec: ExitRecord, method: str = "score", lam: float = DEFAULT_LAMBDA) -> ExitLabels:
    """D_ee labels for every sample some exit gets right (see the module docstring)."""
    if method not in LABELINGS:
        raise ConfigError(f"unknown D_ee labelling {method!r}: choose one of {', '.join(LABELINGS)}")
    correct = rec.correct
    middle = 0
    if method == "binary":
        middle = int((correct.any(1) & ~correct[:, [0, -1]].any(1)).sum())
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
    return ExitLabels(rows, labels[rows], int((~keep).sum()), n_labels, method, lam_used, middle)


def label_distribution(rec: ExitRecord, method: str, lams) -> pd.DataFrame:
    """Share of each D_ee label under each λ: one row per (lambda, label) with ``share`` and ``dropped`` (samples no
    exit gets right, which the score method leaves out)."""
    import pandas as pd

    rows = []
    for lam in lams:
        lab = exit_labels(rec, method, lam)
        rows += [
            {"lambda": lam, "label": i + 1, "share": float(f), "dropped": lab.dropped}
            for i, f in enumerate(lab.distribution())
        ]
    return pd.DataFrame(rows)


def class_weights(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Eq 4.3: w_y = max(C) / C[y], C the count of each label in the training set (absent labels get weight 0)."""
    counts = torch.bincount(labels, minlength=num_labels).double()
    w = torch.where(counts > 0, counts.max() / counts.clamp_min(1), torch.zeros_like(counts))
    return w.float()


def check_training_record(rec: ExitRecord) -> None:
    """D_ee's training set must come from a validation record (thresholds and policies never see the test set)."""
    split = rec.provenance.get("dataset", {}).get("split")
    if split != "val":
        raise ConfigError(
            f"D_ee's training set must come from the validation record, got a record of split {split!r}:"
            " make the model's validation record (python -m overthink_lib record ...)"
        )


def weighted_ce(weights: torch.Tensor):
    """Loss of the shared training loop: class-weighted cross-entropy (Eq 4.3) of the single output."""
    import torch.nn.functional as F

    def loss(outputs, y, idx):
        ce = F.cross_entropy(outputs[0].float(), y, weight=weights.to(y.device))
        return ce, [ce]

    return loss


def shuffled(ds, seed: int):
    """The same images with their labels permuted (the empirical chance level of a policy)."""
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    out = ds.subset(torch.arange(len(ds)))
    out.labels = ds.labels[perm].clone()
    out.info = {**out.info, "shuffled_labels_seed": seed}
    return out


def evaluate_policy(
    preds: torch.Tensor,
    truth: torch.Tensor,
    train_labels: torch.Tensor,
    num_labels: int,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Accuracy, always-the-training-majority rate and balanced accuracy (mean per-label recall), each as
    ``(estimate, low, high)`` with a bootstrap 95 % CI over test samples; uniform chance; the confusion matrix."""
    from .stats import bootstrap_mean, bootstrap_statistic

    ok = (preds == truth).double()
    acc = bootstrap_mean(ok, n_boot=n_boot, seed=seed)
    majority = int(torch.bincount(train_labels, minlength=num_labels).argmax())
    maj = bootstrap_mean((truth == majority).double(), n_boot=n_boot, seed=seed)
    conf = torch.zeros(num_labels, num_labels, dtype=torch.long)
    conf.index_put_((truth, preds), torch.ones_like(truth), accumulate=True)
    t, p = truth.numpy(), preds.numpy()

    def balanced(rows: np.ndarray) -> float:  # mean recall over the labels present in the (resampled) rows
        tt, hit = t[rows], t[rows] == p[rows]
        counts = np.bincount(tt, minlength=num_labels)
        present = counts > 0
        return float((np.bincount(tt, weights=hit, minlength=num_labels)[present] / counts[present]).mean())

    bal = bootstrap_statistic(balanced, len(t), n_boot=n_boot, seed=seed) if len(t) else (float("nan"),) * 3
    return {
        "accuracy": acc,
        "chance": 1.0 / num_labels,
        "majority_label": majority,
        "majority_rate": maj,
        "balanced_accuracy": bal,
        "confusion": conf.numpy(),
        "n": len(truth),
    }


def verdict(policy: dict, shuffled: dict) -> str:
    """Does the policy beat chance and the shuffled-label control? ``policy``, ``shuffled``: :func:`evaluate_policy`
    of the policy and of its shuffled-label control.

    Judged on balanced accuracy (mean per-label recall; the policy is trained with class weights, so plain accuracy
    against the majority label would judge it by a target it was pushed away from): the policy's lower CI bound must
    exceed chance (always answering the majority label has balanced accuracy 1 / labels = chance) and the shuffled
    control's upper CI bound (its balanced accuracy is measured)."""
    lo = policy["balanced_accuracy"][1]
    beats = [lo > policy["chance"], lo > shuffled["balanced_accuracy"][2]]
    crit = "balanced accuracy, lower CI bound vs chance (= majority label) and the shuffled control's upper bound"
    if all(beats):
        return f"beats chance, the majority label and the shuffled control [{crit}]"
    names = ["chance (= majority label)", "the shuffled control"]
    missed = ", ".join(n for n, b in zip(names, beats, strict=True) if not b)
    return f"does not beat {missed} [{crit}]"


def accuracy_by_level(rec: ExitRecord, levels) -> pd.DataFrame:
    """Accuracy (a fraction) of every exit on the samples of every difficulty level: an ``[exits, levels]`` frame
    indexed by exit (1-based, named ``exit``) with a column per level name. ``rec.extras["level"]`` holds each
    sample's level as an index into ``levels`` (the Max-Min records); a level without samples gets NaN."""
    import pandas as pd

    if "level" not in rec.extras:
        raise ConfigError("accuracy by level needs a record with a per-sample 'level' extra (a Max-Min record)")
    level = rec.extras["level"].numpy()
    return pd.DataFrame(
        {name: rec.correct[level == k].double().mean(0).numpy() for k, name in enumerate(levels)},
        index=pd.Index(range(1, rec.num_exits + 1), name="exit"),
    )


def as_exit_policy(preds: torch.Tensor, rec: ExitRecord, method: str) -> dict:
    """Use the policy's predictions as exits for every test sample: accuracy and expected FLOPs on the plane."""
    from .exits import evaluate_exits

    return evaluate_exits(rec, preds.clone() if method != "binary" else torch.where(preds == 0, 0, rec.num_exits - 1))


def balancing_lambda(rec: ExitRecord, grid=None) -> float:
    """The λ of the grid whose binary D_ee labels are closest to 50 / 50 on ``rec``."""
    grid = np.geomspace(0.05, 200, 41) if grid is None else grid
    best = min(grid, key=lambda lam: abs(exit_labels(rec, "binary", float(lam)).distribution()[0] - 0.5))
    return float(best)
