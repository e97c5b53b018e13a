"""The latent factor process of SPEC §9.3 against a dense multivariate Gaussian oracle, in float64."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

from bruno.processes import LatentFactorProcess, PoseKernelProcess
from tests.processes.test_pose_kernel import covariance, make_process

DIMS, POSES, FACTORS = 3, 12, 2


def make_factor_process(rng: np.random.Generator) -> LatentFactorProcess:
    process = LatentFactorProcess(DIMS, POSES, FACTORS, dtype=tf.float64)
    source = make_process(rng, DIMS, POSES, student=False)
    for name in ("prior_var", "prior_corr", "prior_length", "prior_atlas"):
        getattr(process, name).assign(getattr(source, name))
    process.prior_loadings.assign(rng.normal(0.0, 0.8, (POSES, DIMS, FACTORS)))
    return process


def dense_covariance(process: LatentFactorProcess, poses: np.ndarray) -> np.ndarray:
    """Cov of the stacked latents [(pose i, dim d)] of one subject: W Wᵀ + blockdiag_d(K_d), written out."""
    loadings = process.prior_loadings.numpy()[poses].reshape(len(poses) * DIMS, FACTORS)  # row i·D + d
    dense = loadings @ loadings.T
    for d in range(DIMS):
        index = np.arange(len(poses)) * DIMS + d
        dense[np.ix_(index, index)] += covariance(process, poses.astype(float), d)
    return dense


def oracle(process: LatentFactorProcess, z: np.ndarray, context: np.ndarray, query: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of the query's latents given the contexts' (z [n, D]) by dense conditioning."""
    poses = np.append(context, query)
    dense = dense_covariance(process, poses)
    atlas = process.prior_atlas.numpy()
    n = len(context)
    observed, target = slice(0, n * DIMS), slice(n * DIMS, (n + 1) * DIMS)
    residual = (z - atlas[context]).reshape(-1)
    gain = np.linalg.solve(dense[observed, observed], dense[observed, target]).T
    mean = atlas[query] + gain @ residual
    return mean, dense[target, target] - gain @ dense[observed, target]


def test_predictive_matches_the_dense_gaussian_conditional():
    rng = np.random.default_rng(0)
    process = make_factor_process(rng)
    contexts = np.array([[2, 7, 3], [11, 0, 5]])
    queries = np.array([[4, 9], [6, 1]])
    z = rng.normal(0.0, 1.3, (2, 3, DIMS))
    predictive = process.predictive(tf.constant(z), contexts, queries)
    covariances = predictive.distribution().covariance().numpy()
    targets = rng.normal(0.0, 1.0, (2, 2, DIMS))
    log_prob = process.log_prob(predictive, tf.constant(targets)).numpy()
    for b in range(2):
        for q in range(2):
            mean, cov = oracle(process, z[b], contexts[b], queries[b, q])
            np.testing.assert_allclose(predictive.mean.numpy()[b, q], mean, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(covariances[b, q], cov, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(predictive.marginal_variance().numpy()[b, q], np.diag(cov), rtol=1e-8)
            np.testing.assert_allclose(log_prob[b, q], multivariate_normal(mean, cov).logpdf(targets[b, q]), rtol=1e-8)


def test_prior_is_the_atlas_with_the_loadings_covariance():
    rng = np.random.default_rng(1)
    process = make_factor_process(rng)
    predictive = process.predictive(tf.zeros([1, 0, DIMS], tf.float64), np.zeros([1, 0], np.int64), np.array([[5]]))
    dense = dense_covariance(process, np.array([5]))
    np.testing.assert_allclose(predictive.mean.numpy()[0, 0], process.prior_atlas.numpy()[5], rtol=1e-12)
    np.testing.assert_allclose(predictive.distribution().covariance().numpy()[0, 0], dense, rtol=1e-10)


def test_zero_loadings_are_the_gaussian_pose_kernel_process():
    rng = np.random.default_rng(2)
    process = make_factor_process(rng)
    process.prior_loadings.assign(tf.zeros_like(process.prior_loadings))
    kernel = PoseKernelProcess(DIMS, POSES, student=False, dtype=tf.float64)
    for name in ("prior_var", "prior_corr", "prior_length", "prior_atlas"):
        getattr(kernel, name).assign(getattr(process, name))
    z, targets = rng.normal(0.0, 1.0, (2, 4, DIMS)), rng.normal(0.0, 1.0, (2, 3, DIMS))
    contexts, queries = np.array([[0, 3, 6, 9], [1, 2, 10, 11]]), np.array([[1, 4, 8], [0, 5, 7]])
    ours = process.predictive(tf.constant(z), contexts, queries)
    theirs = kernel.predictive(tf.constant(z), contexts, queries)
    np.testing.assert_allclose(ours.mean.numpy(), theirs.mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.marginal_variance().numpy(), theirs.variance.numpy(), rtol=1e-12)
    np.testing.assert_allclose(process.log_prob(ours, targets).numpy(), kernel.log_prob(theirs, targets).numpy(), rtol=1e-10)


def test_set_from_pca_sets_atlas_loadings_and_variance():
    process = LatentFactorProcess(DIMS, POSES, FACTORS, dtype=tf.float64)
    rng = np.random.default_rng(3)
    mean, loadings = rng.normal(size=(POSES, DIMS)), rng.normal(size=(POSES, DIMS, FACTORS))
    process.set_from_pca(loadings, mean, np.array([0.5, 2.0, 1e-9]))
    np.testing.assert_allclose(process.prior_atlas.numpy(), mean)
    np.testing.assert_allclose(process.prior_loadings.numpy(), loadings)
    np.testing.assert_allclose(process.variance.numpy(), [0.5, 2.0, 1e-4], rtol=1e-9)
    process.set_from_pca(2 * loadings)  # μ and v kept
    np.testing.assert_allclose(process.prior_loadings.numpy(), 2 * loadings)
    np.testing.assert_allclose(process.variance.numpy(), [0.5, 2.0, 1e-4], rtol=1e-9)
    with pytest.raises(ValueError, match="loadings: shape"):
        process.set_from_pca(loadings[..., :1], mean, np.ones(DIMS))
    with pytest.raises(ValueError, match="num_factors=0"):
        LatentFactorProcess(DIMS, POSES, 0)
