"""The multi-exit contract and the model registry.

Contract (every exit-aware function relies on it alone, so MSDNet, an SDN-style ResNet and IMTA heads are
interchangeable):

- ``model(x) -> list[Tensor]``: logits ``[B, classes]`` of every exit, shallow to deep;
- ``model(x, upto=k)``: only the first ``k`` exits are computed (the rest of the network never runs);
- ``model.num_exits``;
- ``model.stage(k, state) -> (state, logits_k)``: run the part of the network between exit k−1 and exit k and exit k's
  head; ``state`` is the input for k = 0 and whatever stage k−1 returned after. ``index_state(state, rows)`` keeps
  the rows of a state, so a caller can continue the network on the samples that did not exit (real early exit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config import ConfigError


class MultiExit(nn.Module):
    """Base of every multi-exit model: ``forward`` is the loop over :meth:`stage`."""

    num_exits: int

    def stage(self, k: int, state: Any) -> tuple[Any, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        n = self.num_exits if upto is None else upto
        if not 1 <= n <= self.num_exits:
            raise ConfigError(f"upto must be in 1..{self.num_exits}, got {upto}")
        outs, state = [], x
        for k in range(n):
            state, logits = self.stage(k, state)
            outs.append(logits)
        return outs


def index_state(state: Any, rows: torch.Tensor) -> Any:
    """Keep ``rows`` (a bool mask or indices along the batch) of every tensor in a (nested) stage state."""
    if torch.is_tensor(state):
        return state[rows]
    if isinstance(state, (list, tuple)):
        return type(state)(index_state(s, rows) for s in state)
    if isinstance(state, dict):
        return {k: index_state(v, rows) for k, v in state.items()}
    if state is None:
        return None
    raise TypeError(f"cannot index a stage state of type {type(state).__name__}")


_MODELS: dict[str, Callable[..., MultiExit]] = {}


def register_model(name: str):
    """Decorator: register a keyword-only builder under ``name``."""

    def wrap(fn: Callable[..., MultiExit]) -> Callable[..., MultiExit]:
        _MODELS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_model(name: str, **kwargs: Any) -> MultiExit:
    """Build a registered model; the result carries ``model.spec = {"name", "kwargs"}`` to rebuild it from a file."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(list_models())}")
    try:
        model = _MODELS[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"model {name!r}: {err}") from None
    model.spec = {"name": name, "kwargs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}}
    return model


def model_from_spec(spec: dict[str, Any]) -> MultiExit:
    """Rebuild a model from its ``spec`` (as stored in checkpoints and records)."""
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec["kwargs"].items()}
    return get_model(spec["name"], **kwargs)
