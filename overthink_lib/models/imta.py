"""IMTA (Li et al., ICCV 2019; thesis §3.4): ISC heads, the OFA loss and gradient equilibrium.

- **ISC** (inline subnetwork collaboration): exit i > 1 also receives exit i−1's logits through
  Linear(classes → 128) – BatchNorm1d – ReLU, concatenated with its own 128-d pooled feature, so its classifier is
  Linear(256, classes); exit 1's is Linear(128, classes). Gradients flow back into earlier heads (no detach).
- **OFA** (one-for-all distillation): exit i < n: (1 − γ)·CE_i + γ·T²·KL(softmax(t/T) ‖ softmax(z_i/T)); exit n: CE.
  Defaults T = 3, γ = 0.9. The teacher t is, as in the official code (``IMTA_MSDNet.forward`` returns
  ``real_logits[-1]``), **the pretrained network's own final exit**, frozen (``teacher='pretrained'``); ours,
  ``teacher='new'``, is the new trainable final head, detached. The KL reduction is the official ``KLDivLoss()``
  default, ``'mean'`` over every element (= the per-sample KL ÷ classes); ``'batchmean'`` (the true KL per sample)
  is the option.
- **GE** (gradient equilibrium): around head i of n (0-based), the gradient reaching the coarsest feature is scaled by
  1/(n − i) before the head and the gradient of the path that continues by (n − i − 1); forward values are unchanged.
  It only acts where the blocks train (``freeze='none'``; the official code uses it in stage 1).

:class:`IMTANet` wraps a trained backbone of the multi-exit contract that exposes ``blocks`` and ``heads`` (MSDNet),
kept whole as ``base`` and always frozen (``requires_grad=False``, BatchNorm statistics fixed): it is the teacher.
What trains is set by ``freeze``:

- ``'all'`` (the official stage 2, ``main_IMTA.py``; default): the pretrained network computes every exit's pooled
  head feature (blocks, head convolutions); only the new classifiers (Linear) and the ISC modules train.
- ``'blocks'``: the blocks stay frozen, each exit's head convolutions are trainable copies (warm start).
- ``'none'``: blocks and head convolutions are trainable copies; the frozen ``base`` only gives the teacher.

``frozen_bn``: the official code calls ``model.train()`` on the frozen network, so its BatchNorm uses batch statistics
and updates its running averages during fine-tuning (``frozen_bn='train'``); by default (``'eval'``) the frozen
network stays in eval mode, so the teacher's logits for an image do not change while the student learns.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from .base import MultiExit, get_model, model_from_spec, register_model

FREEZE = ("all", "blocks", "none")
TEACHERS = ("pretrained", "new")
KL_REDUCTIONS = ("mean", "batchmean")
FROZEN_BN = ("eval", "train")


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


def _choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"IMTA {what} must be one of {', '.join(allowed)}, got {value!r}")
    return value


class IMTANet(MultiExit):
    """A frozen pretrained backbone with new ISC heads (optionally GE); keeps the multi-exit contract.

    After a forward pass in training mode, :meth:`teacher_logits` gives the OFA teacher for that batch.
    """

    def __init__(
        self,
        backbone: MultiExit,
        *,
        freeze: str = "all",
        teacher: str = "pretrained",
        ge: bool = False,
        isc: bool = True,
        isc_width: int = 128,
        frozen_bn: str = "eval",
    ):
        super().__init__()
        if not (hasattr(backbone, "blocks") and hasattr(backbone, "heads")):
            raise ConfigError(f"IMTA needs a backbone with blocks and heads (MSDNet), got {type(backbone).__name__}")
        self.freeze, self.teacher = _choice("freeze", freeze, FREEZE), _choice("teacher", teacher, TEACHERS)
        self.frozen_bn = _choice("frozen_bn", frozen_bn, FROZEN_BN)
        if ge and freeze != "none":
            raise ConfigError(
                f"IMTA gradient equilibrium rescales gradients that reach the blocks, which freeze={freeze!r} "
                f"keeps frozen: use ge=True with freeze='none'"
            )
        self.base = backbone
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.num_exits = backbone.num_exits
        self.ge, self.isc = ge, isc
        classes = backbone.heads[0].linear.out_features
        width = backbone.heads[0].linear.in_features
        if freeze != "all":
            self.taps = nn.ModuleList(copy.deepcopy(h.tap) for h in backbone.heads)
            self.features = nn.ModuleList(copy.deepcopy(h.features) for h in backbone.heads)
            for p in self.features.parameters():
                p.requires_grad_(True)
        if freeze == "none":
            self.blocks = copy.deepcopy(backbone.blocks)
            for p in self.blocks.parameters():
                p.requires_grad_(True)
        self.isc_layers = (
            nn.ModuleList(
                nn.Sequential(nn.Linear(classes, isc_width), nn.BatchNorm1d(isc_width), nn.ReLU(inplace=True))
                for _ in range(self.num_exits - 1)
            )
            if isc
            else nn.ModuleList()
        )
        self.classifiers = nn.ModuleList(
            nn.Linear(width + (isc_width if isc and k > 0 else 0), classes) for k in range(self.num_exits)
        )
        self._teacher: torch.Tensor | None = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_bn == "eval":
            self.base.eval()  # frozen BatchNorm statistics: the teacher does not drift
        return self

    def trainable(self) -> list[nn.Parameter]:
        """The parameters fine-tuning updates (everything outside the frozen ``base``)."""
        return [p for p in self.parameters() if p.requires_grad]

    def teacher_logits(self) -> torch.Tensor:
        """The OFA teacher of the last training-mode forward pass (``[B, classes]``, no gradient)."""
        if self._teacher is None:
            raise RuntimeError("no teacher yet: run a forward pass through every exit in training mode first")
        return self._teacher

    def stage(self, k: int, state):
        x, prev = (state, None) if k == 0 else state
        n = self.num_exits
        blocks = self.blocks if self.freeze == "none" else self.base.blocks
        scales = blocks[k](x)
        coarse = scales[-1]
        head_in = grad_scale(coarse, 1.0 / (n - k)) if self.ge else coarse
        if self.freeze == "all":
            head = self.base.heads[k]
            pooled = head.features(head.tap(head_in))
        else:
            pooled = self.features[k](self.taps[k](head_in))
        if k == n - 1 and self.training:
            self._teacher = self._teacher_for(x if k == 0 else None, pooled, scales)
        feat = torch.cat([pooled, self.isc_layers[k - 1](prev)], 1) if self.isc and k > 0 else pooled
        logits = self.classifiers[k](feat)
        if self.ge:
            scales = [*list(scales[:-1]), grad_scale(head_in, float(n - k - 1))]
        return (scales, logits), logits

    def _teacher_for(self, _x, pooled: torch.Tensor, scales) -> torch.Tensor | None:
        if self.teacher == "new":
            return None  # taken from the new final head by :meth:`forward`
        with torch.no_grad():
            if self.freeze == "all":
                return self.base.heads[-1].linear(pooled.detach()).float()
            if self.freeze == "blocks":
                return self.base.heads[-1](scales).float()
            return None  # 'none': the frozen base runs on its own in :meth:`forward`

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        self._teacher = None
        outs = super().forward(x, upto)
        if self.training and len(outs) == self.num_exits:
            if self.teacher == "new":
                self._teacher = outs[-1].detach().float()
            elif self._teacher is None:  # freeze='none': the pretrained network on its own
                with torch.no_grad():
                    self._teacher = self.base(x)[-1].float()
        return outs

    def cam_layers(self) -> list[str]:
        if self.freeze == "all":
            return [f"base.heads.{k}.tap" for k in range(self.num_exits)]
        return [f"taps.{k}" for k in range(self.num_exits)]


def load_backbone(model: IMTANet, trained: MultiExit) -> IMTANet:
    """Copy a trained backbone into ``model``: the frozen ``base`` whole, and the trainable copies of its blocks and
    head convolutions (warm start) where ``freeze`` makes them trainable; the classifiers and ISC stay new."""
    model.base.load_state_dict(trained.state_dict())
    if model.freeze != "all":
        for k in range(model.num_exits):
            model.features[k].load_state_dict(trained.heads[k].features.state_dict())
    if model.freeze == "none":
        model.blocks.load_state_dict(trained.blocks.state_dict())
    return model


def ofa_loss(
    outputs: list[torch.Tensor],
    y: torch.Tensor,
    temperature: float = 3.0,
    gamma: float = 0.9,
    *,
    teacher: torch.Tensor | None = None,
    reduction: str = "mean",
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One-for-all loss (see the module docstring). ``teacher``: the teacher's logits (default: the last output,
    detached); ``reduction``: the KL's, ``'mean'`` (official: over every element) or ``'batchmean'``.
    Returns (total, per-exit losses)."""
    if temperature <= 0 or not 0 <= gamma <= 1:
        raise ConfigError(f"OFA needs T > 0 and 0 <= γ <= 1, got T={temperature}, γ={gamma}")
    _choice("KL reduction", reduction, KL_REDUCTIONS)
    t = temperature
    target = outputs[-1] if teacher is None else teacher
    target = F.softmax(target.detach().float() / t, -1)
    per = []
    for z in outputs[:-1]:
        ce = F.cross_entropy(z.float(), y)
        kl = F.kl_div(F.log_softmax(z.float() / t, -1), target, reduction="batchmean")
        if reduction == "mean":  # KLDivLoss()'s 'mean', written out (torch plans to make 'mean' mean 'batchmean')
            kl = kl / z.shape[-1]
        per.append((1 - gamma) * ce + gamma * t * t * kl)
    per.append(F.cross_entropy(outputs[-1].float(), y))
    return sum(per), per


@register_model("imta")
def imta(
    *,
    backbone: dict,
    freeze: str = "all",
    teacher: str = "pretrained",
    ge: bool = False,
    isc: bool = True,
    frozen_bn: str = "eval",
) -> IMTANet:
    """IMTA heads on a backbone given by its registry spec ``{"name", "kwargs"}`` (weights loaded by the caller)."""
    return IMTANet(model_from_spec(backbone), freeze=freeze, teacher=teacher, ge=ge, isc=isc, frozen_bn=frozen_bn)


__all__ = ["FREEZE", "FROZEN_BN", "KL_REDUCTIONS", "TEACHERS", "IMTANet", "get_model", "grad_scale", "imta", "ofa_loss"]
