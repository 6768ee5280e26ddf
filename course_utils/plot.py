"""The plots several lessons share: training curves and image grids.

They draw and return None (a returned Figure would be shown twice in a notebook); use
``plt.gcf()`` to get the figure.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def curves(series: Mapping[str, Sequence[float]], title: str = "Training curves", xlabel: str = "epoch",
           ylabel: str = "loss", logy: bool = False, ax=None):
    """One line per named series, e.g. ``curves({"PyTorch": losses_pt, "Keras": losses_k})``.

    Series may have different lengths; x runs 1..len(series). Draws on ``ax`` if given.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in series.items():
        values = np.asarray(values, dtype=float)
        ax.plot(np.arange(1, len(values) + 1), values, label=name, marker="." if len(values) <= 30 else None)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    ax.figure.tight_layout()


def image_grid(images, labels: Sequence | None = None, ncols: int = 8, title: str | None = None,
               cmap: str = "gray_r", size: float = 1.1):
    """Show images (N, H, W), (N, H, W, C) or (N, 1, H, W) in a grid, each titled by its label.

    Accepts NumPy arrays or tensors (anything ``np.asarray`` takes).
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)  # channels-first -> channels-last
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap if images[i].ndim == 2 else None)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
