"""The test-time blend w(k) of a BRUNO run conditioned on the classical estimate: chosen on val by the SSIM of its mean
image, stored in the run directory, set on the model when it is restored, refused when it was chosen for other weights,
and the spread τ(k) chosen after it is tied to it."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from bruno.commands.train import train_run
from bruno.config import override
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import read_split
from bruno.errors import DataFileError
from bruno.reconstruction.blend import BLEND_WEIGHTS, fit_blend, val_mean_scores
from bruno.reconstruction.spread import fit_spread
from bruno.runs import make_deterministic, restore_model
from tests.conftest import tiny_config, train_tiny_run
from tests.models.test_estimate_conditioning import conditioned


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("blend")
    config = override(conditioned(folder), "train", max_steps=10, validate_every=5, checkpoint_every=5)
    make_deterministic(0)
    train_run(config, str(folder / "run"), resume=False, overwrite=False, progress=False)
    return folder / "run"


def test_the_blend_is_the_val_ssim_argmax_per_k_and_is_restored_before_the_spread(run: Path) -> None:
    table = load_slice_table(tiny_config(run.parent), progress=False)
    search = fit_blend(str(run), table, progress=False)
    assert search is not None and search["ks"] == [1, 3, 5]
    val = list(read_split(table, "val"))
    for k in ("1", "3", "5"):
        grid = search["grid"][k]
        assert [row["weight"] for row in grid] == list(BLEND_WEIGHTS)
        assert search["chosen"][k] == max(grid, key=lambda row: row["val_ssim"])["weight"]
        assert all(0 < row["val_ssim"] <= 1 and 0 < row["val_cc"] <= 1 for row in grid)
    unblended, _, _ = restore_model(str(run), "best", blend=False)
    assert unblended.blend == {} and unblended.temperatures == {}
    at = {row["weight"]: row for row in search["grid"]["3"]}
    assert val_mean_scores(unblended, val, 3)["val_ssim"] == pytest.approx(at[1.0]["val_ssim"], rel=1e-6)
    unblended.set_blend({3: 0.0})  # the estimate alone
    assert val_mean_scores(unblended, val, 3)["val_ssim"] == pytest.approx(at[0.0]["val_ssim"], rel=1e-6)
    assert at[1.0]["val_ssim"] != at[0.0]["val_ssim"]
    model, _, _ = restore_model(str(run), "best")
    assert model.blend == {int(k): w for k, w in search["chosen"].items()}
    assert fit_blend(str(run), table, progress=False) is None  # made once for these weights
    spread = fit_spread(str(run), table, progress=False)
    assert spread is not None and spread["fitted_to"]["blend"] == search["chosen"]


def test_a_blend_for_other_weights_or_out_of_range_is_refused_and_a_new_blend_makes_the_spread_stale(
        run: Path, tmp_path: Path) -> None:
    table = load_slice_table(tiny_config(run.parent), progress=False)
    fit_blend(str(run), table, progress=False)
    fit_spread(str(run), table, progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    path = copy / "blend.json"
    record = json.loads(path.read_text())
    record["chosen"] = {k: (0.5 if w != 0.5 else 0.4) for k, w in record["chosen"].items()}  # another blend
    path.write_text(json.dumps(record))
    with pytest.raises(DataFileError, match=r"spread\.json: chosen for other blend than now"):
        restore_model(str(copy), "best")
    record["chosen"]["3"] = 1.5
    path.write_text(json.dumps(record))
    with pytest.raises(DataFileError, match=r"blend\.json: not a readable test-time blend file .*a weight in \[0, 1\]"):
        restore_model(str(copy), "best")
    record["chosen"]["3"] = 0.5
    record["fitted_to"]["model_weights_sha1"] = "0" * 40
    path.write_text(json.dumps(record))
    with pytest.raises(DataFileError, match=r"blend\.json: chosen for other model weights than now"):
        restore_model(str(copy), "best")
    assert fit_blend(str(copy), table, progress=False) is not None  # chosen again


def test_a_flow_without_the_estimate_has_nothing_to_blend(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = train_tiny_run(tmp_path, max_steps=2)
    with caplog.at_level(logging.WARNING):
        assert fit_blend(str(run), load_slice_table(tiny_config(tmp_path), progress=False), progress=False) is None
    assert "not conditioned on the classical estimate" in caplog.text and not (run / "blend.json").exists()
