"""The classical forecasters (SPEC §10.1): spreads chosen on val by CRPS per k, stored once, their laws and NLL in
closed form, and BRUNO's forecast paired against the best of them per k and score."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from bruno.baselines.kernels import matern32
from bruno.data.preprocess import load_slice_table
from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.experiments.forecast import paired_forecast_differences
from bruno.experiments.results import Evaluation
from bruno.reconstruction import forecasters
from bruno.reconstruction.classical import GaussianConditional, classical_methods
from bruno.reconstruction.forecasters import (
    ALPHAS,
    DEQUANTISATION_VARIANCE,
    NOISE_VARIANCES,
    GPForecast,
    classical_forecasters,
    forecast_settings_path,
)
from bruno.reconstruction.method import dequantised
from tests.baselines.test_classical import _volumes
from tests.conftest import tiny_config


def test_gp_variance_is_the_kernel_posterior_variance() -> None:
    from bruno.baselines.gaussian import GaussianVolumeModel

    volumes = _volumes()
    model = GaussianVolumeModel.fit(volumes)
    method = GPForecast(model, "atlas", 2.0, 0.0, np.ones(volumes.shape[1:]))
    np.testing.assert_allclose(method.gp_variance(9, []), np.ones(9))
    poses = np.arange(9.0)
    # one context, ρ = 0: v(q) = 1 − κ(|q − c| / ℓ)²
    np.testing.assert_allclose(method.gp_variance(9, [4]), 1.0 - matern32((poses - 4) / 2.0) ** 2, atol=1e-12)
    method = GPForecast(model, "pca", 3.0, 0.25, np.ones(volumes.shape[1:]))
    kernel = 0.25 + 0.75 * matern32((poses[:, None] - poses[None, :]) / 3.0)
    contexts = [1, 6]
    dense = 1.0 - np.einsum("qc,cd,qd->q", kernel[:, contexts], np.linalg.inv(kernel[np.ix_(contexts, contexts)]),
                            kernel[:, contexts])
    variance = method.gp_variance(9, contexts)
    np.testing.assert_allclose(variance, dense, atol=1e-10)
    assert variance[1] == pytest.approx(0.0, abs=1e-12) and variance[6] == pytest.approx(0.0, abs=1e-12)
    assert variance[3] < variance[8]  # further from the nearest context: wider


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[SliceTable, dict, dict]:
    table = load_slice_table(tiny_config(tmp_path_factory.mktemp("forecasters")), progress=False)
    methods, settings = classical_methods(table, progress=False)
    return table, methods, settings


def test_spreads_are_chosen_by_val_crps_per_k_and_stored(fitted: tuple[SliceTable, dict, dict],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    table, methods, settings = fitted
    made = classical_forecasters(table, methods, settings, progress=False)
    assert list(made) == ["pca_forecast", "atlas_gp_forecast", "pca_gp_forecast"]
    stored = json.loads(Path(forecast_settings_path(table)).read_text())
    assert stored["format"] == 2 and set(stored["chosen"]["pca_forecast"]) == {"1", "3", "5"}  # k <= 8 poses
    for key in made:
        for k, rows in stored["grid"][key].items():
            assert stored["chosen"][key][k] == min(rows, key=lambda row: row["val_crps"])
            assert len(rows) == (len(NOISE_VARIANCES) if key == "pca_forecast" else 2 * len(ALPHAS))
    images = table.read(table.rows_of(int(table.volumes_in("test")[0])))
    # pca_forecast is the Gaussian volume model with the σ² of its k; k = 2 takes k = 1's (the nearer, smaller on a tie)
    for contexts, k in (([3], "1"), ([1, 5], "1"), ([0, 3, 6], "3")):
        noise = stored["chosen"]["pca_forecast"][k]["noise_variance"]
        expected = GaussianConditional(methods["pca"].model.with_settings(noise_variance=noise))
        got = made["pca_forecast"].reconstruct(images, contexts)
        np.testing.assert_allclose(got.std, expected.reconstruct(images, contexts).std)
        np.testing.assert_allclose(made["pca_forecast"].conditional_nll(images, contexts),
                                   expected.conditional_nll(images, contexts))
    # a GP forecaster's law: its mean, s² = α² b² + 1/12, and the NLL of each other slice under it
    gp = made["pca_gp_forecast"]
    setting = stored["chosen"]["pca_gp_forecast"]["3"]
    mean, base = gp.mean_and_base(images, [0, 3, 6], setting["variance"])
    result = gp.reconstruct(images, [0, 3, 6], num_samples=4, seed=1)
    np.testing.assert_allclose(result.mean, mean)
    np.testing.assert_allclose(result.std ** 2, setting["alpha"] ** 2 * base ** 2 + DEQUANTISATION_VARIANCE)
    np.testing.assert_array_equal(result.mean[[0, 3, 6]], images[[0, 3, 6]])
    assert result.samples.shape == (4,) + images.shape
    noisy = dequantised(images, 2)
    expected_nll = [-norm.logpdf(noisy[q], result.mean[q], result.std[q]).mean() / math.log(2) for q in (1, 2, 4, 5, 7)]
    np.testing.assert_allclose(gp.conditional_nll(images, [0, 3, 6], seed=2), expected_nll, rtol=1e-10)
    # read back, not searched again; refused when the mean-image settings it builds on change
    monkeypatch.setattr(forecasters, "_search", lambda *args: pytest.fail("searched again"))
    again = classical_forecasters(table, methods, settings, progress=False)
    np.testing.assert_array_equal(again["pca_gp_forecast"].reconstruct(images, [2]).std, gp.reconstruct(images, [2]).std)
    other = {**settings, "chosen": {**settings["chosen"], "pca_gp": {**settings["chosen"]["pca_gp"], "length": 99.0}}}
    with pytest.raises(DataFileError, match=r"forecasters\.json: chosen for other mean settings than now"):
        classical_forecasters(table, methods, other, progress=False)


def test_forecasts_are_paired_with_the_best_classical_forecaster_per_k_and_score() -> None:
    def subject(ours: float, a: float, b: float, cover: tuple[float, float, float]) -> dict:
        return {"k": 1, "forecast": {"bruno_samples": {"crps": ours, "cov50": cover[0], "nll": math.nan},
                                     "pca_gaussian": {"crps": a, "cov50": cover[1], "nll": 3.0},
                                     "pca_gp_forecast_gaussian": {"crps": b, "cov50": cover[2], "nll": 4.0}}}

    per_subject = [subject(10.0, 12.0, 11.0, (0.55, 0.90, 0.40)), subject(12.0, 13.0, 11.5, (0.52, 0.80, 0.45)),
                   subject(9.0, 11.0, 10.0, (0.60, 0.85, 0.47))]
    table = {row: {"1": {score: float(np.mean([s["forecast"][row][score] for s in per_subject]))
                         for score in ("crps", "cov50", "nll")}} for row in per_subject[0]["forecast"]}
    results = Evaluation(ks=[1], per_subject=per_subject, forecast=table, forecast_ours=["bruno_samples"],
                         forecast_rivals=["pca_gaussian", "pca_gp_forecast_gaussian"])
    crps = paired_forecast_differences(results, "bruno_samples", "crps")["1"]
    assert crps["against"] == "pca_gp_forecast_gaussian" and crps["wins"] == 2 and crps["n"] == 3
    assert crps["mean"] == pytest.approx(np.mean([-1.0, 0.5, -1.0]))
    assert crps["se"] == pytest.approx(np.std([-1.0, 0.5, -1.0], ddof=1) / math.sqrt(3))
    cover = paired_forecast_differences(results, "bruno_samples", "cov50")["1"]  # |cover − .5|: .44 beats .85
    assert cover["against"] == "pca_gp_forecast_gaussian"
    assert cover["mean"] == pytest.approx(np.mean([0.05 - 0.10, 0.02 - 0.05, 0.10 - 0.03])) and cover["wins"] == 2
    assert paired_forecast_differences(results, "bruno_samples", "nll") == {}  # no finite NLL of ours to pair
