"""Multi-Scale Dense Network (Huang et al., ICLR 2018) under the multi-exit contract.

Our own implementation of the official design (kalviny/MSDNet-PyTorch). The CIFAR configuration
(``msdnet_cifar``): 5 blocks of 1, 2, 3, 4, 5 MSD layers (``step_mode='lin_grow'``, step 1, base 1), 3 scales,
16 base channels, growth 6, growth and bottleneck factors 1-2-4, bottlenecks on, "max" pruning, transitions halving
the channels where a scale is dropped.
Each exit reads only the coarsest scale: Conv3×3 s2 → Conv3×3 s2 → average pool → Linear. The pool is adaptive (to
1×1), which at 32×32 inputs equals the official AvgPool2d(2) and lets 28×28 and 64×64 inputs work too.

At 32×32×3 with 100 classes the parameter count is exactly the official 2,078,924 (tests pin the per-exit counts).
Initialisation is PyTorch's default, which is what the official model really uses (its init function never runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from .base import MultiExit, register_model


@dataclass(frozen=True)
class MSDNetConfig:
    """Every hyper-parameter of the official MSDNet (names in brackets are the official flags).

    Attributes:
        num_classes: classes of every exit.
        in_channels: image channels (1 for (Fashion-)MNIST, 3 for CIFAR/SVHN).
        n_blocks: blocks = exits [nBlocks].
        step_mode: ``lin_grow`` (block i has step·i + 1 layers after the first) or ``even`` [stepmode].
        step: layers added per block [step].
        base: layers of the first block [base].
        n_scales: scales [nScales].
        channels: channels of the finest scale after the first layer [nChannels].
        growth: growth rate [growthRate].
        gr_factor: growth factor per scale [grFactor].
        bn_factor: bottleneck width factor per scale [bnFactor].
        bottleneck: 1×1 bottleneck before every 3×3 conv [bottleneck].
        prune: ``max`` (drop the finest scale at regular intervals) or ``min`` (only towards the end) [prune].
        reduction: channel compression of transition layers [reduction].
        stem: ``cifar`` (3×3 stride-1 first conv) or ``imagenet`` (7×7 stride 2 + max-pool).
        head_channels: width of the exit heads' convs (``cifar`` heads: 128; 0 → the input width, the ImageNet heads).
        stem_bias: the ``imagenet`` stem's 7×7 conv has a bias (the official ImageNet model's does; its other
            convs have none).
    """

    num_classes: int = 100
    in_channels: int = 3
    n_blocks: int = 5
    step_mode: str = "lin_grow"
    step: int = 1
    base: int = 1
    n_scales: int = 3
    channels: int = 16
    growth: int = 6
    gr_factor: tuple[int, ...] = (1, 2, 4)
    bn_factor: tuple[int, ...] = (1, 2, 4)
    bottleneck: bool = True
    prune: str = "max"
    reduction: float = 0.5
    stem: str = "cifar"
    head_channels: int = 128
    stem_bias: bool = False

    def __post_init__(self):
        if self.step_mode not in ("lin_grow", "even"):
            raise ConfigError(f"MSDNet step_mode must be 'lin_grow' or 'even', got {self.step_mode!r}")
        if self.prune not in ("max", "min"):
            raise ConfigError(f"MSDNet prune must be 'max' or 'min', got {self.prune!r}")
        if self.stem not in ("cifar", "imagenet"):
            raise ConfigError(f"MSDNet stem must be 'cifar' or 'imagenet', got {self.stem!r}")
        if self.stem_bias and self.stem != "imagenet":
            raise ConfigError("MSDNet stem_bias applies to the 'imagenet' stem only (the CIFAR stem conv has no bias)")
        if len(self.gr_factor) != self.n_scales or len(self.bn_factor) != self.n_scales:
            raise ConfigError(f"gr_factor and bn_factor need one entry per scale ({self.n_scales})")

    def steps(self) -> list[int]:
        """Layers per block: [base, step·1 + 1, step·2 + 1, ...] (lin_grow) or [base, step, step, ...] (even)."""
        return [self.base] + [
            self.step if self.step_mode == "even" else self.step * i + 1 for i in range(1, self.n_blocks)
        ]


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) – BN – ReLU [official ConvBasic]."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


def conv_path(c_in: int, c_out: int, down: bool, bottleneck: bool, bn_width: int) -> nn.Sequential:
    """[1×1 to min(c_in, bn_width·c_out) – BN – ReLU] – 3×3 (stride 2 when ``down``) – BN – ReLU [official ConvBN]."""
    layers: list[nn.Module] = []
    inner = c_in
    if bottleneck:
        inner = min(c_in, bn_width * c_out)
        layers += [nn.Conv2d(c_in, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True)]
    layers += [
        nn.Conv2d(inner, c_out, 3, 2 if down else 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers)


class ScaleUnit(nn.Module):
    """One scale of an MSD layer: concat(own input, [strided path from the finer scale,] path from own input)."""

    def __init__(self, c_finer: int | None, c_own: int, c_new: int, bottleneck: bool, bn_finer: int, bn_own: int):
        super().__init__()
        self.down = None
        if c_finer is not None:  # half of the new channels come from the finer scale, half from this one
            self.down = conv_path(c_finer, c_new // 2, True, bottleneck, bn_finer)
            c_new //= 2
        self.normal = conv_path(c_own, c_new, False, bottleneck, bn_own)

    def forward(self, finer: torch.Tensor | None, own: torch.Tensor) -> torch.Tensor:
        parts = [own] if self.down is None else [own, self.down(finer)]
        return torch.cat([*parts, self.normal(own)], dim=1)


class MSDLayer(nn.Module):
    """An MSD layer taking ``in_scales`` scales and producing the coarsest ``out_scales`` of them [MSDNLayer]."""

    def __init__(self, c_in: int, cfg: MSDNetConfig, in_scales: int, out_scales: int):
        super().__init__()
        self.in_scales, self.out_scales = in_scales, out_scales
        self.discard = in_scales - out_scales
        offset = cfg.n_scales - out_scales  # index of the finest output scale
        g, b = cfg.gr_factor, cfg.bn_factor
        units = []
        for s in range(offset, cfg.n_scales):
            # the finest kept scale has no finer neighbour unless a scale is being discarded
            finer = s > offset or self.discard > 0
            units.append(
                ScaleUnit(
                    c_in * g[s - 1] if finer else None,
                    c_in * g[s],
                    cfg.growth * g[s],
                    cfg.bottleneck,
                    b[s - 1] if finer else 0,
                    b[s],
                )
            )
        self.units = nn.ModuleList(units)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for j, unit in enumerate(self.units):
            i = j + self.discard  # position of this output scale in the input list
            finer = xs[i - 1] if (j > 0 or self.discard > 0) else None
            out.append(unit(finer, xs[i]))
        return out


class Transition(nn.Module):
    """1×1 Conv–BN–ReLU per remaining scale, compressing the channels [official ParallelModule of ConvBasic]."""

    def __init__(self, c_in: int, c_out: int, out_scales: int, offset: int, gr_factor: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(
            conv_bn_relu(c_in * gr_factor[offset + i], c_out * gr_factor[offset + i], 1) for i in range(out_scales)
        )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(x) for conv, x in zip(self.convs, xs)]


class FirstLayer(nn.Module):
    """Seeds the scales: a stem conv, then a stride-2 Conv–BN–ReLU per coarser scale [MSDNFirstLayer]."""

    def __init__(self, cfg: MSDNetConfig):
        super().__init__()
        c = [cfg.channels * f for f in cfg.gr_factor]
        if cfg.stem == "cifar":
            stem = conv_bn_relu(cfg.in_channels, c[0], 3, 1)
        else:
            stem = nn.Sequential(
                nn.Conv2d(cfg.in_channels, c[0], 7, 2, 3, bias=cfg.stem_bias),
                nn.BatchNorm2d(c[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        self.layers = nn.ModuleList([stem] + [conv_bn_relu(c[s - 1], c[s], 3, 2) for s in range(1, cfg.n_scales)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out


class ExitHead(nn.Module):
    """Conv3×3 s2 → Conv3×3 s2 → adaptive average pool → Linear, on the coarsest scale [ClassifierModule]."""

    def __init__(self, c_in: int, width: int, num_classes: int):
        super().__init__()
        self.tap = nn.Identity()  # the coarsest-scale features this exit reads: the default GradCAM target layer
        self.features = nn.Sequential(
            conv_bn_relu(c_in, width, 3, 2), conv_bn_relu(width, width, 3, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.linear = nn.Linear(width, num_classes)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.linear(self.features(self.tap(xs[-1])))


class MSDNet(MultiExit):
    """MSDNet; ``blocks[k]`` runs from exit k−1 to exit k, ``heads[k]`` is exit k. See :class:`MSDNetConfig`."""

    def __init__(self, cfg: MSDNetConfig):
        super().__init__()
        self.config = cfg
        steps = cfg.steps()
        n_all, n_done = sum(steps), 0
        c = cfg.channels
        blocks, heads = [], []
        for k, n_layers in enumerate(steps):
            layers: list[nn.Module] = [FirstLayer(cfg)] if k == 0 else []
            for _ in range(n_layers):
                n_done += 1
                ins, outs = self._scales(cfg, n_done, n_all)
                layers.append(MSDLayer(c, cfg, ins, outs))
                c += cfg.growth
                transition = cfg.reduction > 0 and (
                    (cfg.prune == "max" and ins > outs)
                    or (cfg.prune == "min" and n_done in (math.floor(n_all / 3), math.floor(2 * n_all / 3)))
                )
                if transition:
                    c_new = math.floor(cfg.reduction * c)
                    layers.append(Transition(c, c_new, outs, cfg.n_scales - outs, cfg.gr_factor))
                    c = c_new
            blocks.append(nn.Sequential(*layers))
            c_head = c * cfg.gr_factor[-1]
            heads.append(ExitHead(c_head, cfg.head_channels or c_head, cfg.num_classes))
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleList(heads)
        self.num_exits = len(blocks)

    @staticmethod
    def _scales(cfg: MSDNetConfig, n: int, n_all: int) -> tuple[int, int]:
        """(in, out) scales of layer ``n`` (1-based) of ``n_all`` under the pruning rule."""
        if cfg.prune == "max":
            interval = math.ceil(n_all / cfg.n_scales)
            return (cfg.n_scales - math.floor(max(0, n - 2) / interval), cfg.n_scales - math.floor((n - 1) / interval))
        return min(cfg.n_scales, n_all - n + 2), min(cfg.n_scales, n_all - n + 1)

    def stage(self, k: int, state):
        state = self.blocks[k](state)  # k = 0: image → list of scales; after: list → list
        return state, self.heads[k](state)

    def cam_layers(self) -> list[str]:
        """Default GradCAM target per exit: ``heads.k.tap``, the coarsest-scale feature map that exit k reads
        (8×8 at 32×32 inputs) — the last features before the exit's own head."""
        return [f"heads.{k}.tap" for k in range(self.num_exits)]


@register_model("msdnet_cifar")
def msdnet_cifar(*, num_classes: int = 100, in_channels: int = 3, **overrides) -> MSDNet:
    """The thesis's CIFAR configuration; any :class:`MSDNetConfig` field may be overridden by keyword."""
    return MSDNet(MSDNetConfig(num_classes=num_classes, in_channels=in_channels, **overrides))


@register_model("msdnet_imagenet")
def msdnet_imagenet(*, num_classes: int = 1000, in_channels: int = 3, **overrides) -> MSDNet:
    """The official ImageNet configuration (5 blocks of 4 layers, 4 scales, 32 channels, growth 16, wide heads, a
    bias on the 7×7 stem conv), the published ``step=4`` checkpoint's; ``step=7, base=7`` is the other one."""
    base = dict(
        n_blocks=5,
        step_mode="even",
        step=4,
        base=4,
        n_scales=4,
        channels=32,
        growth=16,
        gr_factor=(1, 2, 4, 4),
        bn_factor=(1, 2, 4, 4),
        stem="imagenet",
        head_channels=0,
        stem_bias=True,
    )
    return MSDNet(MSDNetConfig(num_classes=num_classes, in_channels=in_channels, **{**base, **overrides}))
