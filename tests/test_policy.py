"""Policy networks: D_ee sets, errors, evaluation against chance and majority, the shuffled control, exit policy."""

import numpy as np
import pytest
import torch
from test_exits_overthinking import make_record as hand_record

from helpers import random_set, tiny_spec
from overthink_lib.analysis import policy
from overthink_lib.config import ConfigError
from overthink_lib.experiments.policy import policy_set
from overthink_lib.models import get_model
from overthink_lib.recording import make_record
from overthink_lib.records import ExitRecord
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


def _class_record(classes, exit1_class, num_classes, exits=3):
    """A record whose samples have true ``classes`` and whose exit 1 predicts ``exit1_class`` (later exits: the
    true class)."""
    classes, exit1_class = np.asarray(classes), np.asarray(exit1_class)
    n = len(classes)
    logits = np.zeros((n, exits, num_classes), dtype=np.float32)
    logits[np.arange(n), 0, exit1_class] = 5.0
    for e in range(1, exits):
        logits[np.arange(n), e, classes] = 5.0
    return ExitRecord.from_arrays(logits, classes, flops=[1e6 * (e + 1) for e in range(exits)])


def _labels(y, num_labels=2):
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    return policy.ExitLabels(torch.arange(len(y)), y, 0, num_labels, "binary", 1.0)


def test_class_baseline_is_perfect_where_the_label_is_a_function_of_the_class():
    rng = np.random.default_rng(0)
    cls_tr, cls_te = rng.integers(0, 4, 200), rng.integers(0, 4, 120)
    label_of = np.array([0, 1, 0, 1])  # classes 1 and 3 → the last exit
    # exit 1 always predicts class 2: read from exit 1, the class says nothing
    rec_tr, rec_te = _class_record(cls_tr, np.full(200, 2), 4), _class_record(cls_te, np.full(120, 2), 4)
    lab_tr, lab_te = _labels(label_of[cls_tr]), _labels(label_of[cls_te])
    true = policy.class_baseline(rec_tr, lab_tr, rec_te, lab_te, "true")
    assert true.label_of_class.tolist() == [0, 1, 0, 1] and torch.equal(true.preds, lab_te.labels)
    assert not true.differs and true.unseen == 0
    assert policy.balanced_accuracy(true.preds, lab_te.labels, 2, n_boot=100) == (1.0, 1.0, 1.0)
    ex1 = policy.class_baseline(rec_tr, lab_tr, rec_te, lab_te, "exit1")
    assert len(set(ex1.preds.tolist())) == 1  # one class seen: one label for all
    assert policy.balanced_accuracy(ex1.preds, lab_te.labels, 2, n_boot=100)[0] == pytest.approx(0.5)
    # exit 1 predicting the true class gives the same as the true class
    rec_te1 = _class_record(cls_te, cls_te, 4)
    assert torch.equal(
        policy.class_baseline(_class_record(cls_tr, cls_tr, 4), lab_tr, rec_te1, lab_te, "exit1").preds, lab_te.labels
    )
    # a perfect policy: no better than the class (paired difference exactly 0), and the verdict says so
    cmp = policy.class_baseline_comparison(rec_tr, lab_tr, rec_te, lab_te, lab_te.labels.clone(), n_boot=100)
    assert cmp["balanced"]["true"] == (1.0, 1.0, 1.0) and cmp["difference"]["true"] == (0.0, 0.0, 0.0)
    assert cmp["difference"]["exit1"][0] == pytest.approx(0.5) and cmp["plain_balanced"]["true"] is None
    v = policy.beyond_class_verdict(107.0, (1.0, 1.0, 1.0), cmp["difference"]["true"])
    assert v.startswith("At λ = 107 the policy's 100.0 % balanced accuracy is within the class-only baseline (0.0")
    assert v.endswith("it does not measurably learn more than the class")
    v = policy.beyond_class_verdict(5.0, (1.0, 1.0, 1.0), cmp["difference"]["exit1"], "exit 1's predicted class")
    assert (
        "50.0 [" in v and "points above what exit 1's predicted class alone gives: it learns more than the class" in v
    )


def test_class_baseline_is_at_chance_where_the_label_ignores_the_class():
    rng = np.random.default_rng(1)
    n = 4000
    cls_tr, cls_te = rng.integers(0, 5, n), rng.integers(0, 5, n)
    rec_tr, rec_te = _class_record(cls_tr, cls_tr, 5), _class_record(cls_te, cls_te, 5)
    lab_tr, lab_te = _labels(rng.integers(0, 2, n)), _labels(rng.integers(0, 2, n))
    for by in policy.BASELINE_CLASSES:
        b = policy.class_baseline(rec_tr, lab_tr, rec_te, lab_te, by)
        est, lo, hi = policy.balanced_accuracy(b.preds, lab_te.labels, 2, n_boot=300, seed=0)
        assert abs(est - 0.5) < 0.03 and lo < 0.5 < hi, (by, est, lo, hi)


def test_class_baseline_weighs_labels_as_the_policy_loss_does():
    # class 0: three "first", two "last"; class 1: five "first". Overall 8 "first", 2 "last": weighted by 1 / count,
    # class 0's two "last" (2 / 2) outweigh its three "first" (3 / 8); the plain majority says "first"
    cls = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    y = [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    rec = _class_record(cls, cls, 3)
    b = policy.class_baseline(rec, _labels(y), _class_record([0, 1, 2], [0, 1, 2], 3), _labels([1, 0, 0]), "true")
    assert b.label_of_class.tolist() == [1, 0, 0] and b.plain_of_class.tolist() == [0, 0, 0]
    assert b.fallback == 0 and b.unseen == 1  # class 2 has no training sample: the training majority
    assert b.preds.tolist() == [1, 0, 0] and b.plain_preds.tolist() == [0, 0, 0] and b.differs


def test_paired_balanced_difference_by_hand():
    truth = torch.tensor([0, 0, 1, 1])
    a, b = torch.tensor([0, 0, 1, 0]), torch.tensor([0, 1, 1, 0])  # balanced accuracy 0.75 and 0.5

    def bal(p, rows):  # mean recall over the labels present in the resampled rows
        t, p = truth.numpy()[rows], p.numpy()[rows]
        return np.mean([(p[t == k] == k).mean() for k in np.unique(t)])

    rng = np.random.default_rng(7)
    diffs = [bal(a, r) - bal(b, r) for r in (rng.integers(0, 4, 4) for _ in range(50))]
    est, lo, hi = policy.paired_balanced_difference(a, b, truth, 2, n_boot=50, seed=7)
    assert est == pytest.approx(0.25)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))
    assert policy.balanced_accuracy(a, truth, 2, n_boot=50, seed=7)[0] == pytest.approx(0.75)
    # paired: the same predictor against itself differs by exactly 0 in every resample
    assert policy.paired_balanced_difference(a, a, truth, 2, n_boot=50) == (0.0, 0.0, 0.0)


def test_class_baseline_bad_input():
    rec = _class_record([0, 1, 0], [0, 1, 0], 2)
    lab = _labels([0, 1, 0])
    with pytest.raises(ConfigError, match="unknown class-only baseline 'pred': choose one of true, exit1"):
        policy.class_baseline(rec, lab, rec, lab, "pred")
    with pytest.raises(ConfigError, match="training D_ee has 2 labels, the test D_ee 3"):
        policy.class_baseline(rec, lab, rec, _labels([0, 1, 2], 3))
    with pytest.raises(ConfigError, match="reach row 5 of a record of 3 samples"):
        policy.class_baseline(
            rec, policy.ExitLabels(torch.tensor([0, 5]), torch.tensor([0, 1]), 0, 2, "binary", 1.0), rec, lab
        )
    with pytest.raises(ConfigError, match="training record has 2 classes, the test record 3"):
        policy.class_baseline(rec, lab, _class_record([0, 1, 2], [0, 1, 2], 3), lab)
    with pytest.raises(ConfigError, match="training D_ee is empty"):
        policy.class_baseline(rec, _labels([]), rec, lab)
    with pytest.raises(ConfigError, match="must be ExitLabels"):
        policy.class_baseline(rec, [0, 1, 0], rec, lab)
    with pytest.raises(ConfigError, match="3 predictions for 4 true labels"):
        policy.balanced_accuracy(torch.tensor([0, 1, 0]), torch.tensor([0, 1, 0, 1]), 2)
    with pytest.raises(ConfigError, match=r"the predictions must lie in 0 \.\. 1"):
        policy.paired_balanced_difference(torch.tensor([0, 2]), torch.tensor([0, 1]), torch.tensor([0, 1]), 2)
    with pytest.raises(ConfigError, match="no test samples"):
        policy.balanced_accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 2)
    with pytest.raises(ConfigError, match="num_labels must be an integer"):
        policy.balanced_accuracy(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(ConfigError, match="dataset must be given by its name"):
        policy.thesis_binary_lambda(None)


def test_thesis_lambda_and_comparison_sentences():
    assert policy.thesis_binary_lambda("cifar100") == 5.0 and policy.thesis_binary_lambda("svhn") == 20.0
    assert policy.thesis_binary_lambda("fashion_mnist") == policy.DEFAULT_LAMBDA == 5.0
    s = policy.thesis_binary_comparison("fashion_mnist", {107.0: (0.79, 0.77, 0.81), 5.0: (0.51, 0.48, 0.54)})
    assert "43.25 %" in s and "49.92 %" in s and "a dataset the thesis did not use" in s
    assert "at λ = 107, 79.0 [77.0, 81.0] % (above chance: contradicts it)" in s
    assert "at λ = 5, 51.0 [48.0, 54.0] % (within chance: consistent with it)" in s
    assert "the thesis's dataset, its λ = 20" in policy.thesis_binary_comparison("svhn", {20.0: (0.4, 0.3, 0.45)})
    below = policy.beyond_class_verdict(20.0, (0.6, 0.55, 0.65), (-0.03, -0.05, -0.01))
    assert "3.0 [1.0, 5.0] points below what the true class alone gives: the class alone predicts" in below
