"""D_ee labels on hand-made records, checked on paper."""

import pytest
import torch
from test_exits_overthinking import make_record

from overthink_lib.analysis.policy import class_weights, exit_labels, scores
from overthink_lib.config import ConfigError

# FLOPs 1, 2, 4 MFLOPs → 1/(λ·MFLOPs) = 1/λ, 1/(2λ), 1/(4λ)
FLOPS = [1e6, 2e6, 4e6]
CORRECT = [[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 1]]
CONF = [[0.60, 0.90, 0.99], [0.60, 0.55, 0.99], [0.9, 0.9, 0.70], [0.9, 0.9, 0.9], [0.51, 0.9, 0.99]]


def rec():
    return make_record(CORRECT, CONF, FLOPS)


def test_first_correct_labels_and_dropped_count():
    lab = exit_labels(rec(), "first")
    assert lab.rows.tolist() == [0, 1, 2, 4] and lab.labels.tolist() == [0, 1, 2, 0] and lab.dropped == 1


@pytest.mark.parametrize(
    "lam, expected",
    [
        # λ = 1: s0 1.60 / 1.40 / 1.24 → 0; s1 0 / 1.05 / 1.24 → 2; s2 → 2; s4 1.51 / 0 / 1.24 → 0
        (1.0, [0, 2, 2, 0]),
        # λ = 2: s0 1.10 / 1.15 / 1.115 → 1; s1 0 / .80 / 1.115 → 2; s2 → 2; s4 1.01 / 0 / 1.115 → 2
        (2.0, [1, 2, 2, 2]),
        # λ = 5: s0 .80 / 1.00 / 1.04 → 2; s1 0 / .65 / 1.04 → 2; s4 .71 / 0 / 1.04 → 2
        (5.0, [2, 2, 2, 2]),
    ],
)
def test_score_labels_for_several_lambdas(lam, expected):
    lab = exit_labels(rec(), "score", lam)
    assert lab.labels.tolist() == expected and lab.dropped == 1
    s = scores(rec(), lam)
    assert s[3].tolist() == [0, 0, 0]
    assert s[0, 0].item() == pytest.approx(1 / lam + 0.6, rel=1e-6)


def test_score_labels_small_lambda_prefer_early_exits():
    lab = exit_labels(rec(), "score", 0.1)  # 1/(0.1·MFLOPs) dominates: the cheapest correct exit wins
    assert lab.labels.tolist() == exit_labels(rec(), "first").labels.tolist()


def test_binary_labels():
    lab = exit_labels(rec(), "binary", 1.0)
    # only exits 1 and 3 may score: s0 1.60 vs 1.24 → 0; s1 0 vs 1.24 → 1; s2 → 1; s3 dropped; s4 1.51 vs 1.24 → 0
    assert lab.rows.tolist() == [0, 1, 2, 4] and lab.labels.tolist() == [0, 1, 1, 0] and lab.num_labels == 2
    assert lab.dropped == 1 and lab.dropped_middle == 0  # s3: no exit right
    # only the middle exit right: Eq 6 scores it 0 at both ends; dropped and counted apart (not labelled "first")
    mid = exit_labels(make_record([[0, 1, 0], [0, 0, 0], [1, 1, 0]], [[0.9, 0.9, 0.9]] * 3, FLOPS), "binary")
    assert mid.rows.tolist() == [2] and mid.labels.tolist() == [0]
    assert mid.dropped == 2 and mid.dropped_middle == 1
    assert exit_labels(rec(), "score").dropped_middle == 0


def test_class_weights_eq_4_3():
    w = class_weights(torch.tensor([0, 0, 0, 0, 1, 1, 2]), 4)
    assert w.tolist() == pytest.approx([1.0, 2.0, 4.0, 0.0])


def test_bad_lambda_and_method():
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ConfigError, match="must be a finite number > 0"):
            exit_labels(rec(), "score", bad)
    with pytest.raises(ConfigError, match="unknown D_ee labelling"):
        exit_labels(rec(), "last")


def test_label_distribution_by_lambda_on_paper():
    from overthink_lib.analysis.policy import label_distribution

    table = label_distribution(rec(), "score", [1.0, 5.0])
    # λ = 1: labels [0, 2, 2, 0] → exit 1 half, exit 2 none, exit 3 half; λ = 5: all exit 3 (see the table above)
    assert table["share"].tolist() == [0.5, 0.0, 0.5, 0.0, 0.0, 1.0]
    assert table["label"].tolist() == [1, 2, 3] * 2 and table["lambda"].tolist() == [1.0] * 3 + [5.0] * 3
    assert (table["dropped"] == 1).all()  # sample 3: no exit right
