"""An SDN-style CNN (Kaya et al., ICML 2019): a CIFAR ResNet with internal classifiers, under the multi-exit contract.

Our own small version: a CIFAR-style ResNet-20 (a 3×3 stem, three stages of three basic blocks, 16/32/64 channels,
stride 2 at the start of stages 2 and 3). Internal classifiers sit after blocks 2, 4, 6 and 8 and the final classifier
after block 9, so it has 5 exits like the thesis's MSDNet. Each internal classifier reduces its block's feature map with
SDN's mixed pooling (a learned mix α·max + (1 − α)·avg, to 4×4 for wide maps) before a Linear layer; the final exit is
the usual global average pool + Linear.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ..config import ConfigError
from .base import MultiExit, register_model
from .resnet import BasicBlock


class MixedPool(nn.Module):
    """α·max-pool + (1 − α)·avg-pool to ``size``×``size`` with a learned α (SDN's feature reduction)."""

    def __init__(self, size: int):
        super().__init__()
        self.max, self.avg = nn.AdaptiveMaxPool2d(size), nn.AdaptiveAvgPool2d(size)
        self.alpha = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        a = self.alpha.clamp(0, 1)
        return a * self.max(x) + (1 - a) * self.avg(x)


class SDNResNet(MultiExit):
    """CIFAR ResNet-(6n+2) with internal classifiers after the blocks in ``exits_after`` (1-based)."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        n: int = 3,
        width: int = 16,
        exits_after: tuple[int, ...] = (2, 4, 6, 8),
        pool: int = 4,
    ):
        super().__init__()
        blocks, widths, c = [], [], width
        for s in range(3):
            w = width * 2**s
            for j in range(n):
                blocks.append(BasicBlock(c, w, 2 if (s > 0 and j == 0) else 1))
                widths.append(w)
                c = w
        if (
            not exits_after
            or max(exits_after) >= len(blocks)
            or min(exits_after) < 1
            or list(exits_after) != sorted(set(exits_after))
        ):
            raise ConfigError(
                f"exits_after must be increasing block numbers in 1..{len(blocks) - 1}, got {exits_after}"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        bounds = [0, *exits_after, len(blocks)]
        self.segments = nn.ModuleList(nn.Sequential(*blocks[a:b]) for a, b in itertools.pairwise(bounds))
        self.taps = nn.ModuleList(nn.Identity() for _ in self.segments)
        heads = [
            nn.Sequential(MixedPool(pool), nn.Flatten(), nn.Linear(widths[b - 1] * pool * pool, num_classes))
            for b in exits_after
        ]
        heads.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes)))
        self.heads = nn.ModuleList(heads)
        self.num_exits = len(self.segments)

    def stage(self, k: int, state):
        x = self.stem(state) if k == 0 else state
        x = self.taps[k](self.segments[k](x))
        return x, self.heads[k](x)

    def cam_layers(self) -> list[str]:
        """Default GradCAM target per exit: the feature map its classifier reads (``taps.k``)."""
        return [f"taps.{k}" for k in range(self.num_exits)]


@register_model("sdn_resnet20")
def sdn_resnet20(
    *, num_classes: int = 10, in_channels: int = 3, width: int = 16, exits_after: tuple[int, ...] = (2, 4, 6, 8)
) -> SDNResNet:
    """ResNet-20 with internal classifiers after blocks 2, 4, 6, 8 (5 exits)."""
    return SDNResNet(num_classes=num_classes, in_channels=in_channels, n=3, width=width, exits_after=exits_after)
