"""MSDNet against the official model's counts (kalviny/MSDNet-PyTorch, CIFAR-100) and the multi-exit contract, for
every registered model."""

import pytest
import torch

from overthink_lib.config import ConfigError
from overthink_lib.flops import exit_flops, exit_params
from overthink_lib.models import get_model, index_state, list_models
from overthink_lib.models.msdnet import MSDNetConfig

OFFICIAL_PARAMS = [299_704, 649_740, 1_018_308, 1_492_424, 2_078_924]
OFFICIAL_FLOPS = [6_859_876, 14_350_024, 27_536_684, 41_714_576, 58_480_628]  # official counter (+ReLU, pooling)
MACS_ONLY = [6.793e6, 14.209e6, 27.279e6, 41.374e6, 58.088e6]  # conv + linear multiply-adds


@pytest.fixture(scope="module")
def cifar100():
    return get_model("msdnet_cifar", num_classes=100)


def test_parameter_counts_are_the_official_ones(cifar100):
    assert sum(p.numel() for p in cifar100.parameters()) == 2_078_924
    assert exit_params(cifar100, (3, 32, 32)) == OFFICIAL_PARAMS


def test_flops_within_tolerance_of_the_official_counter(cifar100):
    flops = exit_flops(cifar100, (3, 32, 32))
    for ours, official, macs in zip(flops, OFFICIAL_FLOPS, MACS_ONLY):
        assert abs(ours - official) / official < 0.015
        assert abs(ours - macs) < 0.001e6  # exactly the conv+linear MACs
    assert flops == sorted(flops)


def test_architecture_details(cifar100):
    # exit heads read 88, 136, 104, 200, 208 channels, as in the official model
    assert [h.features[0][0].in_channels for h in cifar100.heads] == [88, 136, 104, 200, 208]
    assert MSDNetConfig().steps() == [1, 2, 3, 4, 5]
    cfg = cifar100.config
    assert [cifar100._scales(cfg, n, 15) for n in (1, 6, 7, 11, 12)] == [(3, 3), (3, 2), (2, 2), (2, 1), (1, 1)]


SMALL = {
    "msdnet_cifar": [
        dict(num_classes=10, in_channels=1, channels=4, growth=2, head_channels=8, size=28),
        dict(num_classes=7, in_channels=3, channels=4, growth=2, head_channels=8, size=32),
        dict(num_classes=10, in_channels=1, channels=4, growth=2, head_channels=8, size=64),
        dict(num_classes=5, in_channels=3, channels=4, growth=2, head_channels=8, size=32, prune="min"),
    ],
    "msdnet_imagenet": [dict(num_classes=6, in_channels=3, channels=4, growth=2, n_blocks=2, step=2, base=2, size=64)],
    "imta": [
        dict(
            backbone={
                "name": "msdnet_cifar",
                "kwargs": dict(num_classes=10, in_channels=1, channels=4, growth=2, head_channels=8),
            },
            freeze="none",
            num_classes=10,
            in_channels=1,
            size=28,
        ),
        dict(
            backbone={
                "name": "msdnet_cifar",
                "kwargs": dict(num_classes=7, in_channels=3, channels=4, growth=2, head_channels=8),
            },
            freeze="none",
            ge=True,
            num_classes=7,
            in_channels=3,
            size=32,
        ),
        dict(
            backbone={
                "name": "msdnet_cifar",
                "kwargs": dict(num_classes=10, in_channels=1, channels=4, growth=2, head_channels=8),
            },
            num_classes=10,
            in_channels=1,
            size=28,
        ),
    ],
    "sdn_resnet20": [
        dict(num_classes=10, in_channels=1, width=4, size=28),
        dict(num_classes=5, in_channels=3, width=4, size=32, exits_after=(3, 6)),
    ],
    "policy_resnet": [
        dict(depth=18, width=4, num_classes=5, in_channels=1, size=28),
        dict(depth=34, width=4, num_classes=2, in_channels=3, size=32),
    ],
}
SHAPE_ONLY = {"num_classes", "in_channels"}  # arguments that only some builders take


def _cases():
    for name in list_models():
        for kw in SMALL.get(name, [dict(num_classes=10, in_channels=3, size=32)]):
            yield pytest.param(name, kw, id=f"{name}-{kw['size']}px-{kw['in_channels']}ch-{kw.get('prune', 'max')}")


@pytest.mark.parametrize("name, kw", list(_cases()))
def test_every_model_keeps_the_contract(name, kw):
    kw = dict(kw)
    size = kw.pop("size")
    torch.manual_seed(0)
    build = {k: v for k, v in kw.items() if name != "imta" or k not in SHAPE_ONLY}
    model = get_model(name, **build)
    x = torch.randn(3, kw["in_channels"], size, size)
    outs = model(x)
    assert isinstance(outs, list) and len(outs) == model.num_exits >= 1
    assert all(o.shape == (3, kw["num_classes"]) and torch.isfinite(o).all() for o in outs)
    sum(o.logsumexp(-1).sum() for o in outs).backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert missing == []
    # running up to exit k computes only the first k exits, identical to the full run (eval mode)
    model.eval()
    with torch.no_grad():
        full = model(x)
        part = model(x, upto=min(2, model.num_exits))
        assert len(part) == min(2, model.num_exits)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(part, full))
        # continue from a stage on a subset of the batch (what real early exit does)
        state, _first = model.stage(0, x)
        keep = torch.tensor([True, False, True])
        state = index_state(state, keep)
        for k in range(1, model.num_exits):
            state, logits = model.stage(k, state)
            assert torch.allclose(logits, full[k][keep], atol=1e-5)


def test_bad_configs_are_clear_errors():
    with pytest.raises(ConfigError, match="prune must be 'max' or 'min'"):
        get_model("msdnet_cifar", prune="mid")
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        get_model("resnet9000")
    with pytest.raises(ConfigError, match="upto must be in 1..5"):
        get_model("msdnet_cifar", num_classes=10)(torch.zeros(1, 3, 32, 32), upto=6)
    with pytest.raises(ConfigError, match="model 'msdnet_cifar'"):
        get_model("msdnet_cifar", colour=3)
