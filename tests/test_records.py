"""ExitRecord: round trip, tidy frame, cache keyed by weights, bad files and mismatches."""

import pytest
import torch

from helpers import random_set, tiny_spec
from overthink_lib.config import ConfigError
from overthink_lib.recording import cached_record, make_record
from overthink_lib.records import ExitRecord, check_same_model
from overthink_lib.train import build_model


@pytest.fixture()
def model_and_data():
    ds = random_set(40, split="test")
    ds.extras["level"] = torch.arange(40) % 3
    return build_model(tiny_spec(), 0), ds


def test_record_contents_and_round_trip(tmp_path, model_and_data):
    model, ds = model_and_data
    rec = make_record(model, ds, batch_size=16, provenance={"seed": 0})
    assert rec.logits.shape == (40, model.num_exits, 10) and rec.flops.shape == (model.num_exits,)
    assert torch.equal(rec.indices, ds.indices) and torch.equal(rec.labels, ds.labels)
    assert rec.flops.tolist() == sorted(rec.flops.tolist()) and rec.flops[0] > 0
    p = rec.provenance
    assert p["model_spec"] == model.spec and p["dataset"]["split"] == "test" and p["seed"] == 0
    assert len(p["weights_hash"]) == 16 and p["code_version"]
    path = rec.save(tmp_path / "r")
    assert path.name == "r.npz"
    back = ExitRecord.load(path)
    assert torch.equal(back.logits, rec.logits) and back.provenance == rec.provenance
    assert torch.equal(back.extras["level"], ds.extras["level"])
    # logits match a direct forward pass in eval mode
    model.eval()
    with torch.no_grad():
        x = torch.stack([ds[i][0] for i in range(4)])
        direct = torch.stack(model(x), 1)
    assert torch.allclose(direct, rec.logits[:4], atol=1e-5)


def test_to_frame_is_tidy(model_and_data):
    model, ds = model_and_data
    rec = make_record(model, ds, batch_size=16)
    df = rec.to_frame()
    assert len(df) == 40 * rec.num_exits
    assert {"sample", "exit", "label", "pred", "confidence", "entropy", "margin", "correct", "flops", "level"} <= set(
        df
    )
    row = df[(df["sample"] == int(ds.indices[7])) & (df["exit"] == 2)].iloc[0]
    probs = rec.probs[7, 1]
    assert row["confidence"] == pytest.approx(probs.max().item(), rel=1e-6)
    assert row["pred"] == probs.argmax().item() and bool(row["correct"]) == (row["pred"] == row["label"])
    assert df.groupby("exit")["correct"].mean().tolist() == pytest.approx(rec.accuracy().tolist())


def test_cache_is_invalidated_when_weights_change(tmp_path, model_and_data):
    model, ds = model_and_data
    a = cached_record(model, ds, tmp_path)
    b = cached_record(model, ds, tmp_path)
    assert torch.equal(a.logits, b.logits) and len(list(tmp_path.iterdir())) == 1
    with torch.no_grad():
        model.heads[0].linear.bias += 1.0
    c = cached_record(model, ds, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2 and not torch.equal(c.logits[:, 0], a.logits[:, 0])
    assert c.model_key() != a.model_key()
    with pytest.raises(ConfigError, match="different models"):
        check_same_model(a, c)
    check_same_model(a, b)


def test_bad_files_and_mismatches(tmp_path, model_and_data):
    _model, ds = model_and_data
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="corrupt or unreadable"):
        ExitRecord.load(tmp_path / "bad.pt")
    (tmp_path / "bad.npz").write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="truncated, corrupt or not an .npz"):
        ExitRecord.load(tmp_path / "bad.npz")
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match="not an ExitRecord file"):
        ExitRecord.load(tmp_path / "foreign.pt")
    import numpy as np

    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(ConfigError, match="not an ExitRecord file"):
        ExitRecord.load(tmp_path / "foreign.npz")
    with pytest.raises(ConfigError, match="no ExitRecord file at"):
        ExitRecord.load(tmp_path / "none.npz")
    with pytest.raises(ConfigError, match="model has 5 classes but dataset random has 10"):
        make_record(build_model(tiny_spec(num_classes=5), 0), ds)
    with pytest.raises(ConfigError, match="parts disagree"):
        ExitRecord(torch.zeros(4, 2, 3), torch.zeros(3, dtype=torch.long), torch.arange(4), torch.tensor([1.0, 2.0]))
