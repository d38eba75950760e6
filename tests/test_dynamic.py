"""Real early exit gives the simulated predictions for the same thresholds (CPU)."""
import math

import torch

from helpers import random_set, tiny_spec
from overthink_lib import exits
from overthink_lib.data import iterate
from overthink_lib.dynamic import early_exit
from overthink_lib.records import make_record
from overthink_lib.train import TrainConfig, build_model, fit


def test_dynamic_equals_simulated(tmp_path):
    model = build_model(tiny_spec(), 0)
    fit(model, random_set(128), None, TrainConfig(epochs=2, batch_size=16, lr=0.05, augment=False,
                                                   schedule="constant"), out_dir=tmp_path, progress=False)
    model.eval()
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
