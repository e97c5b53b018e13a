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
    (tmp_path / "data").mkdir()  # where the run's phantom table would be made: sampling the prior never makes it (issue 37)
    result = run_script("sample_prior.py", "model", "--output", "atlas.nii.gz", "--samples", "2", "--no-progress", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    atlas = nib.load(str(elsewhere / "atlas.nii.gz"))
    np.testing.assert_allclose(atlas.affine, trainer.table.info(int(trainer.table.volumes_in("train")[0])).affine, atol=1e-5)
    assert atlas.shape == (16, 16, 8) and list((tmp_path / "data").iterdir()) == []


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


GOOD_STATE = {"bank": np.zeros((3, 4, 5), np.float32), "shrinkage": np.float64(1.0), "checkpoint_step": np.int64(20),
              "model_weights_sha1": np.str_("a" * 40)}


@pytest.mark.parametrize("edit, pattern", [
    ({"shrinkage": np.float64(np.inf)}, r"shrinkage inf: expected one real number in \(0, 1e\+06\)"),
    ({"shrinkage": np.float64(1e300)}, r"shrinkage 1e\+300: expected one real number"),
    ({"shrinkage": np.float64(0.0)}, r"shrinkage 0\.0: expected"),
    ({"bank": np.full((3, 4, 5), 1e40)}, r"bank float64 \(3, 4, 5\): expected real floats \[V, N, D\], finite as float32"),
    ({"bank": np.array([["a"]])}, r"bank <U1 \(1, 1\): expected real floats"),
    ({"bank": np.zeros((3, 4, 5), np.complex64)}, r"bank complex64"),
    ({"checkpoint_step": np.float64(20.7)}, r"checkpoint_step 20\.7: expected one integer >= 0"),
    ({"extra": np.zeros(2)}, r"members \['bank', 'checkpoint_step', 'extra', 'model_weights_sha1', 'shrinkage'\], expected"),
    ({"model_weights_sha1": np.str_("x")}, r"model_weights_sha1 'x': expected 40 hex digits"),
])
def test_a_population_state_of_bad_values_is_refused(tmp_path: Path, edit: dict, pattern: str) -> None:
    """Issue 37, item 3: every value that once gave an all-NaN atlas or a traceback is refused naming it."""
    from bruno.runs import read_population_state

    np.savez(tmp_path / "population.npz", **{**GOOD_STATE, **edit})
    with pytest.raises(RunDirError, match=r"population\.npz: not a readable population state \(ValueError: " + pattern):
        read_population_state(RunDir(str(tmp_path)))


def test_a_population_state_reads_back_as_written(tmp_path: Path) -> None:
    from bruno.runs import read_population_state, write_population_state

    write_population_state(RunDir(str(tmp_path)), GOOD_STATE["bank"] + 1.5, 0.5, 20, "b" * 40)
    bank, shrinkage, step, weights = read_population_state(RunDir(str(tmp_path)))
    assert bank.dtype == np.float32 and float(bank.mean()) == 1.5 and (shrinkage, step, weights) == (0.5, 20, "b" * 40)
    np.savez(tmp_path / "population.npz", **{k: v for k, v in GOOD_STATE.items() if k != "model_weights_sha1"})  # an older file
    assert read_population_state(RunDir(str(tmp_path))).weights_sha1 is None
