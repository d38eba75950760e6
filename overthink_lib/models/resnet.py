"""Small-input ResNets (3×3 stem, no max-pool): the policy CNN of the thesis (ResNet-34) and lighter variants.

A one-exit model of the multi-exit contract (``num_exits = 1``), so the shared training loop trains it unchanged.
"""

from __future__ import annotations

from torch import nn

from ..config import ConfigError
from .base import MultiExit, register_model

LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.skip(x))


def make_stages(c_in: int, width: int, layers: tuple[int, ...]) -> tuple[nn.ModuleList, list[int]]:
    """ResNet stages (widths w, 2w, 4w, 8w; stride 2 from the second on); returns the stages and their widths."""
    stages, widths, c = [], [], c_in
    for i, n in enumerate(layers):
        w = width * 2**i
        stages.append(
            nn.Sequential(*[BasicBlock(c if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(n)])
        )
        widths.append(w)
        c = w
    return nn.ModuleList(stages), widths


class ResNet(MultiExit):
    """ResNet-18/34 for small inputs: Conv3×3 – BN – ReLU stem, four stages, global average pool, Linear."""

    def __init__(self, depth: int = 34, width: int = 64, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if depth not in LAYERS:
            raise ConfigError(f"ResNet depth must be one of {sorted(LAYERS)}, got {depth}")
        self.num_exits = 1
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.stages, widths = make_stages(width, width, LAYERS[depth])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))

    def stage(self, k, x):
        x = self.stem(x)
        for s in self.stages:
            x = s(x)
        return x, self.head(x)


@register_model("policy_resnet")
def policy_resnet(*, depth: int = 34, width: int = 64, in_channels: int = 3, num_classes: int = 5) -> ResNet:
    """The policy network M_ee: ResNet-34 (thesis) or ResNet-18, ``width`` channels in the first stage."""
    return ResNet(depth, width, in_channels, num_classes)
