"""Classical baselines (SPEC §9): the Gaussian volume model against a dense Gaussian oracle, GP residual
weights, and the stored hyper-parameter search."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bruno.baselines.gaussian import GaussianVolumeModel
from bruno.baselines.kernels import matern32, residual_weights
from bruno.data.preprocess import build_slice_table
from bruno.errors import DataFileError
from bruno.reconstruction.classical import ResidualInterpolation, classical_methods, settings_path
from tests.conftest import phantom_config

POSES, SIZE = 4, 3


def _volumes(count: int = 9, seed: int = 0) -> np.ndarray:
    """Correlated random volumes [V, 4, 3, 3]: a few smooth modes plus noise, on a 0..255-like scale."""
    rng = np.random.default_rng(seed)
    modes = rng.normal(size=(3, POSES * SIZE * SIZE))
    return (120 + 30 * rng.normal(size=(count, 3)) @ modes + 5 * rng.normal(size=(count, POSES * SIZE * SIZE))
            ).reshape(count, POSES, SIZE, SIZE)


def _dense_conditional(model: GaussianVolumeModel, images: np.ndarray, contexts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The textbook Gaussian conditional with the full n × n covariance C = W Wᵀ + σ² I."""
    n = model.mean.size
    cov = model.loadings @ model.loadings.T + model.noise_variance * np.eye(n)
    observed = np.zeros(model.mean.shape, bool)
    observed[contexts] = True
    o, u = observed.ravel(), ~observed.ravel()
    mu, x = model.mean.ravel(), images.ravel()
    gain = cov[np.ix_(u, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
    mean, var = x.copy(), np.zeros(n)
    mean[u] = mu[u] + gain @ (x[o] - mu[o])
    var[u] = np.diag(cov[np.ix_(u, u)] - gain @ cov[np.ix_(o, u)])
    return mean.reshape(model.mean.shape), var.reshape(model.mean.shape)


@pytest.mark.parametrize("rank, noise", [(3, 4.0), (8, 50.0), (5, 1000.0)])
def test_gaussian_conditional_matches_the_dense_oracle(rank: int, noise: float) -> None:
    model = GaussianVolumeModel.fit(_volumes(), rank, noise)
    subject = _volumes(1, seed=7)[0]
    for contexts in ([1], [0, 3], [2, 1, 3]):
        posterior = model.condition(subject, contexts)
        mean, var = _dense_conditional(model, subject, contexts)
        np.testing.assert_allclose(posterior.mean, mean, rtol=1e-8)
        np.testing.assert_allclose(posterior.variance, var, rtol=1e-8, atol=1e-9)
        assert model.condition(subject, contexts, variance=False).variance is None


@pytest.mark.parametrize("rank, noise", [(3, 4.0), (8, 50.0), (5, 1000.0)])
def test_gaussian_slice_log_density_matches_the_dense_oracle(rank: int, noise: float) -> None:
    model = GaussianVolumeModel.fit(_volumes(), rank, noise)
    subject = _volumes(1, seed=7)[0]
    n = model.mean.size
    cov = model.loadings @ model.loadings.T + noise * np.eye(n)
    index = np.arange(n).reshape(model.mean.shape)
    for contexts in ([1], [0, 3], [2, 1]):
        o = index[sorted(contexts)].ravel()
        expected = []
        for q in (q for q in range(POSES) if q not in contexts):
            t = index[q].ravel()
            gain = cov[np.ix_(t, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
            mean = model.mean.ravel()[t] + gain @ (subject.ravel()[o] - model.mean.ravel()[o])
            expected.append(multivariate_normal(mean, cov[np.ix_(t, t)] - gain @ cov[np.ix_(o, t)]).logpdf(subject.ravel()[t]))
        np.testing.assert_allclose(model.slice_log_density(subject, contexts), expected, rtol=1e-8)


def test_gaussian_model_limits_and_fit() -> None:
    volumes = _volumes()
    model = GaussianVolumeModel.fit(volumes, noise_variance=2.0)
    assert model.rank == len(volumes) - 1
    subject = _volumes(1, seed=3)[0]
    prior = model.condition(subject, [])
    np.testing.assert_allclose(prior.mean, volumes.mean(0), rtol=1e-12)  # no slices: the atlas
    prior_var = model.noise_variance + np.sum(model.loadings ** 2, axis=1).reshape(model.mean.shape)
    np.testing.assert_allclose(prior.variance, prior_var, rtol=1e-10)
    everything = model.condition(subject, range(POSES))  # every slice: returned as acquired, no spread
    np.testing.assert_array_equal(everything.mean, subject)
    np.testing.assert_array_equal(everything.variance, 0.0)
    # With all V − 1 directions, W Wᵀ + σ² I on the sample's span is the sample covariance (λ > σ²).
    centred = (volumes - volumes.mean(0)).reshape(len(volumes), -1)
    sample_cov = centred.T @ centred / (len(volumes) - 1)
    span = model.loadings / np.linalg.norm(model.loadings, axis=0)
    np.testing.assert_allclose(span.T @ (model.loadings @ model.loadings.T + 2.0 * np.eye(centred.shape[1])) @ span,
                               span.T @ sample_cov @ span, rtol=1e-8, atol=1e-6)
    assert model.with_settings(rank=1000).rank == model.max_rank == len(volumes) - 1
    with pytest.raises(ValueError, match="at least 2"):
        GaussianVolumeModel.fit(volumes[:1])
    with pytest.raises(ValueError, match="noise_variance=0"):
        model.with_settings(noise_variance=0.0)


def test_gaussian_samples_follow_the_conditional_law() -> None:
    model = GaussianVolumeModel.fit(_volumes(), 4, 20.0)
    subject = _volumes(1, seed=5)[0]
    samples = model.sample(subject, [1, 2], num_samples=20000, seed=0)
    posterior = model.condition(subject, [1, 2])
    assert samples.shape == (20000, POSES, SIZE, SIZE)
    np.testing.assert_array_equal(samples[:, [1, 2]], np.broadcast_to(subject[[1, 2]], (20000, 2, SIZE, SIZE)))
    sd = np.sqrt(posterior.variance[[0, 3]])
    assert np.all(np.abs(samples[:, [0, 3]].mean(0) - posterior.mean[[0, 3]]) < 5 * sd / np.sqrt(20000))
    np.testing.assert_allclose(samples[:, [0, 3]].var(0), posterior.variance[[0, 3]], rtol=0.05)
    np.testing.assert_array_equal(model.sample(subject, [1, 2], 3, seed=4), model.sample(subject, [1, 2], 3, seed=4))


def test_gaussian_model_at_64x64() -> None:
    volumes = np.random.default_rng(0).uniform(0, 255, (6, 120, 64, 64))
    model = GaussianVolumeModel.fit(volumes, noise_variance=100.0)
    posterior = model.condition(volumes[0], [30, 60, 90])
    assert posterior.mean.shape == posterior.variance.shape == (120, 64, 64) and model.loadings.shape == (120 * 64 * 64, 5)
    np.testing.assert_array_equal(posterior.mean[60], volumes[0][60])


def test_residual_weights_reproduce_contexts_and_interpolate() -> None:
    weights = residual_weights(12, [2, 7, 10], length=3.0, rho=0.3)
    assert weights.shape == (12, 3)
    np.testing.assert_allclose(weights[[2, 7, 10]], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(matern32(np.array([0.0, 1.0])), [1.0, (1 + np.sqrt(3)) * np.exp(-np.sqrt(3))])
    # One context: w_q = K(q, c)/K(c, c) = ρ + (1 − ρ) κ(|q − c|/ℓ).
    single = residual_weights(6, [1], length=2.0, rho=0.25)[:, 0]
    np.testing.assert_allclose(single, 0.25 + 0.75 * matern32((np.arange(6) - 1) / 2.0), rtol=1e-12)
    with pytest.raises(ValueError, match="rho=1"):
        residual_weights(6, [1], length=2.0, rho=1.0)
    with pytest.raises(ValueError, match="repeated"):
        residual_weights(6, [1, 1], length=2.0, rho=0.0)


def test_residual_interpolation_on_both_priors() -> None:
    model = GaussianVolumeModel.fit(_volumes(), 4, 30.0)
    subject = _volumes(1, seed=9)[0]
    for prior in ("atlas", "pca"):
        method = ResidualInterpolation(model, prior, length=2.0, rho=0.1)
        estimate = method.reconstruct(subject, [3, 0])
        np.testing.assert_array_equal(estimate.mean[[0, 3]], subject[[0, 3]])
        base = model.mean if prior == "atlas" else model.condition(subject, [0, 3]).projection
        w = residual_weights(POSES, [0, 3], 2.0, 0.1)
        expected = base[1] + w[1, 0] * (subject[0] - base[0]) + w[1, 1] * (subject[3] - base[3])
        np.testing.assert_allclose(estimate.mean[1], expected, rtol=1e-10)
        np.testing.assert_allclose(method.reconstruct(subject, []).mean, model.mean)


def test_search_is_stored_and_checked(tmp_path: Path) -> None:
    table = build_slice_table(phantom_config(tmp_path, subjects=8), progress=False)
    methods, settings = classical_methods(table, progress=False)
    assert list(methods) == ["linear", "population_mean", "pca", "atlas_gp", "pca_gp"]
    stored = Path(settings_path(table))
    assert stored.is_file() and json.loads(stored.read_text())["chosen"] == settings["chosen"]
    best = max(settings["grid"]["pca"], key=lambda s: s["val_ssim"])
    assert settings["chosen"]["pca"] == best and methods["pca"].model.rank == best["rank"]
    again, _ = classical_methods(table, progress=False)  # read back, not searched again
    images = table.read(table.rows_of(int(table.volumes_in("test")[0])))
    for key in methods:
        contexts = [2, 5] if key != "population_mean" else []
        np.testing.assert_array_equal(methods[key].reconstruct(images, contexts).mean, again[key].reconstruct(images, contexts).mean)
    stored.write_text("{not json")
    with pytest.raises(DataFileError, match=r"baselines\.json: not a readable baseline settings file"):
        classical_methods(table, progress=False)
    for key in ("train_subjects_sha1", "val_subjects_sha1"):  # the fingerprint of what they were chosen on
        stored.write_text(json.dumps({**settings, "fitted_to": {**settings["fitted_to"], key: "0" * 40}}))
        with pytest.raises(DataFileError, match=rf"chosen for other {key.split('_')[0]} subjects than now"):
            classical_methods(table, progress=False)
    for key, name, value, message in (  # hand-edited values (issue 37, item 9): JSON's Infinity, 1e309, 1e9 as a rank
            ("pca", "noise_variance", "Infinity", r"pca noise_variance inf: expected a finite number > 0"),
            ("pca_gp", "length", "1e309", r"pca_gp length inf: expected a finite number > 0"),
            ("pca", "rank", 1e9, r"pca rank 1000000000\.0: expected an integer >= 1"),
            ("atlas_gp", "rho", "NaN", r"atlas_gp rho nan: expected a number in \[0, 1\)")):
        chosen = {**settings["chosen"], key: {**settings["chosen"][key], name: "@"}}
        stored.write_text(json.dumps({**settings, "chosen": chosen}).replace('"@"', str(value)))
        with pytest.raises(DataFileError, match=r"not a readable baseline settings file \(ValueError: " + message):
            classical_methods(table, progress=False)


def test_without_a_val_split_only_the_simple_baselines(tmp_path: Path) -> None:
    from bruno.config import SplitConfig

    table = build_slice_table(phantom_config(tmp_path, subjects=6, split=SplitConfig(train=0.5, val=0.0, test=0.5, seed=0)),
                              progress=False)
    methods, settings = classical_methods(table, progress=False, required=False)
    assert list(methods) == ["linear", "population_mean"] and settings["chosen"] == {}
    assert not Path(settings_path(table)).exists()
    with pytest.raises(DataFileError, match=r"need >= 2 train volumes and >= 1 val volume"):
        classical_methods(table, progress=False)


def test_the_cross_fitted_estimate_never_uses_a_pca_that_saw_the_subject() -> None:
    from bruno.baselines import CrossFittedEstimate, gp_residual

    volumes = _volumes(count=12, seed=3)
    cross = CrossFittedEstimate(volumes, rank=3, noise_variance=50.0, length=2.0, rho=0.1, folds=3, seed=1)
    assert sorted(np.bincount(cross.fold_of).tolist()) == [4, 4, 4]
    subject, contexts = 5, [0, 2]
    refit = GaussianVolumeModel.fit(volumes[cross.fold_of != cross.fold_of[subject]], 3, 50.0)  # the others' PCA
    np.testing.assert_allclose(cross.for_subject(subject).model.mean, refit.mean)
    expected = gp_residual(refit.condition(volumes[subject], contexts, variance=False).projection,
                           volumes[subject][contexts], contexts, 2.0, 0.1)
    np.testing.assert_allclose(cross.estimate(volumes[subject], contexts, subject), expected, rtol=1e-10)
    np.testing.assert_allclose(cross.estimate(volumes[subject], contexts, subject)[contexts], volumes[subject][contexts])
    full = GaussianVolumeModel.fit(volumes, 3, 50.0)  # a new patient: every train subject
    np.testing.assert_allclose(cross.estimate(volumes[subject], [], None), full.mean)
    assert not np.allclose(cross.estimate(volumes[subject], contexts, subject), cross.estimate(volumes[subject], contexts))
    with pytest.raises(ValueError, match="expected folds >= 2 and >= 2 volumes per fold"):
        CrossFittedEstimate(volumes[:5], 3, 50.0, 2.0, 0.1, folds=3)
