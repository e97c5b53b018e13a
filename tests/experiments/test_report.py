"""The evaluation report: paired differences against the best competitor, SSIM by distance to a context."""
from __future__ import annotations

import numpy as np
import pytest

from bruno.experiments.report import by_distance, paired_differences


def test_paired_differences_and_distance_table() -> None:
    def subject(ours: float, pca: float, linear: float) -> dict:
        per_slice = [1.0, ours, ours, 1.0, ours]
        return {"k": 2, "contexts": [0, 3], "methods": {
            "bruno_mean": {"ssim": ours, "ssim_per_slice": per_slice},
            "pca": {"ssim": pca, "ssim_per_slice": per_slice}, "linear": {"ssim": linear, "ssim_per_slice": per_slice}}}

    results = {"ks": [2], "baselines": ["linear", "pca"], "kinds": {"bruno": "bruno"},
               "table": {"linear": {"2": {"ssim": 0.5}}, "pca": {"2": {"ssim": 0.7}}},
               "per_subject": [subject(0.8, 0.7, 0.5), subject(0.6, 0.7, 0.4), subject(0.9, 0.7, 0.6)]}
    diff = paired_differences(results, "bruno_mean", "ssim")["2"]
    assert diff["against"] == "pca" and diff["wins"] == 2 and diff["n"] == 3
    assert diff["mean"] == pytest.approx(0.2 / 3) and diff["se"] == pytest.approx(np.std([0.1, -0.1, 0.2], ddof=1) / np.sqrt(3))
    # poses 0..4 with contexts 0 and 3: distances 0, 1, 1, 0, 1
    np.testing.assert_allclose(by_distance(results, 2, "bruno_mean", bins=2)[:2], [1.0, (0.8 + 0.6 + 0.9) / 3])
