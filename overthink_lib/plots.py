"""Saving figures: every figure as ``<fig_dir>/<name>.png`` (static) and, where exploring helps, ``.html`` (plotly)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
    return path


def save_png(fig, fig_dir: Path, name: str, dpi: int = 120) -> Path:
    """Save a matplotlib figure as ``fig_dir/name.png`` (atomically) and return the path."""
    return _atomic(Path(fig_dir) / f"{name}.png", lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight"))


def save_html(fig, fig_dir: Path, name: str) -> Path:
    """Save a plotly figure as a self-contained ``fig_dir/name.html`` (plotly.js inlined: works offline)."""
    return _atomic(Path(fig_dir) / f"{name}.html", lambda p: fig.write_html(str(p), include_plotlyjs=True))


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.4, colors=None):
    """A grid of images (``[N, C, H, W]`` uint8 or float tensor/array) with optional titles; returns the figure."""
    import numpy as np

    images = np.asarray(images)
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.3)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7, **({} if colors is None else {"color": colors[i]}))
    fig.tight_layout()
    return fig
