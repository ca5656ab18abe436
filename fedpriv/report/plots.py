"""Plot primitives as PNG files: image grids, log-log ROC curves, per-round lines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def image_grid(rows: dict[str, np.ndarray], path: Path, title: str = "") -> Path:
    """Save a grid with one row of images per entry of ``rows`` (images (N, C, H, W) in [0,1])."""
    columns = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.2 * columns + 1.5, 1.3 * len(rows) + 0.4), squeeze=False
    )
    for r, (name, images) in enumerate(rows.items()):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = np.clip(images[c], 0, 1)
                if image.shape[0] == 1:
                    ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(np.moveaxis(image, 0, -1))
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_plot(curves: dict[str, tuple[list[float], list[float]]], path: Path, title: str) -> Path:
    """Save ROC curves on log-log axes (the low-FPR regime is what matters)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    floor = 1e-4
    for name, (fpr, tpr) in curves.items():
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=name)
    ax.plot([floor, 1], [floor, 1], "k--", linewidth=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def line_plot(
    series: dict[str, tuple[list[int], list[float], str]],
    ylabel: str,
    path: Path,
    log_scale: bool = False,
) -> Path:
    """Save one line per entry of ``series`` (name -> rounds, values, line style)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, (rounds, values, style) in series.items():
        ax.plot(rounds, values, style, marker="o", markersize=3, label=name)
    if log_scale:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def labelled_rows(rows: list[tuple[str, np.ndarray | None]], path: Path, columns: int = 4) -> Path:
    """Save rows of images, each labelled on the left; a row without images shows its label."""
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.0 * columns + 3.2, 0.9 * len(rows)), squeeze=False
    )
    for i, (name, images) in enumerate(rows):
        for j in range(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if images is not None and j < len(images):
                ax.imshow(np.clip(images[j][0], 0, 1), cmap="gray", vmin=0, vmax=1)
            else:
                for spine in ax.spines.values():
                    spine.set_visible(False)
        axes[i][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
