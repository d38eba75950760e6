"""Training: schedules, seeds, checkpoint/resume equality, bad checkpoints, DDP on CPU."""

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import random_set, tiny_spec
from overthink_lib.config import ConfigError
from overthink_lib.train import (
    CHECKPOINT,
    HALFWAY,
    METRICS,
    TrainConfig,
    build_model,
    evaluate,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    multi_exit_loss,
    state_hash,
)


def test_lr_schedules():
    step = TrainConfig(epochs=200, milestones=(75, 150))
    assert [step.lr_at(e * 10, 10) for e in (0, 74, 75, 149, 150, 199)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    official = TrainConfig(epochs=8)  # ×0.1 at 50 % and 75 %
    assert [official.lr_at(e, 1) for e in range(8)] == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    one = TrainConfig(epochs=1, schedule="onecycle")
    lrs = [one.lr_at(s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and max(lrs) == pytest.approx(0.1) and lrs[-1] < 0.002
    with pytest.raises(ConfigError, match="schedule must be"):
        TrainConfig(epochs=1, schedule="cosine")


def test_joint_loss_is_weighted_sum_of_ce():
    outs = [torch.randn(4, 3) for _ in range(2)]
    y = torch.tensor([0, 1, 2, 0])
    total, per = multi_exit_loss(outs, y, (1.0, 0.5))
    ce = [torch.nn.functional.cross_entropy(o, y) for o in outs]
    assert torch.allclose(total, ce[0] + 0.5 * ce[1]) and torch.allclose(per[1], ce[1])
    with pytest.raises(ConfigError, match="exit_weights has 3 entries"):
        multi_exit_loss(outs, y, (1.0, 1.0, 1.0))


def test_init_and_data_seeds_are_separate(tmp_path):
    a, b, c = (build_model(tiny_spec(), s) for s in (0, 0, 1))
    assert state_hash(a) == state_hash(b) != state_hash(c)
    from overthink_lib.data import iterate

    ds = random_set(64)

    def order(seed):
        return torch.cat([i for _, _, i in iterate(ds, 16, shuffle=True, seed=seed)])

    assert torch.equal(order(3), order(3)) and not torch.equal(order(3), order(4))
    # changing only the data seed keeps the initial weights, and changes the trained ones
    cfg0 = TrainConfig(epochs=1, batch_size=16, schedule="constant", lr=0.05, init_seed=0, data_seed=0)
    cfg1 = TrainConfig(epochs=1, batch_size=16, schedule="constant", lr=0.05, init_seed=0, data_seed=1)
    m0, m1 = build_model(tiny_spec(), cfg0.init_seed), build_model(tiny_spec(), cfg1.init_seed)
    assert state_hash(m0) == state_hash(m1)
    fit(m0, ds, None, cfg0, out_dir=tmp_path / "a", progress=False)
    fit(m1, ds, None, cfg1, out_dir=tmp_path / "b", progress=False)
    assert state_hash(m0) != state_hash(m1)


def test_identical_seeds_give_identical_records_and_init_seed_changes_only_weights(tmp_path):
    from overthink_lib.data import iterate
    from overthink_lib.recording import make_record

    ds, test = random_set(64), random_set(32, seed=5, split="test")
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, init_seed=3, data_seed=4)
    recs = []
    for name in ("a", "b"):
        m = build_model(tiny_spec(), cfg.init_seed)
        fit(m, ds, None, cfg, out_dir=tmp_path / name, progress=False)
        recs.append(make_record(m, test))
    assert torch.equal(recs[0].logits, recs[1].logits)
    # vice versa: another init seed gives other initial weights, and the batch order depends on the data seed alone
    assert state_hash(build_model(tiny_spec(), 3)) != state_hash(build_model(tiny_spec(), 5))
    first = [i for _, _, i in iterate(ds, 16, shuffle=True, seed=4)]
    build_model(tiny_spec(), 5)  # drawing other weights does not move the data order
    assert all(torch.equal(a, b) for a, b in zip(first, [i for _, _, i in iterate(ds, 16, shuffle=True, seed=4)]))


def test_resume_reaches_the_same_weights(tmp_path):
    ds, val = random_set(96), random_set(32, seed=1, split="val")
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, schedule="onecycle")
    straight = build_model(tiny_spec(), 0)
    h_straight = fit(straight, ds, val, cfg, out_dir=tmp_path / "straight", progress=False)
    killed = build_model(tiny_spec(), 0)
    fit(killed, ds, val, cfg, out_dir=tmp_path / "resumed", progress=False, stop_after_epoch=1)
    assert load_checkpoint(tmp_path / "resumed" / CHECKPOINT)["epoch"] == 1
    fresh = build_model(tiny_spec(), 123)  # a new process: different weights until the checkpoint loads
    h_resumed = fit(fresh, ds, val, cfg, out_dir=tmp_path / "resumed", resume=True, progress=False)
    for (n, a), (_, b) in zip(straight.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), n
    assert [r["val_acc_3"] for r in h_straight] == [r["val_acc_3"] for r in h_resumed]
    metrics = (tmp_path / "resumed" / METRICS).read_text().splitlines()
    assert len(metrics) == 4 and "train_loss_1" in metrics[0] and "val_acc_3" in metrics[0]


def test_halfway_snapshot_holds_the_weights_after_half_the_epochs(tmp_path):
    ds = random_set(64)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, schedule="onecycle")
    fit(build_model(tiny_spec(), 0), ds, None, cfg, out_dir=tmp_path / "full", progress=False)
    stopped = build_model(tiny_spec(), 0)
    fit(stopped, ds, None, cfg, out_dir=tmp_path / "stopped", progress=False, stop_after_epoch=1)
    half = load_checkpoint(tmp_path / "full" / HALFWAY)
    assert half["epoch"] == 1 and len(half["history"]) == 1
    for name, t in stopped.state_dict().items():
        assert torch.equal(half["model"][name], t), name
    fit(build_model(tiny_spec(), 0), ds, None, replace(cfg, epochs=3), out_dir=tmp_path / "odd", progress=False)
    assert not (tmp_path / "odd" / HALFWAY).exists()  # no half-way epoch in an odd schedule


def test_training_learns_a_learnable_task(tmp_path):
    ds = random_set(128)
    cfg = TrainConfig(epochs=6, batch_size=16, lr=0.05, schedule="constant", augment=False)
    hist = fit(build_model(tiny_spec(), 0), ds, ds, cfg, out_dir=tmp_path, progress=False)
    assert hist[-1]["train_loss_3"] < 0.7 * hist[0]["train_loss_3"]
    assert hist[-1]["val_acc_3"] > 0.5  # chance is 0.1


def test_checkpoint_from_another_config_or_corrupt_is_refused(tmp_path):
    ds = random_set(32)
    cfg = TrainConfig(epochs=1, batch_size=16)
    fit(build_model(tiny_spec(), 0), ds, None, cfg, out_dir=tmp_path, progress=False)
    other = TrainConfig(epochs=2, batch_size=16, lr=0.01)
    with pytest.raises(ConfigError, match="comes from another config"):
        fit(build_model(tiny_spec(), 0), ds, None, other, out_dir=tmp_path, resume=True, progress=False)
    _model, ckpt = model_from_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["epoch"] == 1 and ckpt["train_config"]["batch_size"] == 16 and "code_version" in ckpt
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path / CHECKPOINT)
    with pytest.raises(ConfigError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_that_does_not_fit_its_model(tmp_path):
    ds = random_set(32)
    model = build_model(tiny_spec(), 0)
    fit(model, ds, None, TrainConfig(epochs=1, batch_size=16), out_dir=tmp_path, progress=False)
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    ckpt["model_spec"] = tiny_spec(num_classes=5)
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="does not fit model msdnet_cifar"):
        model_from_checkpoint(tmp_path / "other.pt")


def test_evaluate_reports_every_exit():
    model = build_model(tiny_spec(), 0)
    ev = evaluate(model, random_set(40), batch_size=16)
    assert len(ev["acc"]) == len(ev["loss"]) == model.num_exits
    assert all(0 <= a <= 1 for a in ev["acc"])


def test_ddp_two_processes_on_cpu(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29531",
            str(worker),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "RANKS=2 SAME_WEIGHTS=True EPOCHS=2" in res.stdout
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 2


def test_headless_training_prints_status_lines_with_eta(tmp_path, monkeypatch, capsys):
    """Under reproduce (no bar to watch) an epoch reports steps, loss, speed and ETA; the epoch line an ETA."""
    import overthink_lib.train as train

    monkeypatch.setenv(train.HEADLESS_ENV, "1")
    monkeypatch.setattr(train, "PROGRESS_EVERY_S", 0.0)
    ds = random_set(n=96)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    fit(build_model(tiny_spec(), 0), ds, None, cfg, out_dir=tmp_path, progress=True)
    out = capsys.readouterr().out
    assert re.search(r"epoch 1/2: step 1/3, loss \d+\.\d{3}, \d+ img/s, epoch ETA \d+ s", out), out
    assert re.search(r"epoch 1/2: \d+ s, train loss \(last exit\) \d+\.\d{3}, train acc per exit .*, ETA \d+ s", out), (
        out
    )


def test_records_reuse_the_validation_logits_of_training_bit_for_bit_and_only_for_the_same_weights(
    tmp_path, monkeypatch
):
    import overthink_lib.train as train_mod
    from overthink_lib.recording import cached_record, make_record
    from overthink_lib.train import PREDICTIONS, load_predictions, prediction_path

    tr, val = random_set(64), random_set(40, seed=1, split="val")
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, schedule="onecycle", eval_batch_size=16)
    run = tmp_path / "run"
    fit(build_model(tiny_spec(), 0), tr, val, cfg, out_dir=run, progress=False)
    final, _ = model_from_checkpoint(run / CHECKPOINT, torch.device("cpu"))
    half, _ = model_from_checkpoint(run / HALFWAY, torch.device("cpu"))
    kept = sorted(p.name for p in (run / PREDICTIONS).iterdir())
    assert kept == sorted(prediction_path(run / PREDICTIONS, val, state_hash(m)).name for m in (final, half))

    calls = []
    real = train_mod.predict
    monkeypatch.setattr(train_mod, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    for m in (final, half):
        fresh = make_record(m, val, batch_size=16)
        assert len(calls) == 1
        reused = cached_record(m, val, tmp_path / f"records-{id(m)}", batch_size=16, predictions=run / PREDICTIONS)
        assert len(calls) == 1, "the kept logits were not reused"
        assert torch.equal(reused.logits, fresh.logits) and torch.equal(reused.labels, fresh.labels)
        assert reused.provenance["weights_hash"] == fresh.provenance["weights_hash"]
        calls.clear()
    # another batch size, other weights, another split or a tampered file: predicted anew
    assert load_predictions(run / PREDICTIONS, val, state_hash(final), 8, torch.device("cpu")) is None
    other = build_model(tiny_spec(), 1)
    cached_record(other, val, tmp_path / "records-other", batch_size=16, predictions=run / PREDICTIONS)
    assert len(calls) == 1
    path = prediction_path(run / PREDICTIONS, val, state_hash(final))
    saved = torch.load(path, weights_only=True)
    saved["labels"] = saved["labels"].flip(0)
    torch.save(saved, path)
    assert load_predictions(run / PREDICTIONS, val, state_hash(final), 16, torch.device("cpu")) is None
    path.write_bytes(b"not a file torch wrote")
    assert load_predictions(run / PREDICTIONS, val, state_hash(final), 16, torch.device("cpu")) is None


def test_a_new_compute_version_retrains_and_recomputes(tmp_path, monkeypatch):
    """COMPUTE_VERSIONS is part of every cache key: bumping ``train`` gives another run folder and refuses to resume
    an old checkpoint; bumping ``record`` computes the record again instead of reading the cached one or the logits
    that training kept."""
    import overthink_lib.train as train_mod
    from overthink_lib.config import COMPUTE_VERSIONS, get_preset
    from overthink_lib.experiments.runs import model_spec, run_folder, train_config
    from overthink_lib.recording import cached_record
    from overthink_lib.train import PREDICTIONS, load_predictions

    tr, val = random_set(64), random_set(40, seed=1, split="val")
    preset = get_preset("smoke")
    folder = run_folder(preset, model_spec(tr), train_config(preset), tr)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, eval_batch_size=16)
    run, halted = tmp_path / "run", tmp_path / "halted"
    model = build_model(tiny_spec(), 0)
    fit(model, tr, val, replace(cfg, epochs=1), out_dir=run, progress=False)
    fit(build_model(tiny_spec(), 0), tr, val, cfg, out_dir=halted, progress=False, stop_after_epoch=1)
    weights = state_hash(model)
    calls = []
    real = train_mod.predict
    monkeypatch.setattr(train_mod, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = cached_record(model, val, tmp_path / "records", batch_size=16, predictions=run / PREDICTIONS)
    assert calls == [] and load_predictions(run / PREDICTIONS, val, weights, 16, torch.device("cpu")) is not None

    monkeypatch.setitem(COMPUTE_VERSIONS, "record", COMPUTE_VERSIONS["record"] + 1)
    assert load_predictions(run / PREDICTIONS, val, weights, 16, torch.device("cpu")) is None
    again = cached_record(model, val, tmp_path / "records", batch_size=16, predictions=run / PREDICTIONS)
    assert calls == [1], "a new record version must compute the record again"
    assert torch.equal(again.logits, first.logits)  # (this code computes the same; a real bump would not)
    assert len(list((tmp_path / "records").iterdir())) == 2

    monkeypatch.setitem(COMPUTE_VERSIONS, "train", COMPUTE_VERSIONS["train"] + 1)
    assert run_folder(preset, model_spec(tr), train_config(preset), tr) != folder
    with pytest.raises(ConfigError, match="comes from another config"):
        fit(build_model(tiny_spec(), 0), tr, val, cfg, out_dir=halted, progress=False, resume=True)


def test_a_training_nobody_expected_is_announced_and_shows_progress(tmp_path, monkeypatch, capsys):
    """A notebook that expects a finished run passes progress=False; when there is none, the training it starts
    still says what it starts (model, data, epochs, where) and prints its epochs."""
    from overthink_lib.config import get_preset
    from overthink_lib.data import get_dataset
    from overthink_lib.experiments.runs import model_spec, train_config, train_or_load

    preset = get_preset("smoke").with_parts(name="announce-test")
    monkeypatch.setattr(type(preset), "run_dir", property(lambda self: tmp_path / "runs" / self.name))
    ds = get_dataset("fashion_mnist", "train", fraction=0.005)
    spec = model_spec(ds, channels=4, growth=2, head_channels=8)
    train_or_load(preset, spec, train_config(preset), {"train": ds}, progress=False)
    out = capsys.readouterr().out
    assert (
        "no finished run of this model, config and data (announce-test): training msdnet_cifar on fashion_mnist ("
        in out
    )
    assert "1 epochs" in out and str(tmp_path) in out and "epoch 1" in out.lower()
    train_or_load(preset, spec, train_config(preset), {"train": ds}, progress=False)
    assert capsys.readouterr().out == ""  # a finished run is reused quietly, as asked
