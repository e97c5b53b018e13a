"""The population process of SPEC §9.4 against a dense Gaussian oracle, in float64, and its bank."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

from bruno.processes import PopulationProcess
from tests.processes.test_pose_kernel import covariance, make_process

DIMS, POSES, SUBJECTS = 3, 12, 5


def make_population(rng: np.random.Generator) -> PopulationProcess:
    process = PopulationProcess(DIMS, POSES, shrinkage_init=0.7, dtype=tf.float64)
    source = make_process(rng, DIMS, POSES, student=False)
    for name in ("prior_var", "prior_corr", "prior_length"):
        getattr(process, name).assign(getattr(source, name))
    process.fill(rng.normal(0.5, 1.0, (SUBJECTS, POSES, DIMS)))
    return process


def oracle(process: PopulationProcess, z: np.ndarray, context: np.ndarray, query: int,
           others: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of the query's latents given the contexts' by dense conditioning, with the
    population written out: μ the others' mean, Cov = c² · their sample covariance + blockdiag_d(K_d)."""
    poses = np.append(context, query)
    bank = process.population_bank.numpy()[others][:, poses].reshape(len(others), -1)  # column i·D + d
    mean = bank.mean(axis=0)
    dense = process.shrinkage.numpy() ** 2 * np.cov(bank, rowvar=False)
    for d in range(DIMS):
        index = np.arange(len(poses)) * DIMS + d
        dense[np.ix_(index, index)] += covariance(process, poses.astype(float), d)
    n = len(context)
    observed, target = slice(0, n * DIMS), slice(n * DIMS, (n + 1) * DIMS)
    gain = np.linalg.solve(dense[observed, observed], dense[observed, target]).T
    return mean[target] + gain @ (z.reshape(-1) - mean[observed]), dense[target, target] - gain @ dense[observed, target]


@pytest.mark.parametrize("leave_out", [None, [2, -1]])
def test_predictive_matches_the_dense_gaussian_conditional(leave_out):
    rng = np.random.default_rng(1)
    process = make_population(rng)
    contexts, queries = np.array([[2, 7, 3], [11, 0, 5]]), np.array([[4, 9], [6, 1]])
    z = rng.normal(0.0, 1.3, (2, 3, DIMS))
    predictive = process.predictive(tf.constant(z), contexts, queries, None if leave_out is None else tf.constant(leave_out))
    covariances = predictive.distribution().covariance().numpy()
    targets = rng.normal(0.0, 1.0, (2, 2, DIMS))
    log_prob = process.log_prob(predictive, tf.constant(targets)).numpy()
    for b in range(2):
        others = [v for v in range(SUBJECTS) if leave_out is None or v != leave_out[b]]
        for q in range(2):
            mean, cov = oracle(process, z[b], contexts[b], queries[b, q], others)
            np.testing.assert_allclose(predictive.mean.numpy()[b, q], mean, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(covariances[b, q], cov, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(log_prob[b, q], multivariate_normal(mean, cov).logpdf(targets[b, q]), rtol=1e-8)


def test_leaving_a_subject_out_changes_only_its_own_sequence():
    rng = np.random.default_rng(2)
    process = make_population(rng)
    contexts, queries = np.array([[2, 7], [2, 7]]), np.array([[4], [4]])
    z = tf.constant(rng.normal(0.0, 1.0, (2, 2, DIMS)))
    everyone = process.predictive(z, contexts, queries)
    left = process.predictive(z, contexts, queries, tf.constant([3, -1]))
    assert np.abs(left.mean.numpy()[0] - everyone.mean.numpy()[0]).max() > 1e-3
    np.testing.assert_allclose(left.mean.numpy()[1], everyone.mean.numpy()[1], rtol=1e-12)
    np.testing.assert_allclose(left.factor.numpy()[1, ..., :SUBJECTS], everyone.factor.numpy()[1], rtol=1e-12)


def test_the_prior_is_the_population_mean_and_covariance():
    process = make_population(np.random.default_rng(3))
    prior = process.predictive(tf.zeros([1, 0, DIMS], tf.float64), np.zeros([1, 0], np.int64), np.array([[6]]))
    bank = process.population_bank.numpy()[:, 6]
    np.testing.assert_allclose(prior.mean.numpy()[0, 0], bank.mean(axis=0), rtol=1e-12)
    expected = process.shrinkage.numpy() ** 2 * np.cov(bank, rowvar=False) + np.diag(process.variance.numpy() * 1.001)
    np.testing.assert_allclose(prior.distribution().covariance().numpy()[0, 0], expected, rtol=1e-10)


def test_training_scores_leave_the_subject_out_and_write_its_latents_into_the_bank():
    rng = np.random.default_rng(4)
    process = make_population(rng)
    before = process.population_bank.numpy().copy()
    z, poses = tf.constant(rng.normal(0.0, 1.0, (2, 3, DIMS))), tf.constant([[1, 5, 8], [0, 2, 3]], tf.int64)
    expected = process.log_prob(process.predictive(z[:, :1], poses[:, :1], poses[:, 1:], tf.constant([4, -1])), z[:, 1:])
    scores = process.sequence_log_prob(z, poses, 1, tf.constant([4, -1]))
    np.testing.assert_allclose(scores.numpy(), expected.numpy(), rtol=1e-12)
    after = process.population_bank.numpy()
    np.testing.assert_array_equal(after[4, [1, 5, 8]], z.numpy()[0])
    changed = np.ones(after.shape[:2], bool)
    changed[4, [1, 5, 8]] = False
    np.testing.assert_array_equal(after[changed], before[changed])  # the row −1 is written nowhere


def test_a_bank_of_the_wrong_shape_or_too_few_subjects_is_refused():
    process = PopulationProcess(DIMS, POSES, dtype=tf.float64)
    for latents in (np.zeros((2, POSES, DIMS)), np.zeros((5, POSES + 1, DIMS)), np.zeros((POSES, DIMS))):
        with pytest.raises(ValueError, match="bank latents: shape"):
            process.fill(latents)
    with pytest.raises(ValueError, match="shrinkage_init=0, expected > 0"):
        PopulationProcess(DIMS, POSES, shrinkage_init=0)
    assert "prior_atlas" not in {v.name.split(":")[0] for v in process.variables}
