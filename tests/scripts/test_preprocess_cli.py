"""The command-line scripts: one-line errors with exit code 2, outputs that appear only when complete."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bruno.data.table import SliceTable
from tests.conftest import REPO, assert_one_line_error, head_like, run_script, write_nifti


def test_tiny_phantom_end_to_end_with_montage(tmp_path: Path) -> None:
    out = tmp_path / "tiny.h5"
    result = run_script("preprocess.py", str(REPO / "config_rnn/tiny.yaml"), "--output", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    table = SliceTable(str(out))
    assert (table.num_volumes, table.num_poses, table.image_size) == (8, 8, 16)
    png = tmp_path / "montage.png"
    result = run_script("inspect_h5.py", str(out), "--subject", "phantom_0001", "--output", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(run_script("inspect_h5.py", str(out), "--output", str(png)), r"montage\.png: output file exists")
    assert_one_line_error(run_script("inspect_h5.py", str(out), "--subject", "nobody", "--output", str(tmp_path / "b.png")),
                          r"no volume of subject 'nobody'")


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda d: (d / "a.nii.gz").write_text("not an image"), r"a\.nii\.gz: not a readable NIfTI file"),
        (lambda d: write_nifti(d / "a.nii.gz", np.ones((8, 8), np.float32) * np.arange(8)), r"a\.nii\.gz: expected a 3D volume"),
        (lambda d: write_nifti(d / "a.nii.gz", np.random.rand(6, 6, 6, 2).astype(np.float32)), r"expected a 3D volume, got shape \(6, 6, 6, 2\)"),
        (lambda d: write_nifti(d / "a.nii.gz", np.full((6, 6, 6), np.nan, np.float32)), r"a\.nii\.gz: 216 voxels are NaN or Inf"),
        (lambda d: write_nifti(d / "a.nii.gz", np.zeros((6, 6, 6), np.float32)), r"a\.nii\.gz: constant volume"),
        (lambda d: None, r"in: folder contains no \.nii or \.nii\.gz files"),
    ],
    ids=["not-nifti", "2d", "4d", "nan", "constant", "empty-folder"],
)
def test_bad_inputs(tmp_path: Path, make, pattern: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "z_good.nii.gz", head_like())
    if make(folder) is None and not list(folder.glob("a.*")):
        (folder / "z_good.nii.gz").unlink()
    out = tmp_path / "out.h5"
    result = run_script("preprocess.py", str(REPO / "config_rnn/tiny.yaml"), "--input", str(folder), "--output", str(out))
    assert_one_line_error(result, pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing half-written


def test_skip_bad_and_overwrite(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "good.nii.gz", head_like())
    (folder / "bad.nii.gz").write_bytes(b"\x1f\x8b truncated")
    out = tmp_path / "out.h5"
    args = [str(REPO / "config_rnn/tiny.yaml"), "--input", str(folder / "*.nii.gz"), "--output", str(out), "--no-progress"]
    assert_one_line_error(run_script("preprocess.py", *args), r"bad\.nii\.gz: not a readable NIfTI file")
    result = run_script("preprocess.py", *args, "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stderr.splitlines() if "bad.nii.gz" in line]) == 1  # one warning, not two
    table = SliceTable(str(out))
    assert table.num_volumes == 1 and table.skipped[0][0].endswith("bad.nii.gz")
    assert_one_line_error(run_script("preprocess.py", *args, "--skip-bad"), r"out\.h5: output file exists \(pass --overwrite")
    assert run_script("preprocess.py", *args, "--skip-bad", "--overwrite").returncode == 0


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("data: {slab_fraction: 1.2}", r"c\.yaml: data\.slab_fraction=1\.2, expected a number in \(0, 1\]"),
        ("data: {slab_fraction: 0.0}", r"c\.yaml: data\.slab_fraction=0\.0"),
        ("data: {image_size: 20}", r"c\.yaml: data\.image_size=20, expected a positive multiple of 8"),
        ("data: {num_poses: 1}", r"c\.yaml: data\.num_poses=1, expected an integer >= 2"),
        ("data: {input: null}", r"c\.yaml: data\.input is not set"),
    ],
)
def test_bad_config_values(tmp_path: Path, text: str, pattern: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert_one_line_error(run_script("preprocess.py", str(config), "--output", str(tmp_path / "o.h5")), pattern)


def test_bad_output_paths(tmp_path: Path) -> None:
    tiny = str(REPO / "config_rnn/tiny.yaml")
    assert_one_line_error(run_script("preprocess.py", tiny, "--output", str(tmp_path / "missing" / "o.h5")),
                          r"o\.h5: output folder .*missing does not exist")
    assert_one_line_error(run_script("preprocess.py", tiny, "--output", str(tmp_path / "o.txt")),
                          r"data\.output='.*o\.txt', expected a path ending in \.h5")


def test_help_describes_every_option() -> None:
    result = run_script("preprocess.py", "--help")
    assert result.returncode == 0
    for option in ("--input", "--output", "--overwrite", "--skip-bad"):
        assert option in result.stdout


@pytest.mark.realdata
def test_real_ixi_brains(tmp_path: Path, shared_ixi: Path) -> None:
    """Three real IXI heads: PSR on disk, RAS after loading; 90 poses of the head's middle slab."""
    files = sorted(shared_ixi.glob("*.nii.gz"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    out = tmp_path / "ixi.h5"
    result = run_script("preprocess.py", str(REPO / "config_rnn/ixi.yaml"), "--input", str(folder), "--output", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    table = SliceTable(str(out))
    assert table.num_volumes == 3 and table.num_poses == 90
    info = table.info(0)
    assert info.subject == files[0].name.split("-")[0] and info.original_shape == (120, 120, 90)
    start, stop = info.slab  # middle 75 % of the head's axial extent (slab_reference: foreground)
    assert 0 <= start < stop <= 120 and 60 <= stop - start <= 90
    assert nib.aff2axcodes(info.affine) == ("R", "A", "S")
    images = table.read(table.rows_of(0)).astype(float)
    # A T1 head with a face: the anterior half of low slices (eyes, nose) is the face, and the
    # brain is brighter in the middle of upper slices than at the image border.
    upper = images[70]
    assert upper[12:20, 12:20].mean() > 3 * upper[:2].mean()
