"""scripts/demo.py end to end, with a 2-step model (the real demo trains 400 steps)."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_script


@pytest.mark.slow
def test_demo_writes_a_reconstruction_from_five_acquired_slices(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()  # where the phantom table is built, as in a checkout
    out = tmp_path / "demo"
    result = run_script("demo.py", "--run-dir", str(tmp_path / "run"), "--out", str(out), "--max-steps", "2",
                        "--samples", "2", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "estimated poses [" in result.stderr
    placed = re.search(r"5 acquired slices placed at poses \[(.*)\], true \[(.*)\] \(placement error: (\d) of 5 slices off",
                       result.stdout)
    assert placed is not None, result.stdout
    estimated, true = ([int(v) for v in group.split(",")] for group in placed.groups()[:2])
    assert int(placed.group(3)) == sum(e != t for e, t in zip(estimated, true)) and true == [3, 9, 15, 21, 27]
    assert re.search(r"mean SSIM 0\.\d+ over the 27 slices it did not see", result.stdout)
    acquired, truth = nib.load(str(out / "acquired.nii.gz")), nib.load(str(out / "truth.nii.gz"))
    recon, std = nib.load(str(out / "reconstruction.nii.gz")), nib.load(str(out / "std.nii.gz"))
    assert acquired.shape[2] == 5 and recon.shape == (32, 32, 32) and std.shape == recon.shape
    # The reconstruction's slab lies inside the truth's field of view, in the same world frame.
    corners = recon.affine @ np.array([[0, 0, 0, 1], [31, 31, 31, 1]]).T
    extent = truth.affine @ np.array([[0, 0, 0, 1], [s - 1 for s in truth.shape] + [1]]).T
    assert np.all(corners[2] >= extent[2, 0] - 3.0) and np.all(corners[2] <= extent[2, 1] + 3.0)
    assert (out / "reconstruction.png").stat().st_size > 10_000
    assert_one_line_error(run_script("demo.py", "--run-dir", str(tmp_path / "run"), "--out", str(out), cwd=tmp_path),
                          r"acquired\.nii\.gz: output file exists")
    # A longer --max-steps (or a demo training that was interrupted) resumes the run instead of reusing it as trained.
    again = run_script("demo.py", "--run-dir", str(tmp_path / "run"), "--out", str(out), "--max-steps", "3",
                       "--samples", "2", "--no-progress", "--overwrite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resumed {tmp_path / 'run'} at step 2" in again.stderr and "trained 3 steps" in again.stderr
