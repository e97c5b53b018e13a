"""The pose-aware process of SPEC §8 against closed-form multivariate oracles, in float64."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from bruno.processes import PoseKernelProcess, StudentTProcess

tfd = tfp.distributions


def make_process(rng: np.random.Generator, dims: int, poses: int, student: bool = True, kernel: str = "matern32",
                 nugget: float = 1e-3) -> PoseKernelProcess:
    """A float64 process with random per-dimension parameters and a random latent atlas."""
    process = PoseKernelProcess(dims, poses, kernel, student, nugget=nugget, dtype=tf.float64)
    process.prior_var.assign(rng.uniform(0.3, 2.0, dims))
    process.prior_corr.assign(rng.uniform(-2.0, 2.0, dims))
    process.prior_length.assign(rng.uniform(-1.0, 3.0, dims))
    if student:
        process.prior_nu.assign(rng.uniform(-1.0, 7.0, dims))
    process.prior_atlas.assign(rng.normal(0.0, 1.0, (poses, dims)))
    return process


def covariance(process: PoseKernelProcess, poses: np.ndarray, dim: int) -> np.ndarray:
    """K_d over a list of poses, written out from the formula of SPEC §8."""
    v, rho = process.variance.numpy()[dim], process.correlation.numpy()[dim]
    r = np.abs(poses[:, None] - poses[None, :]) / process.length_scale.numpy()[dim]
    kappa = (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r) if process.kernel == "matern32" else np.exp(-0.5 * r * r)
    return v * (rho + (1 - rho) * kappa + process.nugget * np.eye(len(poses)))


def joint_log_prob(process: PoseKernelProcess, z: np.ndarray, poses: np.ndarray) -> float:
    """Σ_d log p(z_{1..n, d}) of one subject's latents z [n, D] at ``poses`` from TFP's multivariate laws."""
    total = 0.0
    atlas = process.prior_atlas.numpy()
    for d in range(z.shape[1]):
        cov = covariance(process, poses, d)
        if process.df is None:
            dist = tfd.MultivariateNormalTriL(atlas[poses, d], np.linalg.cholesky(cov))
        else:
            df = process.df.numpy()[d]
            dist = tfd.MultivariateStudentTLinearOperator(  # covariance parameterisation: scale² = K·(ν−2)/ν
                df, atlas[poses, d], tf.linalg.LinearOperatorLowerTriangular(np.linalg.cholesky(cov * (df - 2) / df)))
        total += float(dist.log_prob(z[:, d]))
    return total


@pytest.mark.parametrize("student,kernel", [(True, "matern32"), (True, "rbf"), (False, "matern32")],
                         ids=["student_t-matern32", "student_t-rbf", "gaussian-matern32"])
@pytest.mark.parametrize("num_contexts", [1, 3, 6])
def test_predictive_equals_joint_ratio(student: bool, kernel: str, num_contexts: int) -> None:
    """log p(z_a | z_b) = log p(z_b, z_a) − log p(z_b) for every query of every sequence."""
    rng = np.random.default_rng(num_contexts)
    dims, num_poses, batch, queries = 5, 40, 2, 3
    process = make_process(rng, dims, num_poses, student, kernel)
    poses = np.stack([rng.choice(num_poses, num_contexts + queries, replace=False) for _ in range(batch)])
    z = rng.normal(0.0, 1.5, (batch, num_contexts + queries, dims))
    predictive = process.predictive(tf.constant(z[:, :num_contexts]), poses[:, :num_contexts], poses[:, num_contexts:])
    got = process.log_prob(predictive, tf.constant(z[:, num_contexts:])).numpy()
    for b, q in itertools.product(range(batch), range(queries)):
        items = list(range(num_contexts)) + [num_contexts + q]
        expected = (joint_log_prob(process, z[b, items], poses[b, items])
                    - joint_log_prob(process, z[b, :num_contexts], poses[b, :num_contexts]))
        np.testing.assert_allclose(got[b, q], expected, rtol=1e-9)


def test_short_length_scale_is_the_exchangeable_process() -> None:
    """ℓ → 0 with no nugget and a zero atlas: exactly SPEC §1.3 (mean, variance, df, log-density)."""
    rng = np.random.default_rng(1)
    dims, num_poses = 6, 30
    process = make_process(rng, dims, num_poses, nugget=0.0)
    process.prior_atlas.assign(tf.zeros_like(process.prior_atlas))
    process.length_min = 1e-4
    process.prior_length.assign(np.full(dims, -50.0))  # ℓ = softplus(−50) + 1e-4 ≈ 1e-4 poses
    exchangeable = StudentTProcess(dims, dtype=tf.float64)
    for name in ("prior_var", "prior_corr", "prior_nu"):
        getattr(exchangeable, name).assign(getattr(process, name))
    z = rng.normal(0.0, 1.2, (2, 7, dims))
    poses = np.array([[3, 9, 14, 20, 25, 0, 29], [1, 2, 4, 8, 16, 28, 12]])
    predictive = process.predictive(tf.constant(z[:, :5]), poses[:, :5], poses[:, 5:])
    mean, variance, df = exchangeable.predictive_parameters(exchangeable.condition(tf.constant(z[:, :5])))
    np.testing.assert_allclose(predictive.mean.numpy(), np.repeat(mean.numpy()[:, None], 2, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(predictive.variance.numpy(), np.repeat(variance.numpy()[:, None], 2, 1), rtol=1e-10)
    np.testing.assert_allclose(np.broadcast_to(predictive.df.numpy(), (2, 2, dims)), np.broadcast_to(df.numpy()[:, None], (2, 2, dims)))
    np.testing.assert_allclose(process.log_prob(predictive, tf.constant(z[:, 5:])).numpy(),
                               exchangeable.state_log_prob(exchangeable.condition(tf.constant(z[:, :5])), tf.constant(z[:, 5:])).numpy(),
                               rtol=1e-10)


def test_prior_is_the_latent_atlas() -> None:
    rng = np.random.default_rng(2)
    process = make_process(rng, 4, 10)
    predictive = process.predictive(tf.zeros([1, 0, 4], tf.float64), np.zeros([1, 0], np.int64), np.array([[7, 2]]))
    np.testing.assert_allclose(predictive.mean.numpy()[0], process.prior_atlas.numpy()[[7, 2]])
    np.testing.assert_allclose(predictive.variance.numpy()[0], np.tile(process.variance.numpy() * 1.001, (2, 1)), rtol=1e-12)
    np.testing.assert_allclose(np.ravel(predictive.df.numpy()), process.df.numpy())


def test_context_pose_returns_the_context_and_nearby_poses_lean_on_it() -> None:
    rng = np.random.default_rng(3)
    process = make_process(rng, 8, 60, nugget=1e-6)
    process.prior_length.assign(np.full(8, 2.0))  # ℓ ≈ 2.6 poses
    z = rng.normal(0.0, 1.0, (1, 3, 8))
    poses = np.array([[10, 30, 50]])
    predictive = process.predictive(tf.constant(z), poses, np.array([[30, 31, 40]]))
    np.testing.assert_allclose(predictive.mean.numpy()[0, 0], z[0, 1], atol=1e-5)
    assert np.all(predictive.variance.numpy()[0, 0] < 1e-4 * process.variance.numpy())
    variance = predictive.variance.numpy()[0]
    assert np.all(variance[0] < variance[1]) and np.all(variance[1] < variance[2])  # further from a context → less sure


def test_predictive_does_not_depend_on_the_order_of_the_contexts() -> None:
    rng = np.random.default_rng(4)
    process = make_process(rng, 5, 50)
    z = rng.normal(0.0, 1.0, (1, 4, 5))
    poses = np.array([[5, 12, 30, 44]])
    reference = process.predictive(tf.constant(z), poses, np.array([[20, 0]]))
    for order in itertools.permutations(range(4)):
        permuted = process.predictive(tf.constant(z[:, list(order)]), poses[:, list(order)], np.array([[20, 0]]))
        np.testing.assert_allclose(permuted.mean.numpy(), reference.mean.numpy(), rtol=1e-10)
        np.testing.assert_allclose(permuted.variance.numpy(), reference.variance.numpy(), rtol=1e-10)


def test_float32_matches_float64() -> None:
    """The training dtype: 8 contexts at D = 1024, default parameters plus a random atlas."""
    rng = np.random.default_rng(5)
    dims = 1024
    p64 = PoseKernelProcess(dims, 90, dtype=tf.float64)
    p32 = PoseKernelProcess(dims, 90)
    atlas = rng.normal(0.0, 1.0, (90, dims))
    p64.prior_atlas.assign(atlas)
    p32.prior_atlas.assign(atlas.astype(np.float32))
    z = rng.normal(0.0, 1.0, (4, 9, dims))
    poses = np.stack([rng.choice(90, 9, replace=False) for _ in range(4)])
    got = p32.log_prob(p32.predictive(tf.constant(z[:, :8], tf.float32), poses[:, :8], poses[:, 8:]), tf.constant(z[:, 8:], tf.float32))
    expected = p64.log_prob(p64.predictive(tf.constant(z[:, :8]), poses[:, :8], poses[:, 8:]), tf.constant(z[:, 8:]))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"kernel": "cubic"}, "kernel='cubic'"),
    ({"length_init": 0.4}, "length_init=0.4"),
    ({"nugget": -1.0}, "nugget=-1.0"),
    ({"correlation_init": 1.0}, "correlation_init=1.0"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoseKernelProcess(4, 10, **kwargs)
