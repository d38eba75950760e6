"""IMTA (Li et al., ICCV 2019; thesis §3.4; SPEC §4): ISC heads, the OFA loss and gradient equilibrium.

- **ISC** (inline subnetwork collaboration): exit i > 1 also receives exit i−1's logits through
  Linear(classes → 128) – BatchNorm1d – ReLU, concatenated with its own 128-d pooled feature, so its classifier is
  Linear(256, classes); exit 1's is Linear(128, classes). Gradients flow back into earlier heads (no detach).
- **OFA** (one-for-all distillation): exit i < n: (1 − γ)·CE_i + γ·T²·KL(softmax(z_n/T) ‖ softmax(z_i/T)), the teacher
  z_n detached; exit n: CE. Defaults T = 3, γ = 0.9. KL uses ``reduction='batchmean'`` (the true KL per sample; the
  official ``KLDivLoss()`` averages over classes too, dividing the term by the class count).
- **GE** (gradient equilibrium): around head i of n (0-based), the gradient reaching the coarsest feature is scaled by
  1/(n − i) before the head and the gradient of the path that continues by (n − i − 1); forward values are unchanged.

:class:`IMTANet` wraps a trained backbone of the multi-exit contract that exposes ``blocks`` and ``heads`` (MSDNet):
its heads' feature convs are copied (warm start), the classifiers and ISC modules are new. ``frozen=True`` (the
official stage 2, our default) trains only the heads and ISC: backbone blocks get ``requires_grad=False`` and their
BatchNorm statistics stay fixed.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .base import MultiExit, get_model, model_from_spec, register_model


class _GradScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``scale`` on the way back."""
    return _GradScale.apply(x, scale)


class IMTANet(MultiExit):
    """A backbone's blocks with ISC heads (and optionally GE); keeps the multi-exit contract."""

    def __init__(self, backbone: MultiExit, *, frozen: bool = True, ge: bool = False, isc: bool = True,
                 isc_width: int = 128):
        super().__init__()
        if not (hasattr(backbone, "blocks") and hasattr(backbone, "heads")):
            raise ConfigError(f"IMTA needs a backbone with blocks and heads (MSDNet), got {type(backbone).__name__}")
        self.backbone_blocks = backbone.blocks
        self.num_exits = backbone.num_exits
        self.frozen, self.ge, self.isc = frozen, ge, isc
        classes = backbone.heads[0].linear.out_features
        width = backbone.heads[0].linear.in_features
        self.taps = nn.ModuleList(copy.deepcopy(h.tap) for h in backbone.heads)
        self.features = nn.ModuleList(copy.deepcopy(h.features) for h in backbone.heads)
        self.isc_layers = nn.ModuleList(
            nn.Sequential(nn.Linear(classes, isc_width), nn.BatchNorm1d(isc_width), nn.ReLU(inplace=True))
            for _ in range(self.num_exits - 1)) if isc else nn.ModuleList()
        self.classifiers = nn.ModuleList(nn.Linear(width + (isc_width if isc and k > 0 else 0), classes)
                                         for k in range(self.num_exits))
        if frozen:
            for p in self.backbone_blocks.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone_blocks.eval()  # frozen BatchNorm statistics
        return self

    def stage(self, k: int, state):
        x, prev = (state, None) if k == 0 else state
        scales = self.backbone_blocks[k](x)
        coarse = scales[-1]
        n = self.num_exits
        head_in = grad_scale(coarse, 1.0 / (n - k)) if self.ge else coarse
        feat = self.features[k](self.taps[k](head_in))
        if self.isc and k > 0:
            feat = torch.cat([feat, self.isc_layers[k - 1](prev)], 1)
        logits = self.classifiers[k](feat)
        if self.ge:
            scales = list(scales[:-1]) + [grad_scale(head_in, float(n - k - 1))]
        return (scales, logits), logits

    def cam_layers(self) -> list[str]:
        return [f"taps.{k}" for k in range(self.num_exits)]


def load_backbone(model: IMTANet, trained: MultiExit) -> IMTANet:
    """Copy a trained backbone's blocks and head feature convs into ``model`` (its classifiers and ISC stay new)."""
    model.backbone_blocks.load_state_dict(trained.blocks.state_dict())
    for k in range(model.num_exits):
        model.features[k].load_state_dict(trained.heads[k].features.state_dict())
    return model


def ofa_loss(outputs: list[torch.Tensor], y: torch.Tensor, temperature: float = 3.0,
             gamma: float = 0.9) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One-for-all loss (see the module docstring). Returns (total, per-exit losses)."""
    if temperature <= 0 or not 0 <= gamma <= 1:
        raise ConfigError(f"OFA needs T > 0 and 0 <= γ <= 1, got T={temperature}, γ={gamma}")
    t = temperature
    teacher = F.softmax(outputs[-1].detach().float() / t, -1)
    per = []
    for z in outputs[:-1]:
        ce = F.cross_entropy(z.float(), y)
        kl = F.kl_div(F.log_softmax(z.float() / t, -1), teacher, reduction="batchmean")
        per.append((1 - gamma) * ce + gamma * t * t * kl)
    per.append(F.cross_entropy(outputs[-1].float(), y))
    return sum(per), per


@register_model("imta")
def imta(*, backbone: dict, frozen: bool = True, ge: bool = False, isc: bool = True) -> IMTANet:
    """IMTA heads on a backbone given by its registry spec ``{"name", "kwargs"}`` (weights loaded by the caller)."""
    return IMTANet(model_from_spec(backbone), frozen=frozen, ge=ge, isc=isc)


__all__ = ["IMTANet", "grad_scale", "ofa_loss", "imta", "get_model"]
