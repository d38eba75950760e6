"""Per-exit cumulative FLOPs and parameters of any multi-exit model.

FLOPs follow the MSDNet convention: **multiply-adds** (MACs) of convolutions and linear layers, counted by
``torch.utils.flop_counter.FlopCounterMode`` (which counts 2 FLOPs per MAC, so we halve it). BN, ReLU and pooling
count 0; the official MSDNet counter (kalviny/MSDNet-PyTorch's ``op_counter.py``) also adds ReLU and pooling
elements, which puts it 0.7–1.0 % above ours on ``msdnet_cifar``. Exit k's count includes heads 1..k: it is the cost
of running the network to exit k.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@contextmanager
def _probe(model: nn.Module, input_shape: tuple[int, ...]):
    """Eval mode and one zero input on the model's device for the duration; the mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    finally:
        model.train(was_training)


@torch.no_grad()
def exit_flops(model: nn.Module, input_shape: tuple[int, ...], num_exits: int | None = None) -> list[float]:
    """Cumulative MACs per exit for one input of shape ``input_shape`` = (C, H, W); the model runs
    ``model(x, upto=k)`` for k = 1..``num_exits`` (default ``model.num_exits``)."""
    out = []
    with _probe(model, input_shape) as x:
        for k in range(1, (num_exits or model.num_exits) + 1):
            with FlopCounterMode(display=False) as counter:
                model(x, upto=k)
            out.append(counter.get_total_flops() / 2)
    return out


@torch.no_grad()
def exit_params(model: nn.Module, input_shape: tuple[int, ...]) -> list[int]:
    """Cumulative parameter counts per exit: the parameters of every module that runs up to exit k."""
    out = []
    with _probe(model, input_shape) as x:
        for k in range(1, model.num_exits + 1):
            used: set[int] = set()
            hooks = [
                m.register_forward_hook(lambda mod, i, o, used=used: used.add(id(mod)))
                for m in model.modules()
                if not list(m.children())
            ]
            try:
                model(x, upto=k)
            finally:
                for h in hooks:
                    h.remove()
            out.append(sum(p.numel() for m in model.modules() if id(m) in used for p in m.parameters(recurse=False)))
    return out
