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

Class-only baselines (:func:`class_baseline`): the D_ee label predicted from the sample's class alone (its true class,
or the class exit 1 predicts, which is known at inference time), fitted on D_ee's training set. A policy network whose
balanced accuracy does not exceed theirs (:func:`paired_balanced_difference`, a paired bootstrap over the same test
samples) has learned nothing the class does not already tell. At large λ Eq 4.1's cost term hardly separates the
exits, so the binary label becomes "which end is more confident", a property that can be largely one of the class.
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

#: λ of the thesis's binary policies (§4, Eq 6 labels): CIFAR-100 at λ = 5, SVHN at λ = 20. Any other dataset gets
#: the thesis's default λ = 5 (:data:`DEFAULT_LAMBDA`); see :func:`thesis_binary_lambda`.
THESIS_BINARY_LAMBDA = {"cifar100": 5.0, "svhn": 20.0}
#: The thesis's binary policies' test accuracy at those λ (chance 50 %): dataset → (λ, accuracy as a fraction).
THESIS_BINARY_ACCURACY = {"cifar100": (5.0, 0.4325), "svhn": (20.0, 0.4992)}


def thesis_binary_lambda(dataset: str) -> float:
    """The λ at which the thesis trains the binary policy on ``dataset`` (:data:`THESIS_BINARY_LAMBDA`); for a
    dataset the thesis did not use, its default λ = 5 (:data:`DEFAULT_LAMBDA`)."""
    if not isinstance(dataset, str):
        raise ConfigError(f"the dataset must be given by its name (a string), got {dataset!r}")
    return float(THESIS_BINARY_LAMBDA.get(dataset, DEFAULT_LAMBDA))


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

    def balanced(rows: np.ndarray) -> float:
        return _balanced(t, p, num_labels, rows)

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


def _balanced(t: np.ndarray, p: np.ndarray, num_labels: int, rows: np.ndarray) -> float:
    """Balanced accuracy (mean recall over the labels present in ``rows``) of predictions ``p`` of labels ``t``."""
    tt, hit = t[rows], t[rows] == p[rows]
    counts = np.bincount(tt, minlength=num_labels)
    present = counts > 0
    return float((np.bincount(tt, weights=hit, minlength=num_labels)[present] / counts[present]).mean())


def _label_array(x, num_labels: int, what: str) -> np.ndarray:
    """``x`` (a tensor or array of labels) as a 1-D int64 array, each in 0 .. num_labels − 1."""
    a = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise ConfigError(f"{what} must be a 1-D array of integer labels, got shape {a.shape} of {a.dtype}")
    if len(a) and (a.min() < 0 or a.max() >= num_labels):
        raise ConfigError(f"{what} must lie in 0 .. {num_labels - 1} ({num_labels} labels), got {a.min()} .. {a.max()}")
    return a.astype(np.int64)


def _checked_pair(preds, truth, num_labels) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
        raise ConfigError(f"num_labels must be an integer >= 1, got {num_labels!r}")
    t = _label_array(truth, int(num_labels), "the true labels")
    p = _label_array(preds, int(num_labels), "the predictions")
    if len(p) != len(t):
        raise ConfigError(f"{len(p)} predictions for {len(t)} true labels: give one prediction per test sample")
    if len(t) == 0:
        raise ConfigError("no test samples: balanced accuracy needs at least one")
    return t, p


def balanced_accuracy(preds, truth, num_labels: int, *, n_boot: int = 2000, seed: int = 0):
    """Balanced accuracy (mean per-label recall, as :func:`evaluate_policy` computes it) of ``preds`` against
    ``truth`` (1-D integer labels in 0 .. ``num_labels`` − 1), as ``(estimate, low, high)`` with a bootstrap 95 % CI
    over test samples."""
    from .stats import bootstrap_statistic

    t, p = _checked_pair(preds, truth, num_labels)
    return bootstrap_statistic(lambda rows: _balanced(t, p, int(num_labels), rows), len(t), n_boot=n_boot, seed=seed)


def paired_balanced_difference(preds_a, preds_b, truth, num_labels: int, *, n_boot: int = 2000, seed: int = 0):
    """Balanced accuracy of ``preds_a`` minus that of ``preds_b`` on the same test samples (``truth``), as
    ``(estimate, low, high)``: a *paired* bootstrap 95 % CI, each resample drawing test rows once and scoring both
    predictors on them (what the two share, the samples, cancels; an unpaired CI would count it twice)."""
    from .stats import bootstrap_statistic

    t, a = _checked_pair(preds_a, truth, num_labels)
    _, b = _checked_pair(preds_b, truth, num_labels)
    k = int(num_labels)
    return bootstrap_statistic(
        lambda rows: _balanced(t, a, k, rows) - _balanced(t, b, k, rows), len(t), n_boot=n_boot, seed=seed
    )


#: What a class-only baseline reads: the sample's true class, or the class exit 1 predicts (known at inference time).
BASELINE_CLASSES = ("true", "exit1")


@dataclass
class ClassBaseline:
    """A D_ee label predicted from one class per sample (:func:`class_baseline`).

    Attributes:
        by: ``"true"`` (the sample's true class) or ``"exit1"`` (the class exit 1 predicts).
        label_of_class: ``[C]`` the label given to each class: the label-frequency-weighted majority of its D_ee
            training samples (classes without any get ``fallback``).
        plain_of_class: ``[C]`` the same by plain (unweighted) majority.
        preds: ``[n]`` the label predicted for each D_ee test sample (in ``labels_test.rows`` order).
        plain_preds: ``[n]`` the same by plain majority.
        fallback: the label of classes without D_ee training samples (the training set's majority label).
        unseen: D_ee test samples whose class has no D_ee training sample (they get ``fallback``).
    """

    by: str
    label_of_class: np.ndarray
    plain_of_class: np.ndarray
    preds: torch.Tensor
    plain_preds: torch.Tensor
    fallback: int
    unseen: int

    @property
    def differs(self) -> bool:
        """Whether the plain majority predicts some test sample differently from the weighted one."""
        return not torch.equal(self.preds, self.plain_preds)


def _check_dee(rec: ExitRecord, lab: ExitLabels, what: str) -> None:
    if not isinstance(lab, ExitLabels):
        raise ConfigError(
            f"the {what} D_ee labels must be ExitLabels (policy.exit_labels(...)), got {type(lab).__name__}"
        )
    rows = lab.rows
    if rows.ndim != 1 or len(rows) != len(lab.labels):
        raise ConfigError(f"the {what} D_ee labels hold {len(lab.labels)} labels for {len(rows)} rows: make them again")
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= rec.num_samples):
        raise ConfigError(
            f"the {what} D_ee rows reach row {int(rows.max())} of a record of {rec.num_samples} samples:"
            " give the record the labels were made from"
        )
    _label_array(lab.labels, lab.num_labels, f"the {what} D_ee labels")


def _sample_classes(rec: ExitRecord, rows: torch.Tensor, by: str) -> np.ndarray:
    if by == "true":
        return rec.labels[rows].numpy().astype(np.int64)
    return rec.logits[rows, 0].argmax(-1).numpy().astype(np.int64)  # exit 1's predicted class


def class_baseline(
    rec_train: ExitRecord, labels_train: ExitLabels, rec_test: ExitRecord, labels_test: ExitLabels, by: str = "true"
) -> ClassBaseline:
    """The D_ee label predicted from a class alone: fitted on D_ee's training set (``rec_train``'s rows
    ``labels_train.rows`` with ``labels_train.labels``), applied to its test set (``rec_test``, ``labels_test``).

    ``by="true"``: each sample's true class; ``"exit1"``: the class exit 1 predicts (``rec.logits[:, 0]``), which an
    exit policy could read at inference time. Each class gets the label with the most training samples of that class
    after weighting each label by 1 / its count in the whole training set, the weighting of the policy's class-weighted
    loss (Eq 4.3, w_y ∝ 1 / count_y): the label that maximises the training set's balanced accuracy, whose sum over
    labels of recall decomposes into one term per class. Ties go to the lower label; a class without D_ee training
    samples gets the training set's majority label. The plain (unweighted) per-class majority is returned beside it.
    Returns a :class:`ClassBaseline`."""
    if by not in BASELINE_CLASSES:
        raise ConfigError(f"unknown class-only baseline {by!r}: choose one of {', '.join(BASELINE_CLASSES)}")
    _check_dee(rec_train, labels_train, "training")
    _check_dee(rec_test, labels_test, "test")
    if labels_train.num_labels != labels_test.num_labels:
        raise ConfigError(
            f"the training D_ee has {labels_train.num_labels} labels, the test D_ee {labels_test.num_labels}:"
            " make both with the same labelling"
        )
    if rec_train.num_classes != rec_test.num_classes:
        raise ConfigError(
            f"the training record has {rec_train.num_classes} classes, the test record {rec_test.num_classes}:"
            " give records of the same model and dataset"
        )
    if len(labels_train.rows) == 0:
        raise ConfigError("the training D_ee is empty: a class-only baseline needs training samples")
    n_cls, k = rec_train.num_classes, labels_train.num_labels
    counts = np.zeros((n_cls, k))  # [C, labels] D_ee training samples of each class and label
    np.add.at(counts, (_sample_classes(rec_train, labels_train.rows, by), labels_train.labels.numpy()), 1)
    per_label = counts.sum(0)  # [labels] training count of each label
    weighted = counts / np.maximum(per_label, 1)  # an absent label weighs 0, as in class_weights
    fallback = int(per_label.argmax())
    seen = counts.sum(1) > 0
    label_of = np.where(seen, weighted.argmax(1), fallback)
    plain_of = np.where(seen, counts.argmax(1), fallback)
    test_cls = _sample_classes(rec_test, labels_test.rows, by)
    return ClassBaseline(
        by,
        label_of,
        plain_of,
        torch.from_numpy(label_of[test_cls]).long(),
        torch.from_numpy(plain_of[test_cls]).long(),
        fallback,
        int((~seen[test_cls]).sum()),
    )


def class_baseline_comparison(
    rec_train: ExitRecord,
    labels_train: ExitLabels,
    rec_test: ExitRecord,
    labels_test: ExitLabels,
    preds: torch.Tensor,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """A policy's D_ee test predictions ``preds`` (in ``labels_test.rows`` order) beside both class-only baselines.

    Returns ``{"baselines": {by: ClassBaseline}, "balanced": {by: (est, low, high)}, "plain_balanced": {by: CI, or
    None where the plain majority predicts as the weighted one}, "difference": {by: (est, low, high)}}``, ``by`` over
    :data:`BASELINE_CLASSES`; ``difference`` is the policy's balanced accuracy minus the baseline's, paired over the
    same test samples (:func:`paired_balanced_difference`). Fractions; bootstrap 95 % CIs."""
    truth, k = labels_test.labels, labels_test.num_labels
    out: dict = {"baselines": {}, "balanced": {}, "plain_balanced": {}, "difference": {}}
    for by in BASELINE_CLASSES:
        b = class_baseline(rec_train, labels_train, rec_test, labels_test, by)
        out["baselines"][by] = b
        out["balanced"][by] = balanced_accuracy(b.preds, truth, k, n_boot=n_boot, seed=seed)
        out["plain_balanced"][by] = (
            balanced_accuracy(b.plain_preds, truth, k, n_boot=n_boot, seed=seed) if b.differs else None
        )
        out["difference"][by] = paired_balanced_difference(preds, b.preds, truth, k, n_boot=n_boot, seed=seed)
    return out


def beyond_class_verdict(lam: float, policy_balanced, difference, baseline: str = "the true class") -> str:
    """One sentence on whether the policy learns more than the class: ``policy_balanced`` its balanced accuracy and
    ``difference`` its paired difference from a class-only baseline, each ``(estimate, low, high)`` fractions;
    judged by whether the difference's CI excludes 0."""
    from .stats import fmt_ci

    est, lo, hi = (float(v) for v in difference)
    head = f"At λ = {lam:.3g} the policy's {policy_balanced[0] * 100:.1f} % balanced accuracy is"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{head} {est * 100:.1f} points from what {baseline} alone gives, without a CI (too few test samples)"
    if lo > 0:
        return (
            f"{head} {fmt_ci(est, lo, hi, digits=1)} points above what {baseline} alone gives: it learns more than "
            "the class"
        )
    if hi < 0:
        return (
            f"{head} {fmt_ci(-est, -hi, -lo, digits=1)} points below what {baseline} alone gives: the class alone "
            "predicts the label better than the policy"
        )
    return (
        f"{head} within the class-only baseline ({fmt_ci(est, lo, hi, digits=1)} points from what {baseline} alone "
        "gives): it does not measurably learn more than the class"
    )


def thesis_binary_comparison(dataset: str, results: dict) -> str:
    """Our binary policies beside the thesis's (43.25 % on CIFAR-100 at λ = 5, 49.92 % on SVHN at λ = 20; chance
    50 %: no better than chance). ``results``: λ → the policy's balanced accuracy ``(estimate, low, high)``. A λ
    contradicts the thesis when its CI's lower bound exceeds chance (50 %). Returns one sentence."""
    thesis = "the thesis reports 43.25 % (CIFAR-100, λ = 5) and 49.92 % (SVHN, λ = 20), chance 50 %: no learning"
    parts = []
    for lam, (est, lo, hi) in results.items():
        if lo > 0.5:
            what = "above chance: contradicts it"
        elif hi < 0.5:
            what = "below chance, as the thesis's 43.25 %"
        else:
            what = "within chance: consistent with it"
        parts.append(f"at λ = {lam:.3g}, {fmt_pct(est, lo, hi)} % ({what})")
    where = (
        f"on {dataset} (the thesis's dataset, its λ = {THESIS_BINARY_ACCURACY[dataset][0]:g})"
        if dataset in THESIS_BINARY_ACCURACY
        else f"on {dataset}, a dataset the thesis did not use (so this tests its finding, not its number)"
    )
    return f"{thesis[0].upper()}{thesis[1:]}. Ours {where}: " + "; ".join(parts) + "."


def fmt_pct(est: float, lo: float, hi: float) -> str:
    """``"79.1 [77.0, 81.2]"``: a fraction and its CI in percent, one decimal."""
    from .stats import fmt_ci

    return fmt_ci(est, lo, hi, digits=1)


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
