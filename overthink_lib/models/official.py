"""Checkpoints of the official MSDNet code (kalviny/MSDNet-PyTorch) → the lab's :class:`~.msdnet.MSDNet`.

The official ``main.py`` saves ``{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}`` with the weights of a
``DataParallel`` model (keys ``module.blocks.*``, ``module.classifier.*``); its published ImageNet checkpoints
(``step=4`` and ``step=7``) are such files. :func:`load_official_msdnet` reads one (the whole dict or a bare
``state_dict``, ``module.`` prefix or not) weights-only, renames every key to the lab's module names
(:func:`lab_key`), infers the configuration from the tensors' shapes (:func:`infer_config`, or takes one) and loads
the weights strictly: a key that does not map, one the model lacks or one the file lacks is one ConfigError naming
it — nothing is left at its initial value. The one exception: BatchNorm's ``num_batches_tracked`` counters, which
checkpoints written before PyTorch 0.4.1 do not have and which no evaluation reads, are set to 0 and counted.

Equivalence: given the same weights, the official model and ours give the same logits at every exit
(``tests/test_official.py``, on checkpoints the official code wrote).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from ..io import safe_torch_load
from .base import get_model

#: official name → the lab's, applied to a key without its ``module.`` prefix (first match wins).
_RENAMES: list[tuple[re.Pattern, str]] = [
    # first layer: ConvBasic per scale (its .net), or the ImageNet stem (a bare Sequential)
    (re.compile(r"^blocks\.0\.0\.layers\.(\d+)\.net\.(\d+)\.(\w+)$"), r"blocks.0.0.layers.\1.\2.\3"),
    (re.compile(r"^blocks\.0\.0\.layers\.0\.(\d+)\.(\w+)$"), r"blocks.0.0.layers.0.\1.\2"),
    # MSD layers: one ConvNormal / ConvDownNormal per output scale
    (
        re.compile(r"^blocks\.(\d+)\.(\d+)\.layers\.(\d+)\.conv_normal\.net\.(\d+)\.(\w+)$"),
        r"blocks.\1.\2.units.\3.normal.\4.\5",
    ),
    (
        re.compile(r"^blocks\.(\d+)\.(\d+)\.layers\.(\d+)\.conv_down\.net\.(\d+)\.(\w+)$"),
        r"blocks.\1.\2.units.\3.down.\4.\5",
    ),
    # transitions: ParallelModule of ConvBasic
    (re.compile(r"^blocks\.(\d+)\.(\d+)\.m\.(\d+)\.net\.(\d+)\.(\w+)$"), r"blocks.\1.\2.convs.\3.\4.\5"),
    # exits: ClassifierModule(Sequential(ConvBasic, ConvBasic, AvgPool2d), Linear)
    (re.compile(r"^classifier\.(\d+)\.m\.(\d+)\.net\.(\d+)\.(\w+)$"), r"heads.\1.features.\2.\3.\4"),
    (re.compile(r"^classifier\.(\d+)\.linear\.(\w+)$"), r"heads.\1.linear.\2"),
]


def lab_key(key: str) -> str | None:
    """The lab's name for an official MSDNet state-dict key (``module.`` prefix allowed); None when none fits."""
    key = key.removeprefix("module.")
    for pattern, repl in _RENAMES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        found = sorted(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
        raise ConfigError(
            f"{path} is not an MSDNet checkpoint: expected a dict with 'state_dict' (official main.py) or a "
            f"state_dict of tensors, found {found}"
        )
    return state


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_config(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """(registered model name, keyword arguments) of the MSDNet whose weights ``state`` (lab key names) holds.

    Read from the shapes: classes, exits, stem (a 7×7 conv: ImageNet), input channels, scales, channels and growth
    factors, growth rate, bottlenecks, layers per block (→ ``step_mode``/``base``/``step``) and head widths. Not
    readable without ambiguity and taken from the official defaults: bottleneck factors = growth factors, ``prune``
    ``max`` (the loader tries ``min`` when the shapes disagree) and ``reduction`` 0.5 — shapes that disagree
    with them fail at loading, naming the key; then pass ``config``.
    """
    try:
        n_exits = _count(state, r"^heads\.(\d+)\.linear\.weight$")
        n_scales = _count(state, r"^blocks\.0\.0\.layers\.(\d+)\.0\.weight$")
        stem = state["blocks.0.0.layers.0.0.weight"]
        widths = [state[f"blocks.0.0.layers.{s}.0.weight"].shape[0] for s in range(n_scales)]
        imagenet = stem.shape[-1] == 7
        steps = [
            len({int(m.group(1)) for k in state if (m := re.match(rf"^blocks\.{b}\.(\d+)\.units\.", k))})
            for b in range(n_exits)
        ]
        gr = tuple(w // widths[0] for w in widths)
        # the first MSD layer's finest unit adds growth·gr[0] channels through its last conv (and BatchNorm)
        bottleneck = any(re.match(r"^blocks\.\d+\.\d+\.units\.\d+\.normal\.3\.", k) for k in state)
        last = (3, 4) if bottleneck else (0, 1)
        unit = "blocks.0.1.units.0.normal"
        growth = (
            next(
                state[key].shape[0] for key in (f"{unit}.{last[0]}.weight", f"{unit}.{last[1]}.weight") if key in state
            )
            // gr[0]
        )
        head_in = [state[f"heads.{k}.features.0.0.weight"].shape[1] for k in range(n_exits)]
        head_out = [state[f"heads.{k}.features.0.0.weight"].shape[0] for k in range(n_exits)]
        num_classes = state[f"heads.{n_exits - 1}.linear.weight"].shape[0]
    except (KeyError, IndexError) as err:
        raise ConfigError(
            f"cannot read an MSDNet configuration from these weights (no {err}): pass config=... "
            "(the official flags as MSDNetConfig fields)"
        ) from None
    if n_exits == 0 or n_scales == 0 or not all(steps):
        raise ConfigError("cannot read an MSDNet configuration from these weights (no exits, scales or layers)")
    kwargs: dict[str, Any] = dict(
        num_classes=num_classes,
        in_channels=stem.shape[1],
        n_blocks=n_exits,
        base=steps[0],
        n_scales=n_scales,
        channels=widths[0] // gr[0],
        growth=growth,
        gr_factor=gr,
        bn_factor=gr,
        bottleneck=bottleneck,
        head_channels=0 if head_out == head_in else head_out[0],
    )
    rest = steps[1:]
    if len(rest) > 1 and rest[0] > 1 and all(s == (rest[0] - 1) * i + 1 for i, s in enumerate(rest, 1)):
        kwargs.update(step_mode="lin_grow", step=rest[0] - 1)
    elif all(s == (rest or [1])[0] for s in rest):
        kwargs.update(step_mode="even", step=(rest or [1])[0])
    else:
        raise ConfigError(f"MSDNet blocks of {steps} layers fit neither step_mode 'even' nor 'lin_grow'")
    kwargs["prune"] = "max"  # the loader also tries "min" when the shapes disagree
    if imagenet:
        kwargs["stem_bias"] = "blocks.0.0.layers.0.0.bias" in state
        return "msdnet_imagenet", kwargs
    return "msdnet_cifar", kwargs


def load_official_msdnet(
    path: str | Path, *, config: dict[str, Any] | None = None, name: str | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """An official MSDNet-PyTorch checkpoint as the lab's MSDNet (eval mode) and what was read.

    Args:
        path: ``model_best.pth.tar``/``checkpoint_NNN.pth.tar`` of the official ``main.py`` (or a bare state_dict).
        config: :class:`~.msdnet.MSDNetConfig` fields that win over the inferred ones (e.g. ``bn_factor``).
        name: ``msdnet_cifar`` or ``msdnet_imagenet``; default: ImageNet when the stem is a 7×7 conv.

    Returns ``(model, info)``; ``info`` holds ``model_spec``, the checkpoint's ``epoch``/``best_prec1``/``arch`` when
    present, ``keys`` (tensors loaded) and ``filled_num_batches_tracked``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}")
    obj = safe_torch_load(path, "MSDNet checkpoint")  # an official file: tensors, ints, floats, strings
    official = _state_dict_of(obj, path)
    state: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        ours = lab_key(key)
        if ours is None:
            raise ConfigError(
                f"checkpoint {path}: key {key!r} is not part of an official MSDNet (blocks.*, classifier.*); "
                "is it a checkpoint of another network?"
            )
        state[ours] = value
    inferred_name, kwargs = infer_config(state)
    tries = [dict(kwargs, **(config or {}))]
    if not config or "prune" not in config:  # the shapes alone do not say where scales are dropped: try both rules
        tries.append(dict(tries[0], prune="min" if tries[0]["prune"] == "max" else "max"))
    first_error, model = None, None
    for kw in tries:
        candidate = get_model(name or inferred_name, **kw)
        error = _mismatch(candidate, state, official, path)
        if error is None:
            model, kwargs = candidate, kw
            break
        first_error = first_error or error
    if model is None:
        raise ConfigError(first_error)
    filled = [k for k in model.state_dict() if k not in state]
    for k in filled:
        state[k] = torch.zeros((), dtype=torch.long)
    model.load_state_dict(state, strict=True)
    info = {
        "model_spec": model.spec,
        "source": str(path),
        "keys": len(official),
        "filled_num_batches_tracked": len(filled),
        **{k: _plain(obj[k]) for k in ("epoch", "arch", "best_prec1") if isinstance(obj, dict) and k in obj},
    }
    return model.eval(), info


def _mismatch(model, state: dict[str, torch.Tensor], official: dict[str, torch.Tensor], path: Path) -> str | None:
    """None when ``state`` fits ``model`` exactly (``num_batches_tracked`` may be absent), else one line naming the
    first key that does not."""
    own = model.state_dict()
    spec = f"{model.spec['name']} {model.spec['kwargs']}"
    extra = sorted(set(state) - set(own))
    if extra:
        official_name = next(k for k in official if lab_key(k) == extra[0])
        return (
            f"checkpoint {path}: {len(extra)} tensor(s) that {spec} has no place for, e.g. {official_name!r}: "
            "pass the configuration it was trained with as config=..."
        )
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    if missing:
        return (
            f"checkpoint {path} lacks {len(missing)} tensor(s) of {spec}, e.g. {missing[0]!r} (the lab's name): "
            "an incomplete file, or pass the configuration it was trained with as config=..."
        )
    for k, v in state.items():
        if v.shape != own[k].shape:
            return (
                f"checkpoint {path}: {k!r} (the lab's name) has shape {tuple(v.shape)} where {spec} has "
                f"{tuple(own[k].shape)}: pass the configuration it was trained with as config=..."
            )
    return None


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


__all__ = ["infer_config", "lab_key", "load_official_msdnet"]
