"""Speed settings of training and inference: each a switch with a measured default (README "Performance").

The defaults are plain fp32 eager PyTorch, because everything the lab publishes must be bit-reproducible on CPU and
the faster settings change the arithmetic (bf16 rounds every activation to 8 bits of mantissa: first-step gradients of
MSDNet differ by 15–30 % in norm; ``torch.compile`` and channels_last pick other kernels that sum in another order;
BatchNorm folding rounds the folded weights once). Measured on the 2-core development CPU, msdnet_cifar 32×32×3:
training ×1.05 fused SGD, ×0.90 channels_last, ×1.44 bf16, ×1.41 compile, ×2.25 all four; eval ×1.06 BN folding,
×1.49 channels_last, ×2.03 bf16, ×4.02 bf16 + channels_last + folding, ×4.47 with compile. Accuracy after a short
schedule with all of them: within the seed-to-seed noise of fp32 (README "Performance").
:meth:`Speed.fast` is the combination measured fastest on our 2-core AVX-512/AMX CPU; ``benchmarks/speed.py`` measures
every setting against the fp32 eager baseline and checks that accuracy after a fixed short schedule stays within the
seed-to-seed noise of fp32.

What is *not* a switch because it is always on: images live in memory as one uint8 tensor, batches are sliced and
augmented on the device as whole tensors (:mod:`overthink_lib.data.batches`), there is no per-sample Python work.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .config import ConfigError


@dataclass(frozen=True)
class Speed:
    """How to run a model fast; every field off = fp32 eager (the default, bit-reproducible on CPU).

    Attributes:
        bf16: bfloat16 autocast on CPU (uses AMX/AVX-512-bf16 where the CPU has them; elsewhere it runs, slowly).
            On CUDA mixed precision is :attr:`TrainConfig.amp`'s business.
        channels_last: NHWC memory format for the model and every batch.
        compile: ``torch.compile`` the model (the first step of each mode pays a compile: 68–114 s for
            MSDNet's training step, 21–37 s for eval, with an empty inductor cache).
        fused_sgd: one fused kernel for the whole SGD step (``torch.optim.SGD(fused=True)``).
        fold_bn: inference only — fold every eval-mode BatchNorm2d into the Conv2d before it.
    """

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_sgd: bool = False
    fold_bn: bool = False

    def __post_init__(self):
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"Speed.{f.name} must be True or False, got {getattr(self, f.name)!r}")

    @classmethod
    def fast(cls) -> "Speed":
        """The fastest combination measured on the development CPU (benchmarks/speed.py)."""
        return cls(bf16=True, channels_last=True, compile=True, fused_sgd=True, fold_bn=True)

    @classmethod
    def parse(cls, text: str) -> "Speed":
        """``"fp32"``/``""`` → default, ``"fast"`` → :meth:`fast`, or comma-separated field names (``"bf16,compile"``)."""
        text = text.strip()
        if text in ("", "fp32", "default"):
            return cls()
        if text == "fast":
            return cls.fast()
        names = [t.strip() for t in text.split(",") if t.strip()]
        known = {f.name for f in fields(cls)}
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(f"unknown speed setting(s) {bad}: use 'fp32', 'fast' or a comma-separated subset of "
                              f"{sorted(known)}")
        return cls(**{n: True for n in names})

    @property
    def is_default(self) -> bool:
        return self == Speed()

    def describe(self) -> str:
        on = [k for k, v in asdict(self).items() if v]
        return "fp32 eager" if not on else "+".join(on)

    def autocast(self, device: torch.device):
        """The bf16 autocast context on CPU when asked for; ``nullcontext`` otherwise."""
        if self.bf16 and device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the model expects."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matrix units (AMX-bf16 or AVX-512-bf16), where bf16 pays."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) where every Conv2d directly followed by a BatchNorm2d in an ``nn.Sequential``
    carries the normalisation in its weights and bias, and the BatchNorm2d is an Identity.

    ``y = γ (Wx + b − μ) / √(σ² + ε) + β`` becomes ``W' = W · s``, ``b' = (b − μ) · s + β`` with ``s = γ / √(σ² + ε)``.
    Exact in real arithmetic; in fp32 the logits move by ~1e-6 relative (tests pin the tolerance). The original model
    is untouched; the copy is for inference only (its BatchNorms no longer normalise batches in train mode).
    """
    folded = copy.deepcopy(model).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or bn.running_var is None:
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
                torch.rsqrt(bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                            device=conv.weight.device, dtype=conv.weight.dtype)
            new.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
            new.bias.copy_((bias - bn.running_mean) * scale + shift)
            seq[i], seq[i + 1] = new, nn.Identity()
    return folded


def for_inference(model: nn.Module, speed: Speed) -> nn.Module:
    """``model`` prepared for inference with ``speed`` (a new module when anything changes; eval mode).

    Returns the model itself (in eval mode) for settings that need no change; otherwise works on a copy, so the
    caller's model keeps its weights, memory format and mode.
    """
    if not (speed.fold_bn or speed.channels_last or speed.compile):
        return model.eval()
    model = fold_batchnorm(model) if speed.fold_bn else copy.deepcopy(model).eval()
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if speed.compile:
        model = torch.compile(model)
    return model


__all__ = ["Speed", "cpu_has_bf16", "fold_batchnorm", "for_inference"]
