"""IMTA: ISC widths, OFA by hand (both KL reductions), the frozen pretrained teacher, what trains per freeze mode,
gradients through ISC, GE gradient scaling, the contract."""

import pytest
import torch
import torch.nn.functional as F

from helpers import random_set, tiny_spec
from overthink_lib.analysis.stats import change_verdict, excludes_zero
from overthink_lib.config import ConfigError
from overthink_lib.models import get_model
from overthink_lib.models.imta import IMTANet, grad_scale, load_backbone, ofa_loss
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


def test_ofa_loss_equals_hand_computation_for_both_reductions():
    torch.manual_seed(1)
    z = [torch.randn(4, 3), torch.randn(4, 3)]
    teacher = torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 1])
    p_t = torch.softmax(teacher / 2, -1)
    log_q = torch.log_softmax(z[0] / 2, -1)
    kl_rows = (p_t * (p_t.log() - log_q)).sum(-1)  # KL(teacher || student) per sample
    for reduction, kl in (
        ("batchmean", kl_rows.mean()),  # the true KL per sample, averaged over the batch
        ("mean", kl_rows.sum() / (4 * 3)),
    ):  # official KLDivLoss(): over every element
        total, per = ofa_loss(z, y, temperature=2.0, gamma=0.7, teacher=teacher, reduction=reduction)
        first = 0.3 * F.cross_entropy(z[0], y) + 0.7 * 4.0 * kl
        assert torch.allclose(per[0], first) and torch.allclose(per[1], F.cross_entropy(z[1], y))
        assert torch.allclose(total, first + per[1])
    default, _ = ofa_loss(z, y, temperature=2.0, gamma=0.7, teacher=teacher)
    assert torch.allclose(default, ofa_loss(z, y, temperature=2.0, gamma=0.7, teacher=teacher, reduction="mean")[0])
    # without a teacher the last output is the teacher
    p_last = torch.softmax(z[1] / 2, -1)
    kl_last = (p_last * (p_last.log() - log_q)).sum(-1).sum() / 12
    assert torch.allclose(
        ofa_loss(z, y, temperature=2.0, gamma=0.7)[1][0], 0.3 * F.cross_entropy(z[0], y) + 0.7 * 4.0 * kl_last
    )
    with pytest.raises(ConfigError, match="OFA needs"):
        ofa_loss(z, y, gamma=1.5)
    with pytest.raises(ConfigError, match="KL reduction must be one of mean, batchmean"):
        ofa_loss(z, y, reduction="sum")


def test_teacher_new_is_detached_and_gradients_reach_earlier_heads_through_isc():
    m = imta(freeze="none", teacher="new")
    x = torch.randn(4, 1, 16, 16)
    outs = m(x)
    outs[-1].sum().backward()  # a loss on the last exit only
    assert m.classifiers[0].weight.grad is not None and m.classifiers[0].weight.grad.abs().sum() > 0
    m.zero_grad()
    outs = m(x)
    assert torch.equal(m.teacher_logits(), outs[-1].detach()) and not m.teacher_logits().requires_grad
    total, _ = ofa_loss(outs, torch.zeros(4, dtype=torch.long), teacher=m.teacher_logits())
    total.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    assert all(p.grad is None for p in m.base.parameters())


def _fine_tune(tmp_path, freeze):
    backbone = build_model(tiny_spec(), 0)
    fit(
        backbone,
        random_set(64),
        None,
        TrainConfig(epochs=1, batch_size=16, lr=0.05),
        out_dir=tmp_path / "pre",
        progress=False,
    )  # a pretrained network with non-trivial BatchNorm statistics
    m = get_model("imta", backbone=tiny_spec(), freeze=freeze)
    load_backbone(m, backbone)
    x = torch.randn(8, 1, 16, 16)
    backbone.eval()
    with torch.no_grad():
        pretrained_final = backbone(x)[-1]
    m.train()
    m(x)
    assert torch.allclose(m.teacher_logits(), pretrained_final, atol=1e-6)  # the teacher is the pretrained final exit
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fit(
        m,
        random_set(64),
        None,
        TrainConfig(epochs=2, batch_size=16, lr=0.05),
        out_dir=tmp_path / freeze,
        progress=False,
        loss_fn=lambda o, y, i: ofa_loss(o, y, teacher=m.teacher_logits()),
        params=m.trainable(),
    )
    assert all(not p.requires_grad and p.grad is None for p in m.base.parameters())  # no gradient reached it
    m.train()
    m(x)  # after fine-tuning the teacher is unchanged: no gradient and no BatchNorm update reached the base
    assert torch.allclose(m.teacher_logits(), pretrained_final, atol=1e-6)
    after = m.state_dict()
    changed = {k for k in before if not k.endswith("num_batches_tracked") and not torch.equal(before[k], after[k])}
    return m, changed


def test_official_freeze_trains_only_new_classifiers_and_isc_with_the_pretrained_teacher(tmp_path):
    m, changed = _fine_tune(tmp_path, "all")
    assert not any(k.startswith("base.") for k in changed), sorted(changed)  # blocks, head convs, classifiers
    assert {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad} == {"classifiers", "isc_layers"}
    assert all(f"classifiers.{k}.weight" in changed for k in range(m.num_exits))
    assert all(f"isc_layers.{k}.0.weight" in changed for k in range(m.num_exits - 1))
    assert m.cam_layers()[0] == "base.heads.0.tap"


@pytest.mark.parametrize(
    "freeze, trains",
    [
        ("blocks", {"classifiers", "isc_layers", "features"}),
        ("none", {"classifiers", "isc_layers", "features", "blocks"}),
    ],
)
def test_other_freeze_modes_train_more_but_keep_the_teacher_frozen(tmp_path, freeze, trains):
    m, changed = _fine_tune(tmp_path, freeze)
    assert not any(k.startswith("base.") for k in changed)
    assert {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad} == trains
    assert any(k.startswith("features.") for k in changed)


def test_imta_options_are_checked():
    with pytest.raises(ConfigError, match="IMTA freeze must be one of all, blocks, none"):
        imta(freeze="heads")
    with pytest.raises(ConfigError, match="IMTA teacher must be one of pretrained, new"):
        imta(teacher="oracle")
    with pytest.raises(ConfigError, match="gradient equilibrium .* use ge=True with freeze='none'"):
        imta(ge=True)


def test_gradient_equilibrium_scales_gradients_only():
    x = torch.ones(3, requires_grad=True)
    y = grad_scale(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), 0.25))
    a, b = imta(ge=True, freeze="none"), imta(ge=False, freeze="none")
    b.load_state_dict(a.state_dict())
    xb = torch.randn(2, 1, 16, 16)
    a.eval(), b.eval()
    assert all(torch.allclose(p, q) for p, q in zip(a(xb), b(xb)))  # same forward


def test_bad_backbone():
    class NoBlocks(torch.nn.Module):
        num_exits = 2

    with pytest.raises(ConfigError, match="IMTA needs a backbone with blocks and heads"):
        IMTANet(NoBlocks())


def test_verdict_of_a_difference_with_its_ci():
    """The IMTA verdict (ISC+OFA − 2E, notebook 07), over test samples and over seeds alike."""
    assert change_verdict(-0.04, -0.07, -0.01) == "lowered"
    assert change_verdict(0.37, 0.295, 0.44) == "raised"
    assert change_verdict(-0.15, -0.66, 0.35) == "did not measurably change"
    assert change_verdict(0.02, 0.0, 0.05) == "did not measurably change"  # a bound on 0 does not exclude it
    assert change_verdict(0.0, 0.01, 0.02) == "raised"  # the CI decides whether, the estimate's sign which way
    assert excludes_zero(0.01, 0.2) is True and excludes_zero(-0.2, -0.01) is True and excludes_zero(-0.1, 0.1) is False
    assert excludes_zero([0.1, -0.1, -0.3], [0.2, 0.1, -0.2]).tolist() == [True, False, True]


def test_official_batchnorm_mode_updates_the_frozen_networks_statistics_and_ours_keeps_them():
    x = random_set(32).images.float() / 255
    for mode, moves in (("eval", False), ("train", True)):
        m = imta(frozen_bn=mode)
        before = {k: v.clone() for k, v in m.base.state_dict().items() if "running_mean" in k}
        m.train()
        assert m.base.training is moves  # the official code runs the frozen network in train() mode
        with torch.no_grad():
            m(x)
        after = m.base.state_dict()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert bool(changed) is moves, (mode, changed)
        assert all(not p.requires_grad for p in m.base.parameters())  # frozen weights either way
    with pytest.raises(ConfigError, match="IMTA frozen_bn must be one of eval, train"):
        imta(frozen_bn="fixed")


def test_stage_two_schedule_is_the_official_step_decay_whatever_the_preset():
    from overthink_lib.config import get_preset
    from overthink_lib.experiments.imta import imta_protocol, imta_seed_splits
    from overthink_lib.io import safe_torch_load

    cfg = TrainConfig(epochs=4, lr=0.1, schedule="step", milestones=get_preset("cpu").imta.milestones)
    steps = 10
    lrs = [cfg.lr_at(s, steps) for s in range(4 * steps)]
    assert lrs[0] == lrs[19] == pytest.approx(0.1)  # epochs 0-1.9: 0.1; ×0.1 at 50 % and at 75 %
    assert lrs[20] == lrs[29] == pytest.approx(0.01) and lrs[30] == lrs[39] == pytest.approx(0.001)
    smoke = get_preset("smoke")
    res = imta_protocol(smoke, 0, splits=imta_seed_splits(smoke, 0), progress=False)  # 07's first seed on smoke
    ckpt = safe_torch_load(res.runs["E + E ISC+OFA"] / "checkpoint.pt", "a checkpoint")
    assert ckpt["train_config"]["schedule"] == "step" and tuple(ckpt["train_config"]["milestones"]) == (0.5, 0.75)
    assert ckpt["model_spec"]["kwargs"]["frozen_bn"] == "eval"
    assert (
        safe_torch_load(res.runs["2E"] / "checkpoint.pt", "a checkpoint")["train_config"]["schedule"] == "onecycle"
    )  # the preset's
    bad = smoke.with_parts(imta={"milestones": (0.75, 0.5)})
    with pytest.raises(ConfigError, match="imta.milestones must be increasing fractions"):
        imta_protocol(bad, 0, progress=False)
    with pytest.raises(ConfigError, match="IMTA frozen BatchNorm mode must be one of eval, train"):
        imta_protocol(get_preset("smoke"), 0, frozen_bn="drift", progress=False)
