"""The test-time spread τ(k) of a BRUNO run: chosen on val by the CRPS of its samples within a coverage band, stored in
the run directory, set on the model when it is restored, and refused when it was chosen for other weights."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bruno.commands.train import train_unless_done
from bruno.config import override
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.reconstruction.spread import COVERAGE_GOAL, TEMPERATURES, VAL_OPTIMISM, fit_spread, spread_order, val_forecast_scores
from bruno.runs import restore_model
from tests.conftest import tiny_config, train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("spread"), max_steps=10)


def test_the_spread_is_the_best_val_crps_within_the_coverage_band_per_k_and_is_restored_with_the_best_checkpoint(
        run: Path) -> None:
    table = load_slice_table(tiny_config(run.parent), progress=False)
    search = fit_spread(str(run), table, progress=False)
    assert search is not None and search["ks"] == [1, 3, 5]  # k < the 8 poses
    assert search["samples"] == 20 and search["fitted_to"]["rule"] == search["criterion"]
    for k in ("1", "3", "5"):
        grid = search["grid"][k]
        taus = [row["temperature"] for row in grid]
        assert 1.0 in taus and 3 <= len(taus) < len(TEMPERATURES)  # a descent from τ = 1, not the whole grid
        assert taus == [t for t in TEMPERATURES if taus[0] <= t <= taus[-1]]  # a contiguous stretch of it
        best = min(grid, key=spread_order)
        assert search["chosen"][k] == best["temperature"]
        at = TEMPERATURES.index(best["temperature"])
        assert {TEMPERATURES[i] for i in (at - 1, at + 1) if 0 <= i < len(TEMPERATURES)} <= set(taus)  # a local minimum
        assert all(0 <= row["cover_50"] <= row["cover_90"] <= 1 for row in grid)
        assert grid[-1]["cover_90"] > grid[0]["cover_90"]  # wider samples cover more
    val = list(read_split(table, "val"))
    untempered, _, _ = restore_model(str(run), "best", spread=False)
    at_one = next(row for row in search["grid"]["3"] if row["temperature"] == 1.0)
    assert val_forecast_scores(untempered, val, 3) == pytest.approx(
        {key: at_one[key] for key in ("val_crps", "cover_50", "cover_90")}, rel=1e-6)
    model, _, _ = restore_model(str(run), "best")
    assert model.temperatures == {int(k): tau for k, tau in search["chosen"].items()}
    assert untempered.temperatures == {}
    assert fit_spread(str(run), table, progress=False) is None  # made once for these weights


def _copy_with_fitted_to(run: Path, tmp_path: Path, key: str, value: str) -> tuple[SliceTable, Path, Path]:
    """(the table, a copy of ``run`` with its spread chosen, that copy's spread.json) with ``fitted_to[key]`` = value."""
    table = load_slice_table(tiny_config(run.parent), progress=False)
    fit_spread(str(run), table, progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    path = copy / "spread.json"
    record = json.loads(path.read_text())
    record["fitted_to"][key] = value
    path.write_text(json.dumps(record))
    return table, copy, path


def test_a_spread_chosen_for_other_weights_or_out_of_range_is_refused(run: Path, tmp_path: Path) -> None:
    table, copy, path = _copy_with_fitted_to(run, tmp_path, "model_weights_sha1", "0" * 40)
    with pytest.raises(DataFileError, match=r"spread\.json: chosen for other model weights than now"):
        restore_model(str(copy), "best")
    assert fit_spread(str(copy), table, progress=False) is not None  # chosen again
    record = json.loads(path.read_text())
    record["chosen"]["3"] = float("inf")
    path.write_text(json.dumps(record))
    with pytest.raises(DataFileError, match=r"spread\.json: not a readable test-time spread file .*expected k >= 1"):
        restore_model(str(copy), "best")


def test_choose_spread_finishes_a_run_that_is_resumed_with_it(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    run = str(tmp_path / "run")
    assert train_unless_done(override(config, "train", max_steps=4), run, seed=0, progress=False) is not None
    assert not (tmp_path / "run" / "spread.json").exists()  # off by default
    assert train_unless_done(override(config, "train", max_steps=4, choose_spread=True), run, 0, progress=False) is None
    record = json.loads((tmp_path / "run" / "spread.json").read_text())
    assert sorted(record["chosen"]) == ["1", "3", "5"] and record["fitted_to"]["checkpoint_step"] == 4
    assert np.all(np.isfinite([row["val_crps"] for rows in record["grid"].values() for row in rows]))


def test_the_spread_order_puts_the_coverage_band_before_the_crps() -> None:
    assert (COVERAGE_GOAL, VAL_OPTIMISM) == (0.03, 0.02)  # the band on val: level − .01 to level + .03
    inside = {"cover_50": 0.525, "cover_90": 0.895, "val_crps": 12.0}
    sharper = {"cover_50": 0.49, "cover_90": 0.87, "val_crps": 11.5}  # 90 % .03 short: .02 outside the band
    wider = {"cover_50": 0.545, "cover_90": 0.93, "val_crps": 13.0}  # 50 % .045 over: .015 outside
    assert spread_order(inside) == (0.0, 12.0)
    assert spread_order(sharper) == pytest.approx((0.02, 11.5)) and spread_order(wider) == pytest.approx((0.015, 13.0))
    assert sorted([sharper, wider, inside], key=spread_order) == [inside, wider, sharper]


def test_a_spread_chosen_by_another_rule_or_before_the_blend_was_recorded_is_chosen_again(run: Path, tmp_path: Path) -> None:
    table, copy, path = _copy_with_fitted_to(run, tmp_path, "rule", "mean val CRPS of 4 samples")
    assert restore_model(str(copy), "best")[0].temperatures  # a τ for these weights restores whatever chose it
    assert fit_spread(str(copy), table, progress=False) is not None  # but the search replaces it
    record = json.loads(path.read_text())
    del record["fitted_to"]["blend"]
    path.write_text(json.dumps(record))
    with pytest.raises(DataFileError, match=r"spread\.json: written before its choice depended on blend; delete it"):
        restore_model(str(copy), "best")
