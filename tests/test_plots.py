"""Figures: nothing overlaps the title, and it fits across the figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from bruno.plots import slice_montage


@pytest.mark.parametrize("count", [8, 30, 90])
def test_montage_title_clears_every_panel_and_fits(count: int) -> None:
    title = ("sub-01 (train) /data/scans/sub-01_T1w.nii.gz\n"
             "slab 14:99 of (120, 120, 90), intensity 0..1806 -> 0..255, pixel 12.00x12.00 mm, pose step 18.00 mm")
    fig = slice_montage(np.zeros((count, 16, 16)), title, spacing=(12.0, 12.0, 18.0))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    heading = fig._suptitle.get_window_extent(renderer)  # type: ignore[union-attr]
    assert 0 <= heading.x0 and heading.x1 <= fig.bbox.x1 and heading.y1 <= fig.bbox.y1
    assert max(ax.get_tightbbox(renderer).y1 for ax in fig.axes) <= heading.y0
    reformats = [ax for ax in fig.axes if ax.get_title().startswith(("sagittal", "coronal"))]
    assert [ax.get_aspect() for ax in reformats] == [1.5, 1.5][: len(reformats)]  # 18 mm poses over 12 mm pixels
    plt.close(fig)
