"""The exchangeable processes against closed-form multivariate oracles (SPEC §1.3, §6), in float64."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from bruno.processes import GaussianProcess, StudentTProcess, sequential_log_prob

tfd = tfp.distributions


def joint_log_prob(z: np.ndarray, mean: np.ndarray, variance: np.ndarray, correlation: np.ndarray,
                   df: np.ndarray | None) -> np.ndarray:
    """log p(z_1..z_n) per dimension from TFP's multivariate distributions; z [n, D] → [D]."""
    n = z.shape[0]
    covariance = correlation * variance
    out = []
    for j in range(z.shape[1]):
        v, c = variance[j], covariance[j]
        if df is None:
            dist = tfd.MultivariateNormalDiagPlusLowRankCovariance(
                loc=np.full(n, mean[j]), cov_diag_factor=np.full(n, v - c), cov_perturb_factor=np.full((n, 1), np.sqrt(c)))
        else:
            # Symmetric square root of Σ_n = (v−c)I + c11ᵀ, scaled to the covariance parameterisation.
            gamma = (np.sqrt(v - c + n * c) - np.sqrt(v - c)) / n
            f = np.sqrt((df[j] - 2.0) / df[j])
            scale = tf.linalg.LinearOperatorLowRankUpdate(
                tf.linalg.LinearOperatorScaledIdentity(n, tf.constant(f * np.sqrt(v - c), tf.float64)),
                u=tf.constant(np.full((n, 1), np.sqrt(f * gamma)), tf.float64),
                is_self_adjoint=True, is_positive_definite=True)
            dist = tfd.MultivariateStudentTLinearOperator(df=df[j], loc=np.full(n, mean[j]), scale=scale)
        out.append(dist.log_prob(z[:, j]).numpy())
    return np.array(out)


def random_parameters(rng: np.random.Generator, dims: int, df_range=(2.5, 1000.0), max_corr=0.99):
    df = np.exp(rng.uniform(np.log(df_range[0]), np.log(df_range[1]), dims))
    correlation = rng.uniform(0.05, max_corr, dims)
    variance = rng.uniform(0.3, 3.0, dims)
    mean = rng.normal(0, 1, dims)
    return mean, variance, correlation, df


@pytest.mark.parametrize("student", [True, False], ids=["student_t", "gaussian"])
def test_sequential_log_prob_equals_joint_ratios(student: bool) -> None:
    rng = np.random.default_rng(0)
    dims, n = 6, 9
    mean, variance, correlation, df = random_parameters(rng, dims)
    correlation[0], df[1], df[2] = 0.99, 2.5, 1000.0
    z = mean + rng.normal(0, 1.5, (2, n, dims))
    got = sequential_log_prob(tf.constant(z), mean, variance, correlation, df if student else None).numpy()
    for b in range(2):
        joints = [np.zeros(dims)] + [joint_log_prob(z[b, :i], mean, variance, correlation, df if student else None)
                                     for i in range(1, n + 1)]
        expected = np.array([(joints[i + 1] - joints[i]).sum() for i in range(n)])
        np.testing.assert_allclose(got[b], expected, rtol=1e-8)


def test_sum_is_invariant_to_permutations() -> None:
    rng = np.random.default_rng(1)
    mean, variance, correlation, df = random_parameters(rng, 5)
    z = rng.normal(0, 1, (1, 5, 5))
    totals = {
        round(float(tf.reduce_sum(sequential_log_prob(tf.constant(z[:, list(p)]), mean, variance, correlation, df))), 9)
        for p in itertools.permutations(range(5))
    }
    assert len(totals) == 1
    per_item = sequential_log_prob(tf.constant(z), mean, variance, correlation, df).numpy()
    per_item_reversed = sequential_log_prob(tf.constant(z[:, ::-1]), mean, variance, correlation, df).numpy()
    assert not np.allclose(per_item, per_item_reversed[:, ::-1])  # items differ, only the sum is invariant


def exchangeable(kind: str, dims: int, variance: float, correlation: float, df: float) -> StudentTProcess | GaussianProcess:
    """The paper's Student-t process or upstream's Gaussian one, in float64."""
    if kind == "student_t":
        return StudentTProcess(dims, variance, correlation, df, tf.float64)
    return GaussianProcess(dims, variance, correlation, tf.float64)


@pytest.mark.parametrize("kind", ["student_t", "gaussian"])
def test_recursion_equals_closed_form(kind: str) -> None:
    rng = np.random.default_rng(2)
    process = exchangeable(kind, 7, 1.7, 0.4, 6.0)
    process.prior_var.assign(rng.normal(0.5, 0.2, 7))
    process.prior_corr.assign(rng.normal(-1.0, 1.0, 7))
    z = rng.normal(0, 1.3, (3, 6, 7))
    state = process.initial_state(3)
    for i in range(6):
        state = process.update(state, z[:, i])
        closed = process.condition(z[:, : i + 1])
        for a, b in zip(state, closed):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)
    targets = rng.normal(0, 1, (3, 4, 7))
    by_state = process.state_log_prob(state, targets).numpy()
    by_sequence = [sequential_log_prob(tf.concat([z, targets[:, t : t + 1]], axis=1), process.prior_mean,
                                       process.variance, process.correlation, process.df)[:, -1].numpy()
                   for t in range(4)]
    np.testing.assert_allclose(by_state, np.stack(by_sequence, axis=1), rtol=1e-10)


def test_initial_parameters_match_upstream() -> None:
    process = StudentTProcess(4)
    np.testing.assert_allclose(process.prior_var.numpy(), np.log(np.e - 1), rtol=1e-6)  # ≈ 0.5413
    np.testing.assert_allclose(process.prior_nu.numpy(), np.log(998.0), rtol=1e-6)  # ≈ 6.906
    np.testing.assert_allclose(process.prior_corr.numpy(), np.log(0.1 / 0.9), rtol=1e-6)  # ≈ −2.197
    np.testing.assert_allclose(process.variance.numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(process.df.numpy(), 1000.0, rtol=1e-5)
    assert len(process.trainable_variables) == 3 and len(GaussianProcess(4).trainable_variables) == 2


def test_prior_log_prob_is_the_first_sequential_term() -> None:
    rng = np.random.default_rng(3)
    process = StudentTProcess(5, variance_init=2.0, df_init=4.0, dtype=tf.float64)
    z = rng.normal(0, 1, (2, 3, 5))
    np.testing.assert_allclose(process.prior_log_prob(z[:, 0]).numpy(), process.sequential_log_prob(z)[:, 0].numpy())


@pytest.mark.parametrize("kind", ["student_t", "gaussian"])
def test_samples_have_the_predictive_mean_and_variance(kind: str) -> None:
    rng = np.random.default_rng(4)
    process = exchangeable(kind, 3, 1.5, 0.6, 8.0)
    state = process.condition(rng.normal(0.7, 1.0, (2, 4, 3)))
    samples = process.sample(state, 200_000, seed=11).numpy()
    assert samples.shape == (200_000, 2, 3)
    predictive = process.state_distribution(state)
    np.testing.assert_allclose(samples.mean(0), predictive.mean().numpy(), atol=0.02)
    np.testing.assert_allclose(samples.var(0), predictive.variance().numpy(), rtol=0.05)
    if kind == "student_t":  # the variance parameterisation: Var = (ν0+β−2)/(ν0+n−2)·k
        n, k, beta = 4.0, state.gaussian_variance.numpy(), state.beta.numpy()
        expected = (8.0 + beta - 2.0) / (8.0 + n - 2.0) * k
        np.testing.assert_allclose(predictive.variance().numpy(), expected, rtol=1e-6)


def test_float32_error_at_large_df() -> None:
    """float32 against float64 at ν0 = 1000, D = 4096 (reported in the issue note)."""
    rng = np.random.default_rng(5)
    dims = 4096
    z = rng.normal(0, 1, (2, 9, dims))
    args = (np.zeros(dims), np.ones(dims), np.full(dims, 0.1), np.full(dims, 1000.0))
    exact = sequential_log_prob(tf.constant(z), *args).numpy()
    single = sequential_log_prob(tf.constant(z, tf.float32), *(a.astype(np.float32) for a in args)).numpy()
    assert np.abs(single - exact).max() < 0.01  # nats per image of 4096 dims (measured 1.4e-3)
