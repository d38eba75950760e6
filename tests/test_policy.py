"""Policy networks: D_ee sets, errors, evaluation against chance and majority, the shuffled control, exit policy."""

import numpy as np
import pytest
import torch
from test_exits_overthinking import make_record as hand_record

from helpers import random_set, tiny_spec
from overthink_lib.analysis import policy
from overthink_lib.config import ConfigError
from overthink_lib.experiment import policy_set
from overthink_lib.models import get_model
from overthink_lib.recording import make_record
from overthink_lib.train import TrainConfig, build_model, fit, predict


@pytest.fixture(scope="module")
def val_and_test():
    model = build_model(tiny_spec(), 0)
    fit(
        model,
        random_set(128),
        None,
        TrainConfig(epochs=3, batch_size=16, lr=0.05, augment=False, schedule="constant"),
        out_dir="/tmp/overthink-test-policy",
        progress=False,
    )
    val, test = random_set(96, seed=1, split="val"), random_set(64, seed=2, split="test")
    return val, test, make_record(model, val), make_record(model, test)


def test_policy_set_keeps_the_dee_rows(val_and_test):
    val, _, rec_val, _ = val_and_test
    policy.check_training_record(rec_val)
    lab = policy.exit_labels(rec_val, "score", 5.0)
    ds = policy_set(val, rec_val, lab)
    assert len(ds) == len(lab.rows) == rec_val.num_samples - lab.dropped
    assert torch.equal(ds.indices, val.indices[lab.rows]) and torch.equal(ds.labels, lab.labels)
    assert ds.num_classes == rec_val.num_exits and ds.info["dee"]["lam"] == 5.0


def test_bad_input(val_and_test):
    _val, test, rec_val, rec_test = val_and_test
    with pytest.raises(ConfigError, match="must come from the validation record, got a record of split 'test'"):
        policy.check_training_record(rec_test)
    with pytest.raises(ConfigError, match="do not hold the same samples"):
        policy_set(test, rec_val, policy.exit_labels(rec_val, "first"))
    nobody = hand_record([[0, 0, 0], [0, 0, 0]], [[0.9] * 3] * 2)
    lab = policy.exit_labels(nobody, "first")
    assert lab.dropped == 2
    two = random_set(2, split="val")
    nobody.indices = two.indices.clone()
    with pytest.raises(ConfigError, match="D_ee is empty"):
        policy_set(two, nobody, lab)


def test_evaluation_against_chance_and_majority():
    truth = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 0, 2])
    train_labels = torch.tensor([2, 2, 2, 0])  # majority label of the training set: 2
    r = policy.evaluate_policy(preds, truth, train_labels, 3, n_boot=200)
    assert r["accuracy"][0] == pytest.approx(0.8) and r["chance"] == pytest.approx(1 / 3)
    assert r["majority_label"] == 2 and r["majority_rate"][0] == pytest.approx(0.5)
    est, lo, hi = r["balanced_accuracy"]
    assert est == pytest.approx((2 / 3 + 1 + 4 / 5) / 3) and lo <= est <= hi
    assert r["confusion"].tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 4]]


def test_shuffled_control_permutes_labels_only():
    ds = random_set(100)
    sh = policy.shuffled(ds, seed=3)
    assert torch.equal(sh.images, ds.images) and not torch.equal(sh.labels, ds.labels)
    assert sorted(sh.labels.tolist()) == sorted(ds.labels.tolist()) and torch.equal(ds.labels, random_set(100).labels)
    assert torch.equal(policy.shuffled(ds, seed=3).labels, sh.labels)


def test_shuffled_control_gives_chance_where_true_labels_are_learnable(tmp_path):
    train, test = random_set(200, classes=4), random_set(80, classes=4, seed=9, split="test")
    cfg = TrainConfig(epochs=8, batch_size=20, lr=0.05, augment=False, schedule="constant")
    w = policy.class_weights(train.labels, 4)
    accs = {}
    for shuffle in (False, True):
        torch.manual_seed(0)
        m = get_model("policy_resnet", depth=18, width=4, in_channels=1, num_classes=4)
        fit(
            m,
            policy.shuffled(train, 1) if shuffle else train,
            None,
            cfg,
            out_dir=tmp_path / str(shuffle),
            loss_fn=policy.weighted_ce(w),
            progress=False,
        )
        preds = predict(m, test)[0][:, 0].argmax(-1)
        accs[shuffle] = (preds == test.labels).double().mean().item()
    assert accs[False] > 0.7 and accs[True] < 0.5, accs


def test_exit_policy_and_balancing_lambda():
    rec = hand_record([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], [[0.9] * 3] * 4, flops=[1e6, 2e6, 4e6])
    r = policy.as_exit_policy(torch.tensor([0, 1, 2, 0]), rec, "score")
    assert r["accuracy"] == pytest.approx(3 / 4) and r["flops"] == pytest.approx((1e6 + 2e6 + 4e6 + 1e6) / 4)
    b = policy.as_exit_policy(torch.tensor([0, 1, 1, 1]), rec, "binary")  # 1 → the last exit
    assert b["fractions"] == pytest.approx([0.25, 0, 0.75]) and b["accuracy"] == pytest.approx(3 / 4)
    lam = policy.balancing_lambda(rec)
    assert 0.05 <= lam <= 200
    assert np.isfinite(policy.exit_labels(rec, "binary", lam).distribution()).all()


def test_verdict_on_balanced_accuracy_against_chance_and_the_shuffled_control():
    def pol(low, chance=0.5):
        return {"balanced_accuracy": (low + 0.05, low, low + 0.1), "chance": chance}

    def ctl(high):
        return {"balanced_accuracy": (high - 0.1, high - 0.2, high)}

    crit = " [balanced accuracy, lower CI bound vs chance (= majority label) and the shuffled control's upper bound]"
    assert policy.verdict(pol(0.6), ctl(0.55)) == "beats chance, the majority label and the shuffled control" + crit
    assert policy.verdict(pol(0.6), ctl(0.6)) == "does not beat the shuffled control" + crit  # ties do not beat
    assert policy.verdict(pol(0.45), ctl(0.4)) == "does not beat chance (= majority label)" + crit
    assert policy.verdict(pol(0.3, chance=0.2), ctl(0.7)) == "does not beat the shuffled control" + crit
    assert policy.verdict(pol(0.4), ctl(0.7)) == "does not beat chance (= majority label), the shuffled control" + crit


def test_accuracy_by_level_per_exit():
    correct = [[1, 1, 1], [0, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 0]]
    rec = hand_record(correct, [[0.9] * 3] * 5, flops=[1e6, 2e6, 4e6])
    rec.extras["level"] = torch.tensor([0, 0, 2, 2, 2])  # two easy, no medium, three hard samples
    acc = policy.accuracy_by_level(rec, ("easy", "medium", "hard"))
    assert list(acc.columns) == ["easy", "medium", "hard"] and acc.index.name == "exit"
    assert acc.index.tolist() == [1, 2, 3]
    assert acc["easy"].tolist() == [0.5, 1.0, 1.0]
    assert acc["hard"].tolist() == pytest.approx([1 / 3, 0.0, 2 / 3])
    assert acc["medium"].isna().all()  # a level without samples
    with pytest.raises(ConfigError, match="'level' extra"):
        policy.accuracy_by_level(hand_record(correct, [[0.9] * 3] * 5, flops=[1e6, 2e6, 4e6]), ("easy",))
