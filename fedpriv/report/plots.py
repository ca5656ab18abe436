"""Plot primitives as PNG files: image grids, log-log ROC curves, per-round lines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def save_figure(
    fig: Figure, path: Path, dpi: int = 100, rect: tuple[float, float, float, float] | None = None
) -> None:
    """Lay ``fig`` out (within ``rect``), write it to ``path`` as PNG and free it."""
    if rect is None:
        fig.tight_layout()
    else:
        fig.tight_layout(rect=rect)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


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
    save_figure(fig, path, dpi=110)
    return path


def arm_colors(names: list[str]) -> dict[str, str]:
    """One colour per arm, the same in every figure of a report (matplotlib's tab10)."""
    palette = plt.get_cmap("tab10")
    return {name: matplotlib.colors.to_hex(palette(i % 10)) for i, name in enumerate(names)}


def roc_plot(
    curves: dict[str, tuple[list[float], list[float]]],
    path: Path,
    title: str,
    colors: dict[str, str] | None = None,
) -> Path:
    """Save ROC curves on log-log axes (the low-FPR regime is what matters)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    floor = 1e-4
    for name, (fpr, tpr) in curves.items():
        color = (colors or {}).get(name)
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=name, color=color)
    ax.plot([floor, 1], [floor, 1], "k--", linewidth=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    # The title inside the axes: it stays with the figure wherever the figure goes.
    ax.text(0.02, 0.98, title, transform=ax.transAxes, fontsize=9, va="top", wrap=True)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path, dpi=110)
    return path


# One line per arm: rounds, values.
Series = dict[str, tuple[list[int], list[float]]]


def line_plot(
    panels: dict[str, Series],
    path: Path,
    colors: dict[str, str],
    log_scale: bool = False,
    note: str = "",
) -> Path:
    """Save one panel per entry of ``panels`` (y label -> series), one colour per arm."""
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 3.8), squeeze=False, sharex=True
    )
    for ax, (ylabel, series) in zip(axes[0], panels.items(), strict=True):
        for name, (rounds, values) in series.items():
            ax.plot(rounds, values, marker="o", markersize=3, label=name, color=colors.get(name))
        if log_scale:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, ncol=2)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, style="italic")
    save_figure(fig, path, dpi=100, rect=(0, 0.04 if note else 0, 1, 1))
    return path


def spread_plot(
    panels: dict[str, dict[str, tuple[float | None, float]]],
    path: Path,
    colors: dict[str, str],
    seeds: int,
) -> Path:
    """Bars per arm (value, 95% half-width) in one panel per metric; n/a bars are left out."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (metric, bars) in zip(axes[0], panels.items(), strict=True):
        names = list(bars)
        values = [float("nan") if (v := bars[n][0]) is None else float(v) for n in names]
        errors = [bars[n][1] for n in names]
        ax.bar(
            range(len(names)),
            values,
            yerr=errors if seeds > 1 else None,
            capsize=4,
            color=[colors.get(n) for n in names],
        )
        for i, value in enumerate(values):
            if value != value:  # NaN: not applicable
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
    spread = f"mean and 95% interval over {seeds} seeds" if seeds > 1 else "one seed"
    fig.suptitle(f"per arm ({spread})", fontsize=9)
    save_figure(fig, path, dpi=100)
    return path


# A labelled row of images, with a caption under each (or no images: the label says why).
ImageRow = tuple[str, np.ndarray | None, list[str] | None]


def labelled_rows(rows: list[ImageRow], path: Path, columns: int = 4) -> Path:
    """Save rows of images (shown large, nearest-neighbour), each labelled on the left."""
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.6 * columns + 3.4, 1.6 * len(rows)), squeeze=False
    )
    for i, (name, images, captions) in enumerate(rows):
        for j in range(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if images is not None and j < len(images):
                image = np.clip(images[j], 0, 1)
                if image.shape[0] == 1:
                    ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(np.moveaxis(image, 0, -1), interpolation="nearest")
                if captions is not None and j < len(captions):
                    ax.set_xlabel(captions[j], fontsize=7)
            else:
                for spine in ax.spines.values():
                    spine.set_visible(False)
        axes[i][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    save_figure(fig, path, dpi=100)
    return path
