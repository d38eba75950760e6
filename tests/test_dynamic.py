"""Real early exit gives the simulated predictions for the same thresholds (CPU)."""

import math

import torch

from helpers import random_set, tiny_spec
from overthink_lib.analysis import exits
from overthink_lib.data import iterate
from overthink_lib.dynamic import early_exit, latency_per_exit, time_vs_flops
from overthink_lib.recording import make_record
from overthink_lib.speed import Speed
from overthink_lib.train import TrainConfig, build_model, fit


def trained(tmp_path):
    model = build_model(tiny_spec(), 0)
    fit(
        model,
        random_set(128),
        None,
        TrainConfig(epochs=2, batch_size=16, lr=0.05, augment=False, schedule="constant"),
        out_dir=tmp_path,
        progress=False,
    )
    return model.eval()


def test_dynamic_equals_simulated(tmp_path):
    model = trained(tmp_path)
    test = random_set(200, seed=4, split="test")
    rec = make_record(model, test)
    conf = exits.confidence(rec)
    for criterion in ("max_softmax", "margin"):
        conf = exits.confidence(rec, criterion)
        for q in (0.2, 0.5, 0.8):
            t = [float(conf[:, k].quantile(q)) for k in range(rec.num_exits - 1)]
            sim = exits.apply_thresholds(rec, t, criterion)
            got = torch.cat([early_exit(model, x, t, criterion)["exits"] for x, _, _ in iterate(test, 64)])
            preds = torch.cat([early_exit(model, x, t, criterion)["preds"] for x, _, _ in iterate(test, 64)])
            # samples within 1e-5 of a threshold may flip by float noise; everything else must agree exactly
            margin = (conf[:, :-1] - torch.tensor(t)[None]).abs().min(1).values
            clear = margin > 1e-5
            assert clear.float().mean() > 0.95
            assert torch.equal(got[clear], sim["exits"][clear])
            assert torch.equal(preds[clear], rec.preds[torch.arange(len(got)), got][clear])
    # every threshold −∞: everything leaves at exit 1; +∞: everything reaches the last exit
    x = next(iterate(test, 50))[0]
    assert early_exit(model, x, [-math.inf] * (rec.num_exits - 1))["exits"].eq(0).all()
    assert early_exit(model, x, [math.inf] * (rec.num_exits - 1))["exits"].eq(rec.num_exits - 1).all()


def test_time_vs_flops_reports_the_exits_really_taken(tmp_path):
    model = trained(tmp_path)
    val = make_record(model, random_set(120, seed=5, split="val"))
    test_set = random_set(160, seed=4, split="test")
    test = make_record(model, test_set)
    sub = test_set.subset(torch.arange(10, 110))  # a subset: FLOPs are those of its own exits
    for sp in (Speed(), Speed(bf16=True, fold_bn=True)):
        table = time_vs_flops(model, sub, val, test, ps=[1, 5, 30], batch_size=32, repeats=1, speed=sp)
        assert list(table["p"]) == [1, 5, 30]
        assert (table["time_s"] > 0).all() and (table["time_full_s"] > 0).all()
        lo, hi = float(test.flops[0]) / 1e6, float(test.flops[-1]) / 1e6
        assert table["mflops"].between(lo - 1e-9, hi + 1e-9).all()
        assert ((1 - table["mflops"] / hi) - table["flops_saved"]).abs().max() < 1e-9
        if sp.is_default:  # fp32: the same exits as the simulated evaluation
            assert (table["same_as_simulated"] > 0.98).all()
            rows = torch.arange(10, 110)
            for r in table.itertuples():
                sim = exits.apply_thresholds(test, exits.budgeted_curve(val, test, ps=[r.p])["thresholds"][0][:-1])
                assert abs(float(test.flops[sim["exits"][rows]].double().mean()) / 1e6 - r.mflops) < 0.02 * hi
    lat = latency_per_exit(model, next(iterate(test_set, 1))[0], repeats=3)
    assert len(lat) == model.num_exits and all(v > 0 for v in lat)


def test_timings_wait_for_the_gpu(monkeypatch):
    """CUDA kernels run asynchronously: every timed call is bracketed by a synchronise, so a GPU timing is work,
    not launches (simulated: the clock must not stop before the queued work is done)."""
    import time

    from overthink_lib import dynamic

    queue, events = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def synchronize(index=None):
        while queue:  # the "GPU" finishes what was launched
            time.sleep(queue.pop())
        events.append("sync")

    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)

    def launch():  # returns at once, leaving 20 ms of work queued
        events.append("launch")
        queue.append(0.02)

    t = dynamic.timed(launch, repeats=3, warmup=1)
    assert t >= 0.02 and events == ["launch"] + ["sync", "launch", "sync"] * 3


def test_notebook_10s_headlines_from_the_timing_table():
    import pandas as pd
    import pytest

    from overthink_lib import dynamic

    table = pd.DataFrame({"time_full_s": [2.0] * 3, "flops_saved": [0.02, 0.4, 0.6], "time_saved": [0.0, 0.2, 0.45]})
    heads = {k: (v, unit) for k, v, _, unit in dynamic.headlines(table, 1000, "fp32", 64)}
    assert heads["full_network_img_per_s"] == (500.0, "img/s")
    assert heads["time_saved_per_flop_saved"][0] == pytest.approx((0.5 + 0.75) / 2)  # the 2 % budget left out
    none_saved = table.assign(flops_saved=0.01)
    assert [k for k, *_ in dynamic.headlines(none_saved, 1000, "fp32", 64)] == ["full_network_img_per_s"]
