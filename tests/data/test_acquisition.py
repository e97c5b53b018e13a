"""Sparse acquisitions: only the acquired slices are read, placed by world position, checked on entry."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bruno.data.acquisition import place_slab, read_acquisition, slab_from_poses
from bruno.data.nifti import load_nifti
from bruno.data.slices import extract_slices
from bruno.errors import VolumeError
from tests.conftest import head_like, nifti_config, write_nifti

SPACING = np.diag([1.5, 1.5, 3.0, 1.0])


def full_volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 20×24×10 volume whose slab (fraction 0.6, over the field of view) is exactly 6 slices: 2..7."""
    affine = SPACING.copy()
    affine[:3, 3] = [-15.0, -18.0, -12.0]
    data = head_like((20, 24, 10), seed=4)
    return write_nifti(tmp_path / "full.nii.gz", data, affine), data


def data_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return nifti_config(tmp_path, num_poses=6, slab_fraction=0.6, slab_reference="volume").data


def sparse_file(tmp_path: Path, data: np.ndarray, indices: list[int], name: str = "acquired.nii.gz") -> Path:
    """The chosen slices of ``full_volume`` as one stack 6 mm apart: a thick, sparse acquisition."""
    step = indices[1] - indices[0] if len(indices) > 1 else 1
    assert all(b - a == step for a, b in zip(indices, indices[1:]))
    affine = SPACING.copy()
    affine[2, 2] = 3.0 * step
    affine[:3, 3] = [-15.0, -18.0, -12.0 + 3.0 * indices[0]]
    return write_nifti(tmp_path / name, data[:, :, indices], affine)


def test_known_poses_on_a_sparse_file_equal_the_index_path(tmp_path: Path) -> None:
    path, data = full_volume(tmp_path)
    config = data_config(tmp_path)
    full = extract_slices(load_nifti(str(path)), config)
    assert (full.slab_start, full.slab_stop) == (2, 8)
    window = (full.intensity_low, full.intensity_high)
    acquired = read_acquisition([str(sparse_file(tmp_path, data, [3, 5, 7]))], config, intensity=window)
    np.testing.assert_allclose(acquired.positions_mm, [-3.0, 3.0, 9.0])
    lo = -12.0 + 3.0 * 2 - 1.5  # the slab's inferior edge: half a slice below slice 2
    poses, affine = place_slab(acquired, (lo, lo + 18.0), 6)
    assert poses == [1, 3, 5]
    np.testing.assert_allclose(affine, full.affine, atol=1e-9)
    np.testing.assert_array_equal(acquired.images, full.images[poses])
    assert slab_from_poses(acquired, poses, 6, mm_per_pose=99.0) == pytest.approx((lo, lo + 18.0))


def test_only_the_acquired_slices_are_read(tmp_path: Path) -> None:
    path, data = full_volume(tmp_path)
    config = data_config(tmp_path)
    first = read_acquisition([str(path)], config, slice_indices=[3, 5, 7])
    tripled = data.copy()
    others = [z for z in range(10) if z not in (3, 5, 7)]
    tripled[:, :, others] *= 3.0
    write_nifti(tmp_path / "tripled.nii.gz", tripled, load_nifti(str(path)).affine)
    second = read_acquisition([str(tmp_path / "tripled.nii.gz")], config, slice_indices=[3, 5, 7])
    np.testing.assert_array_equal(first.images, second.images)
    assert first.intensity == second.intensity
    low, high = np.percentile(data[:, :, [3, 5, 7]], config.intensity_range)
    assert first.intensity == pytest.approx((low, high))


def test_single_slice_files_in_any_order(tmp_path: Path) -> None:
    _, data = full_volume(tmp_path)
    config = data_config(tmp_path)
    paths = [str(sparse_file(tmp_path, data, [z], f"slice{z}.nii.gz")) for z in (7, 3)]
    acquired = read_acquisition(paths, config)
    assert acquired.sources == [paths[1], paths[0]]  # inferior first
    np.testing.assert_allclose(acquired.positions_mm, [-3.0, 9.0])
    lo, hi = slab_from_poses(acquired, [1, 5], 6, mm_per_pose=99.0)
    assert (lo, hi) == pytest.approx((-7.5, 10.5))


def rotated_x(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ SPACING[:3, :3]
    return affine


@pytest.mark.parametrize("case, message", [
    ("4d", "expected a 3D volume"),
    ("oblique", r"tilted 12\.0° from axial, expected at most 5\.0°"),
    ("not_parallel", "not parallel to"),
    ("duplicate", "at the same position as"),
    ("outside", "outside the slab"),
    ("empty", "no file given"),
    ("same_pose", "falls on pose"),
])
def test_bad_acquisitions_are_refused_with_one_line(tmp_path: Path, case: str, message: str) -> None:
    _, data = full_volume(tmp_path)
    config = data_config(tmp_path)
    slice2d = data[:, :, 4:5]
    paths: list[str] = []
    if case == "4d":
        paths = [str(write_nifti(tmp_path / "4d.nii.gz", np.stack([data, data], -1), SPACING))]
    elif case == "oblique":
        paths = [str(write_nifti(tmp_path / "o.nii.gz", data[:, :, :3], rotated_x(12.0)))]
    elif case == "not_parallel":
        paths = [str(write_nifti(tmp_path / "a.nii.gz", slice2d, rotated_x(0.0))),
                 str(write_nifti(tmp_path / "b.nii.gz", slice2d, rotated_x(3.0)))]
    elif case == "duplicate":
        paths = [str(write_nifti(tmp_path / f"{n}.nii.gz", slice2d, SPACING)) for n in "ab"]
    with pytest.raises(VolumeError, match=message) as error:
        if case in ("outside", "same_pose"):
            acquired = read_acquisition([str(sparse_file(tmp_path, data, [3, 5, 7]))], config)
            place_slab(acquired, (-10.0, 5.0) if case == "outside" else (-50.0, 50.0), 6)
        else:
            read_acquisition(paths, config)
    assert "\n" not in str(error.value)
