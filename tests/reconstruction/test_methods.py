"""One interface for every method: settings files written before the reconstruction package still load and give
the same volumes, a new method needs one module and one registry line, and the registry refuses what cannot work."""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bruno.data.preprocess import load_slice_table
from bruno.errors import ConfigError
from bruno.reconstruction import METHODS, Method, Result, Source, build_method, check_methods
from bruno.runs import RunDir, restore_model
from tests.conftest import REPO, assert_one_line_error, head_like, run_script, tiny_config, write_nifti

SETTINGS_FILE = RunDir.LATENT_VOLUME

FIXTURES = REPO / "tests/fixtures"
# Mean of each method's volume from slices [2, 5] of the first test subject of tiny.yaml's table (and, for pca,
# the mean of its std), computed by the code before issue 26 from tests/fixtures/settings_v1 (written by it then).
BEFORE = {"linear": (58.25195312500001, None), "population_mean": (59.71337890625, None),
          "pca": (53.88591831003045, 130.04647643412426), "atlas_gp": (49.25269061664559, None),
          "pca_gp": (48.46883878434103, None), "latent_pca_gp": (47.17697881438653, None)}


def test_settings_stored_by_the_code_before_the_reconstruction_package_still_load(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    table = load_slice_table(config, progress=False)
    shutil.copy(FIXTURES / "settings_v1/tiny.baselines.json", tmp_path / "tiny.baselines.json")
    shutil.copytree(FIXTURES / "tiny_run_v1", tmp_path / "run")
    shutil.copy(FIXTURES / "settings_v1/latent_volume.json", tmp_path / "run" / SETTINGS_FILE)
    stored = {path: path.read_bytes() for path in (tmp_path / "tiny.baselines.json", tmp_path / "run" / SETTINGS_FILE)}
    model = restore_model(str(tmp_path / "run"))[0]
    source = Source(table, model, str(tmp_path / "run"), progress=False)
    images = table.read(table.rows_of(int(table.volumes_in("test")[0])))
    for key, (mean, std) in BEFORE.items():
        result = build_method(key, source).reconstruct(images, [2, 5])
        np.testing.assert_allclose(result.mean.mean(), mean, rtol=1e-9 if key != "latent_pca_gp" else 1e-6)
        assert (result.std is None) == (std is None) and (std is None or np.isclose(result.std.mean(), std, rtol=1e-9))
    assert all(path.read_bytes() == data for path, data in stored.items())  # read, not searched again


class Dummy(Method):
    """A test-only method: a module with this class, and its line in the registry (here: monkeypatched in)."""

    key, label, short, needs_table = "dummy", "the constant 7", "seven", False

    @classmethod
    def build(cls, source: Source) -> Method:
        return cls()

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        return Result(np.full(np.shape(images), 7.0), None, None, list(contexts))


def test_a_new_method_needs_one_module_and_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METHODS, "dummy", Dummy)
    scan = write_nifti(tmp_path / "scan.nii.gz", head_like((24, 24, 30)), np.diag([2.0, 2.0, 2.0, 1.0]))
    result = run_script("reconstruct.py", "--config", str(REPO / "config_rnn/tiny.yaml"), "--method", "dummy", "--input",
                        str(scan), "--contexts", "1,4", "--output", str(tmp_path / "d.nii.gz"))
    assert result.returncode == 0, result.stderr
    volume = nib.load(str(tmp_path / "d.nii.gz")).get_fdata()
    assert volume.shape == (16, 16, 8) and np.ptp(volume) == 0  # 7 everywhere, in the scan's intensity units


def test_the_registry_refuses_unknown_keys_and_methods_that_need_a_run() -> None:
    with pytest.raises(ConfigError, match="method 'nope': expected one of bruno, latent_pca_gp"):
        check_methods(["nope"], has_run=True)
    with pytest.raises(ConfigError, match="method 'latent_pca_gp': needs a trained run"):
        check_methods(["linear", "latent_pca_gp"], has_run=False)


def test_evaluate_with_a_config_refuses_the_latent_volume_before_any_work(tmp_path: Path) -> None:
    """It used to search the baselines, create the output folder and end in a TypeError traceback."""
    out = tmp_path / "eval"
    assert_one_line_error(run_script("evaluate.py", "--config", str(REPO / "config_rnn/tiny.yaml"), "--latent-volume", "--out",
                                     str(out)), r"--latent-volume: needs a trained run")
    assert not out.exists()
