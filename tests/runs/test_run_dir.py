"""A run directory is a whole model: copied alone, away from every table, it reconstructs a new scan."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bruno.commands.train import train_run
from bruno.config import override
from bruno.data.acquisition import read_acquisition, spread_stack
from bruno.data.phantom import phantom_subject
from bruno.data.subjects import pose_spacings, read_split
from bruno.errors import RunDirError
from bruno.reconstruction import save_nifti
from bruno.runs import RUN_FORMAT, RunDir, make_deterministic
from tests.conftest import REPO, assert_one_line_error, run_script, tiny_config

FIXTURES = REPO / "tests/fixtures"


def _acquired_scan(config, table, path: Path) -> None:  # type: ignore[no-untyped-def]
    info = table.info(int(table.volumes_in("test")[0]))
    volume = phantom_subject(int(info.subject.rsplit("_", 1)[1]), config.data.phantom)
    save_nifti(str(path), *spread_stack(volume, info.slab, 3))


@pytest.mark.slow
def test_a_copied_population_run_reconstructs_without_any_table(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "data")
    config = override(config, "model.process", kind="population")
    config = override(config, "train", max_steps=10, validate_every=5, checkpoint_every=5)
    (tmp_path / "data").mkdir()
    make_deterministic(0)
    trainer, _ = train_run(config, str(tmp_path / "run"), False, False, progress=False)
    run = RunDir(str(tmp_path / "run"))
    assert run.format() == RUN_FORMAT == 2 and (tmp_path / "run" / "population.npz").is_file()
    record = run.inference()
    assert record is not None
    np.testing.assert_allclose(record.pose_spacing_mm, pose_spacings(trainer.table))
    np.testing.assert_allclose(record.atlas, read_split(trainer.table, "train").mean(axis=0), rtol=1e-6)
    _acquired_scan(config, trainer.table, tmp_path / "scan.nii.gz")

    elsewhere = tmp_path / "colleague"
    elsewhere.mkdir()
    shutil.copytree(tmp_path / "run", elsewhere / "model")
    shutil.copy(tmp_path / "scan.nii.gz", elsewhere / "scan.nii.gz")
    shutil.rmtree(tmp_path / "data")  # no table anywhere, and the colleague's folder has no data/ either
    result = run_script("reconstruct.py", "--run", "model", "--input", "scan.nii.gz", "--output", "mean.nii.gz",
                        "--std", "std.nii.gz", "--samples", "3", "--no-progress", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    mean, std = nib.load(str(elsewhere / "mean.nii.gz")), nib.load(str(elsewhere / "std.nii.gz"))
    assert mean.shape == std.shape == (16, 16, 8) and np.all(np.isfinite(mean.get_fdata()))
    assert float(std.get_fdata().max()) > 0 and (elsewhere / "mean.png").stat().st_size > 1000
    assert sorted(p.name for p in elsewhere.rglob("*.h5")) == [] and not (tmp_path / "data").exists()


def test_an_old_format_run_copied_alone_reconstructs_with_the_slab(tmp_path: Path) -> None:
    """tests/fixtures/tiny_run_v1 (format 1: no inference.npz): with the slab given it needs nothing else; asked to
    estimate the poses it says what is missing, in one line."""
    shutil.copytree(FIXTURES / "tiny_run_v1", tmp_path / "model")
    assert RunDir(str(tmp_path / "model")).format() == 1 and RunDir(str(tmp_path / "model")).inference() is None
    config = tiny_config(tmp_path / "made")
    from bruno.data.preprocess import load_slice_table

    (tmp_path / "made").mkdir()
    table = load_slice_table(config, progress=False)
    _acquired_scan(config, table, tmp_path / "scan.nii.gz")
    shutil.rmtree(tmp_path / "made")
    base = ["--run", "model", "--input", "scan.nii.gz", "--output", "mean.nii.gz", "--samples", "2", "--no-progress"]
    result = run_script("reconstruct.py", *base, cwd=tmp_path)
    assert_one_line_error(result, r"scan\.nii\.gz\[0\]: the training pose spacing is unknown .*give the slab \(--slab-mm\)")
    positions = read_acquisition([str(tmp_path / "scan.nii.gz")], config.data).positions_mm
    step = float(np.median(pose_spacings(table)))  # the phantom's slab: 8 poses of this spacing, from the first slice
    lo = float(positions[0]) - step / 2
    result = run_script("reconstruct.py", *base, "--slab-mm", str(lo), str(lo + 8 * step), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert nib.load(str(tmp_path / "mean.nii.gz")).shape == (16, 16, 8) and (tmp_path / "mean.png").is_file()
    assert sorted(p.name for p in tmp_path.rglob("*.h5")) == []


def test_a_corrupt_inference_record_is_refused(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "tiny_run_v1", tmp_path / "model")
    (tmp_path / "model" / "inference.npz").write_bytes(b"not a zip")
    with pytest.raises(RunDirError, match=r"inference\.npz: not a readable inference record"):
        RunDir(str(tmp_path / "model")).inference()
    np.savez(tmp_path / "model" / "inference.npz", pose_spacing_mm=np.array([np.inf]), atlas=np.zeros((8, 16, 16)))
    with pytest.raises(RunDirError, match="expected finite spacings > 0"):
        RunDir(str(tmp_path / "model")).inference()
