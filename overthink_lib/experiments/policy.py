"""The policy protocol (thesis ch. 4, notebook 08): D_ee labels from a trained network's validation record, a policy
ResNet trained on them and its shuffled-label control, evaluated on the test record's D_ee and as an exit rule.

Jobs: each policy network and its control, on the main network (binary labels at the balancing λ and at the thesis's
λ) and on the Max-Min M (score labels at the notebook's λ): six jobs, so that the last minutes keep workers busy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import ConfigError, Preset
from ..data import ImageSet
from ..records import ExitRecord
from .declare import Job, forward_macs, hours, seed_of, sizes
from .params import Param, positive
from .runs import train_config, train_or_load


@dataclass
class PolicyRun:
    """One policy experiment (thesis ch. 4): D_ee labels, the policy and its shuffled-label control, on the test set.

    Attributes:
        labels_train, labels_test: the D_ee labels (:class:`~overthink_lib.analysis.policy.ExitLabels`) of the validation
            record (training set of the policy) and of the test record.
        train_set, test_set: the D_ee image sets.
        policy, shuffled: :func:`~overthink_lib.analysis.policy.evaluate_policy` of the policy and of the control.
        preds: the policy's label for every D_ee test sample.
        exit_policy: the policy used as an exit rule on every test sample (accuracy, expected FLOPs).
    """

    labels_train: Any
    labels_test: Any
    train_set: ImageSet
    test_set: ImageSet
    policy: dict[str, Any]
    shuffled: dict[str, Any]
    preds: torch.Tensor
    exit_policy: dict[str, Any]


def policy_experiment(
    preset: Preset,
    rec_val: ExitRecord,
    rec_test: ExitRecord,
    sets: dict[str, ImageSet],
    method: str,
    lam: float,
    seed: int | None = None,
    *,
    n_boot: int = 1000,
    progress: bool = True,
) -> PolicyRun:
    """Steps 3–4 of the thesis's method on a trained M: D_ee from the validation record (``method`` labels with
    λ = ``lam``), the policy ResNet and its shuffled-label control trained on it (cached runs), both evaluated on
    the test record's D_ee with bootstrap CIs; the policy also as an exit rule for every test sample."""
    from ..analysis.policy import as_exit_policy, evaluate_policy, exit_labels
    from ..train import predict

    seed = preset.seed_or_own(seed)
    lab_tr, d_tr, source = policy_training_set(rec_val, sets["val"], method, lam)
    lab_te = exit_labels(rec_test, method, lam)
    d_te = policy_set(sets["test"], rec_test, lab_te)
    results, preds, exit_policy = {}, None, None
    for shuffle in (False, True):
        m, _, _ = train_policy(preset, d_tr, seed, source=source, shuffle=shuffle, progress=progress)
        p = predict(m, d_te, batch_size=preset.training.eval_batch_size)[0][:, 0].argmax(-1)
        results[shuffle] = evaluate_policy(p, d_te.labels, d_tr.labels, lab_tr.num_labels, n_boot=n_boot, seed=seed)
        if not shuffle:
            preds = p
            all_logits = predict(m, sets["test"], batch_size=preset.training.eval_batch_size)[0]
            exit_policy = as_exit_policy(all_logits[:, 0].argmax(-1), rec_test, method)
    return PolicyRun(lab_tr, lab_te, d_tr, d_te, results[False], results[True], preds, exit_policy)


def policy_set(split_set: ImageSet, rec: ExitRecord, labels):
    """The images of ``split_set`` that D_ee keeps, labelled with their D_ee labels (``labels``: an
    :class:`~overthink_lib.analysis.policy.ExitLabels`), as an :class:`ImageSet` for training the policy network."""
    if not torch.equal(rec.indices, split_set.indices):
        raise ConfigError(
            "the record and the dataset split do not hold the same samples in the same order: make the "
            "record from this split"
        )
    if len(labels.rows) == 0:
        raise ConfigError(
            f"D_ee is empty: no exit classifies any sample of {split_set.name}/{split_set.split} correctly"
        )
    sub = split_set.subset(labels.rows)
    return ImageSet(
        sub.name,
        sub.split,
        sub.images,
        labels.labels.clone(),
        sub.indices,
        labels.num_labels,
        sub.mean,
        sub.std,
        {},
        sub.extras,
        {**sub.info, "dee": {"method": labels.method, "lam": labels.lam, "dropped": labels.dropped}},
        tuple(f"exit {i + 1}" for i in range(labels.num_labels))
        if labels.method != "binary"
        else ("first exit", "last exit"),
    )


def policy_training_set(rec_val: ExitRecord, val_set: ImageSet, method: str, lam: float):
    """The policy's training data of :func:`policy_experiment`: the validation record's D_ee labels (``method``,
    λ = ``lam``), the D_ee image set, and the ``source`` tag that names its policy runs (for :func:`train_policy`).
    Returns (labels, D_ee set, source)."""
    import hashlib

    from ..analysis.policy import check_training_record, exit_labels

    check_training_record(rec_val)
    labels = exit_labels(rec_val, method, lam)
    # the D_ee set itself (which samples, which labels) names the run: a record's model name alone may be "unknown"
    # or anything a file says, and two records must never share a trained policy
    dee = hashlib.sha256(rec_val.indices[labels.rows].numpy().tobytes() + labels.labels.numpy().tobytes()).hexdigest()
    # float(lam): λ = 10 given as an integer (``--param lam=10``) names the same runs as 10.0
    return labels, policy_set(val_set, rec_val, labels), f"{rec_val.model_key()}-{method}-{float(lam)}-{dee[:12]}"


def train_policy(
    preset: Preset, train_set: ImageSet, seed: int | None, *, source: str, shuffle: bool = False, progress: bool = True
):
    """Train the preset's policy ResNet on a D_ee set (class-weighted CE, Eq 4.3); ``shuffle``: the permuted-label
    control. ``source`` (e.g. the record's weights hash) goes into the run's hash, so new labels train anew.
    At ``preset.policy.lr``, for ``preset.policy.epochs`` epochs, or ``preset.policy.maxmin_epochs`` (when set) on
    Max-Min composites (a D_ee set of the dataset ``maxmin``): the thesis trains that policy 60 epochs, the binary
    one 100."""
    from ..analysis.policy import class_weights, shuffled, weighted_ce

    seed = preset.seed_or_own(seed)
    data = shuffled(train_set, seed) if shuffle else train_set
    spec = {
        "name": "policy_resnet",
        "kwargs": {
            "depth": preset.policy.depth,
            "width": preset.policy.width,
            "in_channels": train_set.channels,
            "num_classes": train_set.num_classes,
        },
    }
    pol = preset.policy
    epochs = pol.maxmin_epochs if (pol.maxmin_epochs and train_set.name == "maxmin") else pol.epochs
    cfg = train_config(
        preset,
        epochs,
        seed,
        lr=pol.lr,
        augment=False,
        milestones=(0.5, 0.75) if preset.training.lr_schedule == "step" else (),
    )
    weights = class_weights(data.labels, data.num_classes)
    model, hist, run = train_or_load(
        preset,
        spec,
        cfg,
        {"train": data},
        progress=progress,
        tag=f"{source}-{'shuffled' if shuffle else 'true'}",
        loss_fn=weighted_ce(weights),
        extra={"class_weights": weights.tolist()},
    )
    return model, hist, run


# ---- the jobs ahead of the notebook: each policy network and its shuffled-label control ----


def _binary_data(preset: Preset, params: dict[str, Any]):
    from ..analysis import policy
    from .main import main_experiment

    exp = main_experiment(preset, seed_of(preset, params))
    return exp.records["val"], exp.splits["val"], "binary", policy.balancing_lambda(exp.records["val"])


def _thesis_binary_data(preset: Preset, params: dict[str, Any]):
    """Notebook 08's second binary policy: the same D_ee rows, labelled at the thesis's λ for the dataset."""
    from ..analysis import policy
    from .main import main_experiment

    exp = main_experiment(preset, seed_of(preset, params))
    return exp.records["val"], exp.splits["val"], "binary", policy.thesis_binary_lambda(preset.datasets[0])


def _maxmin_data(preset: Preset, params: dict[str, Any]):
    from ..analysis.policy import DEFAULT_LAMBDA
    from .maxmin import maxmin_experiment

    mmx = maxmin_experiment(preset, seed_of(preset, params))
    return mmx.records["val"], mmx.splits["val"], "score", float(params.get("lam", DEFAULT_LAMBDA))


def _policy_run(data, shuffle: bool):
    """Train the policy network of :func:`policy_experiment` on ``data(preset, params)`` (``shuffle``: its
    shuffled-label control); the notebook evaluates both from the cached runs."""

    def run(preset: Preset, params: dict[str, Any], item: str) -> None:
        rec_val, val_set, method, lam = data(preset, params)
        _, d_tr, source = policy_training_set(rec_val, val_set, method, lam)
        train_policy(preset, d_tr, seed_of(preset, params), source=source, shuffle=shuffle)

    return run


def _binary_hours(preset: Preset, params: dict[str, Any], item: str) -> float:
    # the binary D_ee keeps the samples exit 1 or the last exit gets right, whatever λ labels them, so the
    # balancing-λ and the thesis-λ policies (and their controls) train on as many images: the validation split
    pol = preset.policy
    _, val, shape, _ = sizes(preset)
    return hours(
        forward_macs("policy_resnet", shape, depth=pol.depth, width=pol.width, num_classes=2), val, 0, pol.epochs
    )


def _maxmin_hours(preset: Preset, params: dict[str, Any], item: str) -> float:
    from .maxmin import maxmin_macs

    pol, mm = preset.policy, preset.maxmin
    macs = maxmin_macs(preset, "policy_resnet", depth=pol.depth, width=pol.width, num_classes=5)
    return hours(macs, mm.sizes.val, 0, pol.maxmin_epochs or pol.epochs)


#: Notebook 08's λ of the Max-Min score labels (Eq 4.1): the Max-Min policy's job trains at it.
PARAMS: tuple[Param, ...] = (Param("lam", float, positive("lam"), job=True),)

JOBS = tuple(
    Job(
        f"policy-{kind}{'-control' if shuffle else ''}",
        (after,),
        ("08",),
        _policy_run(data, shuffle),
        cost,
        per_dataset=per,
    )
    for kind, after, data, cost, per in (
        ("binary", "main", _binary_data, _binary_hours, True),
        # the same at the thesis's fixed λ (analysis.policy.thesis_binary_lambda), beside the balancing λ
        ("binary-thesis", "main", _thesis_binary_data, _binary_hours, True),
        ("maxmin", "maxmin", _maxmin_data, _maxmin_hours, False),
    )
    for shuffle in (False, True)
)
