"""Figures a person looks at: slice montages of one volume, with orthogonal reformats."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bruno.data.slices import slices_to_volume  # noqa: E402
from bruno.files import atomic_output  # noqa: E402

__all__ = ["save_acquisition_figure", "save_comparison_figure", "save_slice_montage", "slice_montage"]


def save_slice_montage(
    images: np.ndarray,
    path: str,
    title: str,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    overwrite: bool = False,
    columns: int = 0,
) -> None:
    """Save :func:`slice_montage` as a PNG at ``path`` (atomically; ``overwrite`` replaces a file).

    Raises:
        OutputPathError: ``path`` cannot be written or exists and ``overwrite`` is false.
    """
    fig = slice_montage(images, title, spacing, columns)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def slice_montage(images: np.ndarray, title: str, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                  columns: int = 0) -> Figure:
    """Every slice of one volume as a grid, plus mid-sagittal and mid-coronal reformats, under a title
    (of any number of lines) that nothing overlaps.

    Args:
        images: uint8 or float [N, H, W], pose-ordered axial slices (anterior at the top, subject's
            left on the left; see :mod:`bruno.data.slices`), shown on a fixed 0..255 grey scale.
        title: figure title.
        spacing: voxel size (mm) of the [W, H, N] volume the slices form, for true-shape reformats.
        columns: grid width; 0 chooses about √N.
    """
    count = len(images)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    title_inches = 0.2 + 0.18 * (title.count("\n") + 1)  # the title's own band: nothing below it overlaps
    height = 1.1 * rows + 0.3 + title_inches
    width = max(1.1 * columns + 3.2, 0.075 * max(len(line) for line in title.splitlines()))  # the title fits across
    fig = plt.figure(figsize=(width, height), dpi=100)
    grid = fig.add_gridspec(rows, columns + 3, wspace=0.05, hspace=0.25, top=1 - (title_inches + 0.15) / height,
                            bottom=0.1 / height)
    for q in range(count):
        ax = fig.add_subplot(grid[q // columns, q % columns])
        ax.imshow(images[q], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{q}", fontsize=7, pad=1)
        ax.axis("off")

    volume = slices_to_volume(np.asarray(images))  # [W, H, N] in RAS+ voxel order
    half = max(rows // 2, 1)
    views = (
        ("sagittal (A right)", volume[volume.shape[0] // 2].T, spacing[2] / spacing[1], grid[:half, columns:]),
        ("coronal (R right)", volume[:, volume.shape[1] // 2].T, spacing[2] / spacing[0], grid[half:, columns:] if rows > 1 else None),
    )
    for name, view, aspect, cell in views:
        if cell is None:
            continue
        ax = fig.add_subplot(cell)
        ax.imshow(view, cmap="gray", vmin=0, vmax=255, origin="lower", aspect=aspect, interpolation="nearest")
        ax.set_title(name + ", S up", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9, y=1 - 0.1 / height, va="top")
    return fig


def save_acquisition_figure(
    acquired: np.ndarray,
    poses: list[int],
    mean: np.ndarray,
    std: np.ndarray | None,
    path: str,
    title: str,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    overwrite: bool = False,
) -> None:
    """The acquired slices (top row), then axial, coronal and sagittal views through the middle of the
    reconstruction and, when there is one, of its standard deviation.

    Args:
        acquired: [k, H, W] on 0..255, at ``poses``; mean: [N, H, W] on 0..255; std: [N, H, W] or None.
        path, title, spacing, overwrite: as :func:`save_slice_montage`.
    """
    rows = 2 if std is None else 3
    columns = max(len(acquired), 3)
    fig = plt.figure(figsize=(1.6 * columns, 1.8 * rows + 0.6), dpi=100)
    grid = fig.add_gridspec(rows, columns, wspace=0.1, hspace=0.3)
    for i, (image, q) in enumerate(zip(acquired, poses)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"acquired, pose {q}", fontsize=7)
        ax.axis("off")
    maps = [("mean", mean, 255.0)] + ([] if std is None else [("std", std, max(float(np.max(std)), 1e-6))])
    third = columns / 3
    for row, (name, stack, top) in enumerate(maps, start=1):
        volume = slices_to_volume(np.asarray(stack))  # [W, H, N]
        views = (
            (f"{name}: axial, pose {len(stack) // 2}", np.asarray(stack)[len(stack) // 2], 1.0, "upper"),
            (f"{name}: coronal (R right)", volume[:, volume.shape[1] // 2].T, spacing[2] / spacing[0], "lower"),
            (f"{name}: sagittal (A right)", volume[volume.shape[0] // 2].T, spacing[2] / spacing[1], "lower"),
        )
        for i, (label, view, aspect, origin) in enumerate(views):
            ax = fig.add_subplot(grid[row, int(round(i * third)):int(round((i + 1) * third))])
            ax.imshow(view, cmap="gray" if name == "mean" else "magma", vmin=0, vmax=top, origin=origin, aspect=aspect,
                      interpolation="nearest")
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def save_comparison_figure(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, acquired: list[int], path: str, title: str,
                           overwrite: bool = False, columns: int = 6) -> None:
    """A reconstruction beside the truth it never read: rows truth, mean, |mean − truth| and std, at up to ``columns``
    poses spread over the slices that were not acquired (the acquired poses named in the title row).

    Args:
        truth, mean, std: [N, H, W] on one grid, 0..255; acquired: the acquired poses.
        path, title, overwrite: as :func:`save_slice_montage`.
    """
    others = [q for q in range(len(truth)) if q not in set(acquired)] or list(range(len(truth)))
    shown = [others[int(i)] for i in np.unique(np.linspace(0, len(others) - 1, min(columns, len(others))).round())]
    error = np.abs(np.asarray(mean, np.float64) - np.asarray(truth, np.float64))
    rows = [("truth", truth, "gray", 255.0), ("mean", mean, "gray", 255.0),
            ("|mean − truth|", error, "magma", max(float(error[shown].max()), 1e-6)),
            ("std", std, "magma", max(float(np.asarray(std)[shown].max()), 1e-6))]
    fig, axes = plt.subplots(len(rows), len(shown), figsize=(1.5 * len(shown) + 0.6, 1.55 * len(rows) + 0.7), dpi=100,
                             squeeze=False)
    for r, (name, stack, cmap, top) in enumerate(rows):
        for c, q in enumerate(shown):
            ax = axes[r, c]
            ax.imshow(np.asarray(stack)[q], cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"pose {q}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name if cmap == "gray" else f"{name}\n(0..{top:.0f})", fontsize=8)
    fig.suptitle(f"{title}\nacquired poses {list(acquired)}; shown: slices it did not see", fontsize=8)
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
