from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bruno.data.nifti import find_inputs, load_nifti, subject_id
from bruno.errors import VolumeError
from tests.conftest import head_like, write_nifti


def test_reorients_a_known_non_ras_affine(tmp_path: Path) -> None:
    """A PSR-stored volume (like IXI): array axes are (posterior, superior, right)."""
    rng = np.random.default_rng(0)
    stored = rng.normal(size=(5, 6, 7)).astype(np.float32)  # [P, S, R] with 2 mm voxels
    affine = np.array([
        [0.0, 0.0, 2.0, -10.0],   # world x (R) grows with axis 2
        [-2.0, 0.0, 0.0, 50.0],   # world y (A) shrinks with axis 0 (axis 0 points posterior)
        [0.0, 2.0, 0.0, -30.0],   # world z (S) grows with axis 1
        [0.0, 0.0, 0.0, 1.0],
    ])
    volume = load_nifti(str(write_nifti(tmp_path / "psr.nii.gz", stored, affine)))
    # Canonical [R, A, S]: x = stored axis 2, y = stored axis 0 reversed, z = stored axis 1.
    expected = np.transpose(stored, (2, 0, 1))[:, ::-1, :]
    np.testing.assert_array_equal(volume.data, expected)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.original_shape == (5, 6, 7)
    np.testing.assert_allclose(volume.spacing, [2.0, 2.0, 2.0])
    # The same voxel has the same world coordinate before and after.
    old_index = np.array([1, 2, 3, 1.0])
    new_index = np.array([3, 5 - 1 - 1, 2, 1.0])
    np.testing.assert_allclose(affine @ old_index, volume.affine @ new_index)
    assert stored[1, 2, 3] == volume.data[3, 3, 2]


def test_single_volume_4d_is_accepted(tmp_path: Path) -> None:
    data = head_like()[..., None]
    volume = load_nifti(str(write_nifti(tmp_path / "v.nii", data)))
    assert volume.data.shape == data.shape[:3]


@pytest.mark.parametrize(
    "data, message",
    [
        (np.ones((8, 8), np.float32) * np.arange(8), r"expected a 3D volume, got shape \(8, 8\)"),
        (np.random.default_rng(0).random((6, 6, 6, 3)).astype(np.float32), r"expected a 3D volume, got shape \(6, 6, 6, 3\)"),
        (np.zeros((6, 6, 6), np.float32), r"constant volume \(every voxel is 0\.0\)"),
    ],
    ids=["2d", "4d", "all-zero"],
)
def test_bad_shapes_and_constant_volumes(tmp_path: Path, data: np.ndarray, message: str) -> None:
    path = write_nifti(tmp_path / "bad.nii.gz", data)
    with pytest.raises(VolumeError, match=str(path).replace(".", r"\.") + ": " + message):
        load_nifti(str(path))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path: Path, value: float) -> None:
    data = head_like()
    data[1, 2, 3] = value
    data[4, 5, 6] = value
    with pytest.raises(VolumeError, match=r"bad\.nii\.gz: 2 voxels are NaN or Inf"):
        load_nifti(str(write_nifti(tmp_path / "bad.nii.gz", data)))


def test_non_nifti_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.nii.gz"
    path.write_text("this is not an image")
    with pytest.raises(VolumeError, match=r"notes\.nii\.gz: not a readable NIfTI file"):
        load_nifti(str(path))
    other = tmp_path / "scan.txt"
    other.write_text("hello")
    with pytest.raises(VolumeError, match=r"scan\.txt: not a readable NIfTI file"):
        load_nifti(str(other))


def test_truncated_file(tmp_path: Path) -> None:
    good = write_nifti(tmp_path / "good.nii", head_like())
    raw = good.read_bytes()
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz: (not a readable NIfTI file|cannot read the image data)"):
        load_nifti(str(truncated))
    short = tmp_path / "short.nii"
    short.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeError, match=r"short\.nii: (not a readable NIfTI file|cannot read the image data)"):
        load_nifti(str(short))


def test_find_inputs(tmp_path: Path) -> None:
    for name in ["b.nii.gz", "a.nii", "readme.txt"]:
        (tmp_path / name).write_text("x")
    assert [Path(p).name for p in find_inputs(str(tmp_path))] == ["a.nii", "b.nii.gz"]
    assert [Path(p).name for p in find_inputs(str(tmp_path / "*.txt"))] == ["readme.txt"]
    assert find_inputs(str(tmp_path / "a.nii")) == [str(tmp_path / "a.nii")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VolumeError, match=r"empty: folder contains no \.nii or \.nii\.gz files"):
        find_inputs(str(empty))
    with pytest.raises(VolumeError, match=r"\*\.nii\.gz: no files match this path or pattern"):
        find_inputs(str(empty / "*.nii.gz"))


def test_subject_id() -> None:
    assert subject_id("/x/IXI012-HH-1211_T1.nii.gz") == "IXI012-HH-1211_T1"
    assert subject_id("/x/IXI012-HH-1211_T1.nii.gz", r"^(IXI\d+)") == "IXI012"
    assert subject_id("/x/sub-07_t1.nii", r"sub-\d+") == "sub-07"
    with pytest.raises(VolumeError, match=r"scan\.nii: file name does not match data\.subject_pattern"):
        subject_id("scan.nii", r"^IXI")
