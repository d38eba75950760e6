"""GradCAM heatmaps per exit with the ``grad-cam`` package (thesis §3.3, Fig 3.9).

The package needs a model with one tensor output, so each exit gets a wrapper that runs the network only up to that
exit and returns its logits. The target layer must output a plain tensor that requires grad: by default the model's
``cam_layers()`` (MSDNet: ``heads.k.tap``, the coarsest-scale feature map that exit k reads); any module name of the
model may be given instead. One target class per image: by default the exit's own prediction (what Fig 3.9 explains),
or its label; hooks are released by the package's context manager.

EigenCAM uses no gradients: its map is the first principal component of the activations, whose sign is arbitrary, so
it can light up exactly the region the exit ignores; prefer the gradient methods for "where does this exit look".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import ConfigError

METHODS = ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam")
TARGETS = ("label", "pred")


@dataclass
class ExitCams:
    """Heatmaps of several exits for a batch of images.

    Attributes:
        cams: ``[B, E', H, W]`` float32 in [0, 1].
        preds: ``[B, E']`` each exit's predicted class.
        confidence: ``[B, E']`` each exit's max softmax.
        exits: the E' exits (0-based) the columns belong to.
    """

    cams: np.ndarray
    preds: torch.Tensor
    confidence: torch.Tensor
    exits: list[int]

    def __len__(self) -> int:
        return len(self.cams)

    def rows(self, rows) -> ExitCams:
        """The images ``rows`` (positions in this batch), every exit."""
        rows = np.asarray(rows, dtype=np.int64)
        return ExitCams(
            self.cams[rows], self.preds[torch.as_tensor(rows)], self.confidence[torch.as_tensor(rows)], list(self.exits)
        )

    @staticmethod
    def concat(parts: Sequence[ExitCams]) -> ExitCams:
        """Several batches of the same exits as one."""
        if not parts:
            raise ConfigError("no images to explain: the row list is empty")
        if any(p.exits != parts[0].exits for p in parts):
            raise ConfigError("CAM batches of different exits cannot be joined")
        return ExitCams(
            np.concatenate([p.cams for p in parts]),
            torch.cat([p.preds for p in parts]),
            torch.cat([p.confidence for p in parts]),
            list(parts[0].exits),
        )


class ExitOutput(nn.Module):
    """Exit ``k`` of a multi-exit model as a one-output model (the network runs only up to that exit)."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, upto=self.k + 1)[self.k]


def _cam_class(method: str):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM

    classes = dict(zip(METHODS, (GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, EigenCAM)))
    if method not in classes:
        raise ConfigError(f"unknown CAM method {method!r}: choose one of {', '.join(METHODS)}")
    return classes[method]


def target_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` (as in ``model.named_modules()``); unknown → ConfigError with examples."""
    modules = dict(model.named_modules())
    if name not in modules:
        defaults = getattr(model, "cam_layers", lambda: [])()
        raise ConfigError(
            f"target layer {name!r} does not exist in {type(model).__name__}; defaults are "
            f"{', '.join(defaults) or 'none'} (any name from model.named_modules() works)"
        )
    return modules[name]


def exit_cams(
    model: nn.Module,
    x: torch.Tensor,
    *,
    exits: Sequence[int] | None = None,
    labels=None,
    target: str = "pred",
    method: str = "gradcam",
    layers: Sequence[str] | None = None,
) -> ExitCams:
    """Heatmaps of every requested exit for a batch of (normalised) images.

    Args:
        model: a multi-exit model (contract of :mod:`overthink_lib.models.base`).
        x: ``[B, C, H, W]`` normalised images on the model's device.
        exits: 0-based exits (default: all).
        labels: ``[B]`` true classes (needed for ``target='label'``).
        target: ``pred`` (default, the thesis's Fig 3.9: explain what the exit predicts) or ``label`` (explain the
            true class).
        method: one of :data:`METHODS`.
        layers: target layer name per requested exit (default: ``model.cam_layers()``).
    Returns:
        An :class:`ExitCams` (heatmaps, predictions and confidences of the requested exits).
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    n = model.num_exits
    exits = list(range(n)) if exits is None else [int(e) for e in exits]
    bad = [e for e in exits if not 0 <= e < n]
    if bad:
        raise ConfigError(f"exit index {bad[0]} is out of range: the model has exits 0..{n - 1}")
    if target not in TARGETS:
        raise ConfigError(f"CAM target must be 'label' or 'pred', got {target!r}")
    if target == "label" and labels is None:
        raise ConfigError("target='label' needs the labels of the images")
    cam_cls = _cam_class(method)
    if layers is None:
        if not hasattr(model, "cam_layers"):
            raise ConfigError(f"{type(model).__name__} has no default CAM layers: pass layers=[...] by name")
        layers = [model.cam_layers()[e] for e in exits]
    if len(layers) != len(exits):
        raise ConfigError(f"{len(layers)} target layers given for {len(exits)} exits")
    modules = [target_layer(model, name) for name in layers]
    # A model with frozen parts (IMTA's pretrained network): an input that requires grad makes every activation
    # require it, where the target layer's output would otherwise have no gradient. Only then: it costs time.
    frozen = any(not p.requires_grad for p in model.parameters())
    x_in = x.detach().clone().requires_grad_(True) if frozen else x
    was_training = model.training
    model.eval()
    cams, preds, confs = [], [], []
    try:
        for e, module in zip(exits, modules):
            wrapper = ExitOutput(model, e)
            with torch.no_grad():
                probs = torch.softmax(wrapper(x).float(), -1)
            conf, pred = probs.max(-1)
            classes = (torch.as_tensor(labels) if target == "label" else pred).tolist()
            with cam_cls(model=wrapper, target_layers=[module]) as cam:
                maps = cam(input_tensor=x_in, targets=[ClassifierOutputTarget(int(c)) for c in classes])
            cams.append(np.clip(maps, 0.0, 1.0))
            preds.append(pred.cpu())
            confs.append(conf.cpu())
    finally:
        model.train(was_training)
    return ExitCams(np.stack(cams, 1).astype(np.float32), torch.stack(preds, 1), torch.stack(confs, 1), exits)


def cam_statistics(cams: np.ndarray) -> dict[str, np.ndarray]:
    """Where the heatmap's mass sits, per image and exit (``cams``: ``[B, E, H, W]``).

    Returns:
        ``com_distance``: distance of the centre of mass from the image centre, as a fraction of the half-diagonal;
        ``entropy``: Shannon entropy of the map normalised to sum 1, divided by log(H·W) (1 = uniform, 0 = one pixel);
        ``similarity_prev``: cosine similarity with the previous exit's map (NaN for the first exit).
    """
    b, e, h, w = cams.shape
    mass = cams.reshape(b, e, h * w).astype(np.float64)
    total = mass.sum(-1, keepdims=True)
    p = np.where(total > 0, mass / np.where(total > 0, total, 1), 1.0 / (h * w))
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    cy, cx = (p * ys.reshape(-1)).sum(-1), (p * xs.reshape(-1)).sum(-1)
    half_diag = np.hypot((h - 1) / 2, (w - 1) / 2)
    com = np.hypot(cy - (h - 1) / 2, cx - (w - 1) / 2) / half_diag
    ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(-1) / np.log(h * w)
    unit = mass / np.clip(np.linalg.norm(mass, axis=-1, keepdims=True), 1e-12, None)
    sim = np.full((b, e), np.nan)
    sim[:, 1:] = (unit[:, 1:] * unit[:, :-1]).sum(-1)
    return {"com_distance": com, "entropy": ent, "similarity_prev": sim}


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB overlay of a heatmap on an image (``image``: ``[C, H, W]`` uint8 or float in [0, 1])."""
    from matplotlib import colormaps

    img = np.asarray(image, dtype=np.float32)
    img = img / 255.0 if img.max() > 1.0 else img
    img = np.repeat(img, 3, 0) if img.shape[0] == 1 else img
    heat = colormaps["jet"](cam)[..., :3].transpose(2, 0, 1)
    return np.clip((1 - alpha) * img + alpha * heat, 0, 1).transpose(1, 2, 0)


def cam_grid(images: np.ndarray, out: ExitCams, labels, class_names=None, row_titles=None):
    """Figure: rows = images, columns = the image and each exit's overlay titled with prediction, confidence, ✓/✗."""
    import matplotlib.pyplot as plt

    b, e = out.cams.shape[:2]
    names = class_names or [str(i) for i in range(int(max(out.preds.max(), max(labels))) + 1)]
    fig, axes = plt.subplots(b, e + 1, figsize=(1.7 * (e + 1), 1.9 * b), squeeze=False)
    for i in range(b):
        img = np.asarray(images[i])
        axes[i, 0].imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray")
        axes[i, 0].set_title(
            (row_titles[i] if row_titles else "") + f"\ntrue: {names[int(labels[i])][:12]}", fontsize=7
        )
        for j in range(e):
            pred = int(out.preds[i, j])
            ok = pred == int(labels[i])
            axes[i, j + 1].imshow(overlay(img, out.cams[i, j]))
            axes[i, j + 1].set_title(
                f"exit {out.exits[j] + 1} {'✓' if ok else '✗'} {names[pred][:10]}\n"
                f"conf {float(out.confidence[i, j]):.2f}",
                fontsize=7,
                color="green" if ok else "red",
            )
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def cams_for_rows(
    model: nn.Module, ds, rows, *, target: str = "pred", method: str = "gradcam", batch: int = 64
) -> ExitCams:
    """:func:`exit_cams` over the rows ``rows`` of an :class:`~overthink_lib.data.ImageSet`, in batches."""
    from .data import normalize

    rows = np.asarray(rows, dtype=np.int64)
    device = next(model.parameters()).device
    if len(rows) == 0:  # an empty group (say, no overthought sample): no heatmaps, every exit's column
        n = model.num_exits
        empty = torch.zeros(0, n, dtype=torch.long)
        return ExitCams(np.zeros((0, n, *ds.images.shape[2:]), np.float32), empty, empty.float(), list(range(n)))
    parts = [
        exit_cams(
            model,
            normalize(ds, ds.images[rows[i : i + batch]].to(device)),
            labels=ds.labels[rows[i : i + batch]],
            target=target,
            method=method,
        )
        for i in range(0, len(rows), batch)
    ]
    return ExitCams.concat(parts)


def group_statistics(groups: dict[str, ExitCams], *, n_boot: int = 1000, seed: int = 0):
    """Per group (name → :func:`cams_for_rows` output), statistic and exit: mean of :func:`cam_statistics` with a
    bootstrap 95 % CI. Returns a tidy table (group, statistic, exit, mean, low, high)."""
    import pandas as pd

    from .analysis.stats import bootstrap_mean

    rows = []
    for group, h in groups.items():
        for name, vals in cam_statistics(h.cams).items():
            for j, e in enumerate(h.exits):
                v = vals[:, j]
                v = v[np.isfinite(v)]
                if len(v) == 0:
                    continue
                m, lo, hi = bootstrap_mean(v, n_boot=n_boot, seed=seed)
                rows.append({"group": group, "statistic": name, "exit": e + 1, "mean": m, "low": lo, "high": hi})
    return pd.DataFrame(rows)


def overthought_vs_others(model, test_set, rec, n: int, *, n_boot: int = 1000, seed: int = 0):
    """:func:`group_statistics` of up to ``n`` overthought test samples of ``rec`` (``model``'s record on
    ``test_set``) and as many others (:func:`~overthink_lib.analysis.overthinking.overthought_and_others`); an empty
    group is left out."""
    from .analysis import overthinking

    pick = {g: rows for g, rows in overthinking.overthought_and_others(rec, n, seed).items() if len(rows)}
    return group_statistics(
        {g: cams_for_rows(model, test_set, rows) for g, rows in pick.items()}, n_boot=n_boot, seed=seed
    )


def disjoint_pairs(stats, groups: tuple[str, str] = ("overthought", "other")) -> tuple[list[tuple[str, int]], int]:
    """The (statistic, exit) pairs of a :func:`group_statistics` table where the two ``groups``' 95 % CIs do not
    overlap (one's low end above the other's high end, either way round); a pair missing in one group never counts.

    Returns:
        (the disjoint pairs in (statistic, exit) order, how many pairs there are).
    """
    a, b = groups
    present = set(stats["group"]) if len(stats) else set()
    if not {a, b} <= present:
        raise ConfigError(f"comparing CIs needs the groups {a!r} and {b!r}; the table has {sorted(present)}")
    sep = stats.pivot_table(index=["statistic", "exit"], columns="group", values=["low", "high"])
    disjoint = [
        (str(s), int(e))
        for (s, e) in sep.index
        if sep.loc[(s, e), ("low", a)] > sep.loc[(s, e), ("high", b)]
        or sep.loc[(s, e), ("high", a)] < sep.loc[(s, e), ("low", b)]
    ]
    return disjoint, len(sep)
