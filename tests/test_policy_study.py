"""Notebook 08's analyses (analysis/policy_study.py) on hand-made Max-Min-like records."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from overthink_lib.analysis import policy, policy_study
from overthink_lib.records import ExitRecord

LEVELS = ("easy", "medium", "hard")


def _record(seed: int, n: int = 90) -> ExitRecord:
    """3 exits, 5 classes; hard composites (level 2) right mostly at the last exit, easy ones at every exit."""
    g = torch.Generator().manual_seed(seed)
    level = torch.arange(n) % 3
    labels = torch.randint(0, 5, (n,), generator=g)
    p_right = torch.tensor([[0.9, 0.9, 0.9], [0.6, 0.7, 0.8], [0.2, 0.4, 0.9]])[level]
    right = torch.rand(n, 3, generator=g) < p_right
    logits = torch.randn(n, 3, 5, generator=g)
    wrong = (labels + 1) % 5
    for k in range(3):
        logits[torch.arange(n), k, torch.where(right[:, k], labels, wrong)] += 5
    return ExitRecord.from_arrays(logits, labels, flops=[1e6, 2e6, 4e6], extras={"level": level}, model="toy")


def test_levels_and_labels_report_what_the_records_hold():
    test, val = _record(0), _record(1)
    lv = policy_study.maxmin_levels(test, LEVELS, n_boot=100, seed=0)
    hard = test.correct[test.extras["level"] == 2].double()
    heads = {k: v for k, v, _, _ in lv["headlines"]}
    assert heads["hard_last_minus_first"][0] == pytest.approx((hard[:, -1] - hard[:, 0]).mean().item())
    assert np.allclose(lv["accuracy"].to_numpy(), policy.accuracy_by_level(test, LEVELS).to_numpy() * 100)
    by = policy_study.labels_by_level(val, 5.0, LEVELS, n_boot=100, seed=0)
    assert list(by["share"].index) == list(LEVELS) and np.allclose(by["share"].sum(axis=1), 100)
    assert [k for k, *_ in by["headlines"]] == ["mean_label_easy", "mean_label_hard"]
    lam = policy_study.labels_by_lambda(val, 5.0, LEVELS)
    assert 5.0 in lam["table"].index and "at lambda = 5.0" in lam["sentence"]


def test_a_policy_run_is_described_and_summarised_from_its_numbers():
    ci = (0.5, 0.4, 0.6)
    result = {
        "accuracy": ci,
        "majority_rate": (0.3, 0.2, 0.4),
        "balanced_accuracy": ci,
        "chance": 0.2,
        "majority_label": 1,
    }
    shuffled = {**result, "accuracy": (0.2, 0.1, 0.3), "balanced_accuracy": (0.2, 0.1, 0.3)}
    labels = SimpleNamespace(dropped=3, dropped_middle=1)

    class Images(list):  # a D_ee set: its length and its dataset's name
        name = "cifar100"

    run = SimpleNamespace(
        policy=result,
        shuffled=shuffled,
        train_set=Images([0] * 60),
        test_set=[0] * 40,
        labels_train=labels,
        labels_test=labels,
    )
    settings = SimpleNamespace(depth=34, width=64, epochs=100, maxmin_epochs=60, lr=0.01)
    lines = policy_study.describe_run(run, settings, "toy")
    assert lines[0] == "toy: policy ResNet-34 width 64, 100 epochs at lr 0.01"  # not Max-Min: the binary recipe
    assert "D_ee train 60 (dropped 3), test 40 (dropped 3)" in lines[1] and "chance 20.00 %" in lines[1]
    table = policy_study.summary([("toy", "binary", run)])
    assert table["verdict"].iloc[0] == policy.verdict(result, shuffled)
    assert [k for k, *_ in policy_study.maxmin_policy_headlines(run)][-1] == "chance"
