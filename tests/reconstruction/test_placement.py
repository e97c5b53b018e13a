"""Pose estimation of acquired slices from their world positions."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bruno.baselines import population_mean
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import read_split
from bruno.reconstruction import evenly_spread
from bruno.reconstruction.placement import atlas_scores, estimate_poses
from tests.conftest import tiny_config


def test_a_peaked_score_is_recovered_with_its_slab() -> None:
    true_poses = np.array([3, 10, 17, 24])
    lo, step = -40.0, 2.0
    positions = lo + (true_poses + 0.5) * step
    scores = -np.square(np.arange(30)[None, :] - true_poses[:, None]).astype(float)
    estimate = estimate_poses(scores, positions, (1.5, 2.5))
    assert estimate.poses == list(true_poses) and estimate.score == 0.0
    assert estimate.slab_mm[0] == pytest.approx(lo, abs=step) and estimate.margin >= 16.0  # lo is known to within a pose
    flat = estimate_poses(np.zeros((4, 30)), positions, (1.5, 2.5))
    assert flat.margin == 0.0  # every placement ties: ambiguous


def test_an_estimate_with_no_rival_is_logged_without_an_infinite_margin(caplog: pytest.LogCaptureFixture) -> None:
    from bruno.reconstruction.placement import _log_estimate

    estimate = estimate_poses(-np.square(np.arange(6)[None, :] - np.array([[1], [4]])).astype(float), [-7.5, -1.5], (2.0, 2.0))
    assert math.isinf(estimate.margin)  # 6 poses: no placement moves a slice by more than 3
    caplog.set_level("INFO")
    _log_estimate(estimate, "nats")
    assert "margin" not in caplog.text and "inf" not in caplog.text and "no placement searched moves a slice" in caplog.text
    with pytest.raises(ValueError, match="no placement of slices"):
        estimate_poses(np.zeros((2, 30)), [0.0, 100.0], (1.5, 2.5))  # 100 mm > 30 poses of 2.5 mm


def test_atlas_scores_place_held_out_phantom_slices(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    table = load_slice_table(config, progress=False)
    atlas = population_mean(read_split(table, "train"))
    np.testing.assert_allclose(np.diag(atlas_scores(atlas, atlas)), 1000.0)
    errors = []
    for volume in table.volumes_in("test"):
        info, images = table.info(int(volume)), table.read(table.rows_of(int(volume)))
        poses = np.array(evenly_spread(3, table.num_poses))
        positions = info.affine[2, 3] + info.affine[2, 2] * poses
        step = float(np.linalg.norm(info.affine[:3, 2]))
        estimate = estimate_poses(atlas_scores(atlas, images[poses]), positions, (0.9 * step, 1.1 * step))
        errors.append(np.abs(np.array(estimate.poses) - poses))
    assert np.max(errors) <= 1 and math.isfinite(float(np.mean(errors)))
