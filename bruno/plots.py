"""Figures a person looks at: slice montages of one volume, with orthogonal reformats."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bruno.data.slices import slices_to_volume  # noqa: E402
from bruno.files import atomic_output  # noqa: E402

__all__ = ["save_slice_montage"]


def save_slice_montage(
    images: np.ndarray,
    path: str,
    title: str,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    overwrite: bool = False,
    columns: int = 0,
) -> None:
    """Save every slice of one volume as a grid, plus mid-sagittal and mid-coronal reformats.

    Args:
        images: uint8 or float [N, H, W], pose-ordered axial slices (anterior at the top, subject's
            left on the left; see :mod:`bruno.data.slices`), shown on a fixed 0..255 grey scale.
        path: the PNG to write (atomically).
        title: figure title.
        spacing: voxel size (mm) of the [W, H, N] volume the slices form, for true-shape reformats.
        overwrite: replace an existing file.
        columns: grid width; 0 chooses about √N.

    Raises:
        OutputPathError: ``path`` cannot be written or exists and ``overwrite`` is false.
    """
    count = len(images)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    fig = plt.figure(figsize=(1.1 * columns + 3.2, 1.1 * rows + 0.8), dpi=100)
    grid = fig.add_gridspec(rows, columns + 3, wspace=0.05, hspace=0.25)
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
    fig.suptitle(title, fontsize=9)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
