"""IMTA: ISC widths, OFA by hand, gradients through ISC, frozen mode, GE gradient scaling, the contract."""
import pytest
import torch
import torch.nn.functional as F

from helpers import random_set, tiny_spec
from overthink_lib.config import ConfigError
from overthink_lib.models import get_model
from overthink_lib.models.imta import IMTANet, grad_scale, ofa_loss
from overthink_lib.train import TrainConfig, build_model, fit


def imta(**kw):
    torch.manual_seed(0)
    return get_model("imta", backbone=tiny_spec(), **kw)


def test_isc_changes_head_input_width():
    m = imta()
    width = 8  # tiny_spec head_channels
    assert [c.in_features for c in m.classifiers] == [width] + [width + 128] * (m.num_exits - 1)
    assert [isc[0].in_features for isc in m.isc_layers] == [10] * (m.num_exits - 1)
    plain = imta(isc=False)
    assert [c.in_features for c in plain.classifiers] == [width] * m.num_exits


def test_ofa_loss_equals_hand_computation():
    torch.manual_seed(1)
    z = [torch.randn(4, 3), torch.randn(4, 3)]
    y = torch.tensor([0, 2, 1, 1])
    total, per = ofa_loss(z, y, temperature=2.0, gamma=0.7)
    p_t = torch.softmax(z[1] / 2, -1)
    log_q = torch.log_softmax(z[0] / 2, -1)
    kl = (p_t * (p_t.log() - log_q)).sum(-1).mean()  # KL(teacher || student) per sample, averaged over the batch
    first = 0.3 * F.cross_entropy(z[0], y) + 0.7 * 4.0 * kl
    assert torch.allclose(per[0], first) and torch.allclose(per[1], F.cross_entropy(z[1], y))
    assert torch.allclose(total, first + per[1])
    with pytest.raises(ConfigError, match="OFA needs"):
        ofa_loss(z, y, gamma=1.5)


def test_teacher_is_detached_and_gradients_reach_earlier_heads_through_isc():
    m = imta(frozen=False)
    x = torch.randn(4, 1, 16, 16)
    outs = m(x)
    outs[-1].sum().backward()  # a loss on the last exit only
    assert m.classifiers[0].weight.grad is not None and m.classifiers[0].weight.grad.abs().sum() > 0
    m.zero_grad()
    outs = m(x)
    total, _ = ofa_loss(outs, torch.zeros(4, dtype=torch.long))
    total.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_frozen_mode_trains_only_the_new_parameters(tmp_path):
    backbone = build_model(tiny_spec(), 0)
    m = IMTANet(backbone, frozen=True)
    m.spec = {"name": "imta", "kwargs": {"backbone": tiny_spec()}}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fit(m, random_set(64), None, TrainConfig(epochs=1, batch_size=16, lr=0.05), out_dir=tmp_path, progress=False,
        loss_fn=lambda o, y, i: ofa_loss(o, y), params=[p for p in m.parameters() if p.requires_grad])
    after = m.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        if k.startswith("backbone_blocks."):
            assert not changed, f"frozen backbone changed: {k}"  # weights and BatchNorm statistics
        elif k.endswith("num_batches_tracked"):
            continue
        elif k.startswith(("classifiers.", "isc_layers.")) and k.endswith("weight"):
            assert changed, f"new parameter did not train: {k}"
    assert all(not p.requires_grad for p in m.backbone_blocks.parameters())


def test_gradient_equilibrium_scales_gradients_only():
    x = torch.ones(3, requires_grad=True)
    y = grad_scale(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), 0.25))
    a, b = imta(ge=True, frozen=False), imta(ge=False, frozen=False)
    b.load_state_dict(a.state_dict())
    xb = torch.randn(2, 1, 16, 16)
    a.eval(), b.eval()
    assert all(torch.allclose(p, q) for p, q in zip(a(xb), b(xb)))  # same forward


def test_bad_backbone():
    class NoBlocks(torch.nn.Module):
        num_exits = 2

    with pytest.raises(ConfigError, match="IMTA needs a backbone with blocks and heads"):
        IMTANet(NoBlocks())
