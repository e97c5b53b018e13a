from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from bruno.config import FlowConfig, ModelConfig, ProcessConfig
from bruno.models import ConditionalBruno
from bruno.reconstruction import ModelSampling
from bruno.reconstruction.method import dequantised
from tests.flows.test_coupling import randomise

TINY = ModelConfig(flow=FlowConfig(num_scales=2, num_filters=8, num_residual_blocks=1, num_dense_couplings=2, dense_units=16,
                                   embedding_size=8))
SIZE, POSES = 16, 6


@pytest.fixture(scope="module")
def model() -> ConditionalBruno:
    tf.random.set_seed(0)
    model = ConditionalBruno(SIZE, POSES, TINY)
    images, poses = batch(4, 5, seed=0)
    model.initialize(images, poses)
    return model


def batch(b: int, t: int, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(20, 230, (b, 1, SIZE, SIZE, 1))
    images = np.clip(base + rng.normal(0, 10, (b, t, SIZE, SIZE, 1)), 0, 255.99)
    poses = np.stack([np.eye(POSES)[rng.permutation(POSES)[:t]] for _ in range(b)])
    return tf.constant(images, tf.float32), tf.constant(poses, tf.float32)


def test_log_prob_shapes_and_definition(model: ConditionalBruno) -> None:
    images, poses = batch(3, 5, seed=1)
    result = model.log_prob(images, poses, num_context=3)
    assert result.log_prob.shape == (3, 2)
    z, log_det = model.encode(images, poses)
    state = model.process.condition(z[:, :3])
    expected = model.process.state_log_prob(state, z[:, 3:]) + log_det[:, 3:]
    np.testing.assert_allclose(result.log_prob.numpy(), expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(float(result.bits_per_dim), -expected.numpy().mean() / (SIZE * SIZE * math.log(2)), rtol=1e-6)
    unconditional = model.log_prob(images, poses, num_context=0)
    assert unconditional.log_prob.shape == (3, 5)
    np.testing.assert_allclose(unconditional.log_prob.numpy()[:, 0],
                               (model.process.prior_log_prob(z[:, 0]) + log_det[:, 0]).numpy(), rtol=1e-6)


def test_conditional_nll_scores_each_other_pose_alone_given_the_contexts(model: ConditionalBruno) -> None:
    images = np.random.default_rng(5).integers(20, 230, (POSES, SIZE, SIZE)).astype(np.float64)
    nll = ModelSampling(model).conditional_nll(images, [4, 1], seed=3)
    noisy, one_hot = dequantised(images, 3).astype(np.float32), np.eye(POSES, dtype=np.float32)
    expected = []
    for q in (0, 2, 3, 5):
        order = [1, 4, q]
        log_prob = model.log_prob(tf.constant(noisy[order][None, ..., None]), tf.constant(one_hot[order][None]), 2).log_prob
        expected.append(-float(log_prob[0, 0]) / (SIZE * SIZE * math.log(2)))
    np.testing.assert_allclose(nll, expected, rtol=1e-5)
    assert ModelSampling(model).conditional_nll(images, range(POSES)).shape == (0,)


def test_the_compiled_predictive_is_the_eager_one_whatever_k_was_traced_first(model: ConditionalBruno) -> None:
    """A regression: once a second k relaxed the traced shapes, the exchangeable process saw an unknown number of
    contexts as none and returned the prior."""
    images, poses = batch(1, 5, seed=7)
    queries = tf.constant(np.eye(POSES, dtype=np.float32)[None])
    for k in (1, 3, 2, 4):
        compiled = model.predictive(images[:, :k], poses[:, :k], queries)
        z, _ = model.encode(images[:, :k], poses[:, :k])
        eager = model.process.predictive(z, tf.argmax(poses[:, :k], axis=-1), tf.argmax(queries, axis=-1))
        np.testing.assert_allclose(compiled.mean.numpy(), eager.mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(compiled.variance.numpy(), eager.variance.numpy(), rtol=1e-4)


def test_the_test_time_temperature_scales_the_predictive_about_its_mean_for_samples_and_nll(model: ConditionalBruno) -> None:
    images = np.random.default_rng(6).integers(20, 230, (POSES, SIZE, SIZE)).astype(np.float64)
    noisy, one_hot = dequantised(images, 3).astype(np.float32), np.eye(POSES, dtype=np.float32)
    contexts, targets = [4, 1], [0, 2, 3, 5]
    context_args = (tf.constant(noisy[contexts][None, ..., None]), tf.constant(one_hot[contexts][None]))
    base = model.predictive(*context_args, tf.constant(one_hot[targets][None]))
    z, log_det = model.encode(tf.constant(noisy[targets][None, ..., None]), tf.constant(one_hot[targets][None]))
    model.set_temperatures({1: 2.0, 4: 0.5})
    try:
        tau = 2.0 - 1.5 * math.log(2) / math.log(4)  # k = 2: linear in log k between (1, 2.0) and (4, 0.5)
        assert [model.temperature(k) for k in (0, 1, 4, 9)] == [1.0, 2.0, 0.5, 0.5]
        assert model.temperature(2) == pytest.approx(tau)
        scaled = model.predictive(*context_args, tf.constant(one_hot[targets][None]))
        np.testing.assert_allclose(scaled.mean.numpy(), base.mean.numpy())
        np.testing.assert_allclose(scaled.variance.numpy(), base.variance.numpy() * tau ** 2, rtol=1e-6)
        # log p_τ(z) = log p_1(μ + (z − μ)/τ) − D log τ, whatever the law's family
        mean = base.mean.numpy()
        expected = base.log_prob(mean + (z.numpy() - mean) / tau).numpy() - SIZE * SIZE * math.log(tau) + log_det.numpy()
        nll = ModelSampling(model).conditional_nll(images, contexts, seed=3)
        np.testing.assert_allclose(nll, -expected[0] / (SIZE * SIZE * math.log(2)), rtol=1e-5)
        with pytest.raises(ValueError, match="expected k >= 1 and a finite"):
            model.set_temperatures({1: float("inf")})
        with pytest.raises(ValueError, match="expected k >= 1 and a finite"):
            model.set_temperatures({0: 1.0})
    finally:
        model.set_temperatures({})
    assert model.temperature(2) == 1.0


def test_contexts_are_exchangeable(model: ConditionalBruno) -> None:
    images, poses = batch(2, 5, seed=2)
    order = [2, 0, 1, 3, 4]
    a = model.log_prob(images, poses, 3).log_prob.numpy()
    b = model.log_prob(tf.gather(images, order, axis=1), tf.gather(poses, order, axis=1), 3).log_prob.numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_sampling_shapes_range_mean_and_seed(model: ConditionalBruno) -> None:
    images, poses = batch(2, 3, seed=3)
    queries = tf.constant(np.eye(POSES)[None].repeat(2, axis=0), tf.float32)
    first = model.sample(images, poses, queries, num_samples=4, seed=7, decode_batch_size=5)
    assert first.images.shape == (4, 2, POSES, SIZE, SIZE, 1) and first.mean.shape == (2, POSES, SIZE, SIZE, 1)
    values = first.images.numpy()
    assert values.min() >= 0.0 and values.max() <= 256.0 and values.std() > 1.0
    np.testing.assert_allclose(first.mean.numpy(), values.mean(0), rtol=1e-5)
    again = model.sample(images, poses, queries, num_samples=4, seed=7)
    np.testing.assert_allclose(again.images.numpy(), values, atol=1e-3)
    other = model.sample(images, poses, queries, num_samples=4, seed=8)
    assert not np.allclose(other.images.numpy(), values)


def test_prior_samples_need_no_context(model: ConditionalBruno) -> None:
    empty = tf.zeros([3, 0, SIZE, SIZE, 1])
    result = model.sample(empty, tf.zeros([3, 0, POSES]), tf.one_hot([[0, 5]] * 3, POSES), num_samples=2)
    assert result.images.shape == (2, 3, 2, SIZE, SIZE, 1)


def test_decoding_a_latent_with_its_own_pose_returns_the_slice() -> None:
    """encode → inverse at the same pose is the identity, through the model's embedding and flow."""
    model = ConditionalBruno(SIZE, POSES, TINY)
    images, poses = batch(1, 2, seed=4)
    model.encode(images, poses)
    randomise(model.flow, scale=0.05)
    z, _ = model.encode(images, poses)
    back = model.flow.inverse(tf.constant(z.numpy()[0]), pose_embedding=model.embedding(poses[0]))
    np.testing.assert_allclose(back.numpy(), images.numpy()[0], atol=1e-3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.log_prob(tf.zeros([2, 5, SIZE, SIZE]), tf.zeros([2, 5, POSES]), 1),
         r"images: shape \(2, 5, 16, 16\), expected \[batch, num_slices, 16, 16, 1\]"),
        (lambda m: m.log_prob(tf.zeros([2, 5, 8, 8, 1]), tf.zeros([2, 5, POSES]), 1), r"images: shape \(2, 5, 8, 8, 1\)"),
        (lambda m: m.log_prob(tf.zeros([2, 5, SIZE, SIZE, 1]), tf.zeros([2, 5, 7]), 1),
         r"poses: shape \(2, 5, 7\), expected \[2, 5, 6\]"),
        (lambda m: m.log_prob(tf.zeros([2, 5, SIZE, SIZE, 1]), tf.zeros([2, 4, POSES]), 1), r"poses: shape \(2, 4, 6\)"),
        (lambda m: m.log_prob(tf.zeros([2, 5, SIZE, SIZE, 1]), tf.zeros([2, 5, POSES]), 5),
         r"num_context=5, expected an integer in \[0, T\) with T=5"),
        (lambda m: m.log_prob(tf.zeros([2, 5, SIZE, SIZE, 1]), tf.zeros([2, 5, POSES]), -1), r"num_context=-1"),
        (lambda m: m.log_prob(tf.fill([2, 5, SIZE, SIZE, 1], np.nan), tf.zeros([2, 5, POSES]), 1),
         r"images: contains NaN or Inf"),
        (lambda m: m.sample(tf.zeros([1, 1, SIZE, SIZE, 1]), tf.zeros([1, 1, POSES]), tf.zeros([1, 2, POSES]), 0),
         r"num_samples=0, expected >= 1"),
        (lambda m: m.sample(tf.zeros([1, 1, SIZE, SIZE, 1]), tf.zeros([1, 1, POSES]), tf.zeros([1, 2, 3]), 1),
         r"query_poses: shape \(1, 2, 3\), expected \[1, 2, 6\]"),
        (lambda m: m.sample(tf.zeros([1, 1, SIZE, SIZE, 1]), tf.zeros([1, 1, POSES]), tf.zeros([2, 2, POSES]), 1),
         r"query_poses: shape \(2, 2, 6\), expected \[1, 2, 6\]"),
    ],
)
def test_bad_inputs_name_the_argument(model: ConditionalBruno, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call(model)


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match=r"image_size=10, expected a multiple of 2\^num_scales = 4"):
        ConditionalBruno(10, POSES, TINY)
    with pytest.raises(ValueError, match=r"num_poses=0, expected >= 1"):
        ConditionalBruno(SIZE, 0, TINY)


def test_every_config_builds_a_model() -> None:
    from bruno.config import load_config
    from tests.conftest import REPO

    for path in sorted((REPO / "config_rnn").glob("*.yaml")):
        config = load_config(path)
        model = ConditionalBruno.from_config(config)
        assert model.num_dims == config.data.image_size ** 2 and model.num_poses == config.data.num_poses
        expected = {"student_t": "StudentTProcess", "gaussian": "GaussianProcess", "pose_student_t": "PoseKernelProcess",
                    "pose_gaussian": "PoseKernelProcess", "latent_factor": "LatentFactorProcess",
                    "population": "PopulationProcess"}[config.model.process.kind]
        assert type(model.process).__name__ == expected
        if expected == "PoseKernelProcess":
            assert model.process.student == config.model.process.kind.endswith("student_t")
    for name in ("adni", "thorax_ct", "fetal"):  # the paper's configs stay faithful
        assert not load_config(REPO / f"config_rnn/{name}.yaml").model.process.has_pose_kernel


@pytest.fixture(scope="module")
def pose_model() -> ConditionalBruno:
    """The SPEC §8 variant: pose-aware process with a random latent atlas."""
    tf.random.set_seed(0)
    model = ConditionalBruno(SIZE, POSES, dataclasses.replace(TINY, process=ProcessConfig(kind="pose_student_t")))
    model.initialize(*batch(4, 5, seed=0))
    model.process.prior_atlas.assign(np.random.default_rng(0).normal(0, 1, (POSES, SIZE * SIZE)).astype(np.float32))
    return model


def test_pose_model_log_prob_scores_each_target_at_its_pose(pose_model: ConditionalBruno) -> None:
    images, poses = batch(3, 5, seed=1)
    result = pose_model.log_prob(images, poses, num_context=2)
    z, log_det = pose_model.encode(images, poses)
    index = np.argmax(poses.numpy(), -1)
    for target in range(2, 5):  # one target at a time gives the same score: targets are conditionally independent
        predictive = pose_model.process.predictive(z[:, :2], index[:, :2], index[:, target:target + 1])
        expected = pose_model.process.log_prob(predictive, z[:, target:target + 1])[:, 0] + log_det[:, target]
        np.testing.assert_allclose(result.log_prob.numpy()[:, target - 2], expected.numpy(), rtol=1e-5)
    prior = pose_model.log_prob(images, poses, num_context=0).log_prob  # n_c = 0: the atlas prior
    atlas = tf.gather(pose_model.process.prior_atlas, index)
    np.testing.assert_allclose(prior.numpy()[:, 0] - log_det.numpy()[:, 0], pose_model.process.log_prob(
        pose_model.process.predictive(z[:, :0], index[:, :0], index), z)[:, 0].numpy(), rtol=1e-5)
    assert not np.allclose(atlas.numpy(), 0.0)


def test_pose_model_predictive_differs_per_query_and_decodes(pose_model: ConditionalBruno) -> None:
    images, poses = batch(1, 2, seed=4)
    queries = tf.constant(np.eye(POSES)[None], tf.float32)
    predictive = pose_model.predictive(images, poses, queries)
    assert predictive.mean.shape == (1, POSES, SIZE * SIZE)
    assert not np.allclose(predictive.mean.numpy()[0, 0], predictive.mean.numpy()[0, 1])
    decoded = pose_model.decode_predictive_mean(images, poses, queries).numpy()
    assert decoded.shape == (1, POSES, SIZE, SIZE, 1) and 0.0 <= decoded.min() and decoded.max() <= 256.0
    context = int(np.argmax(poses.numpy()[0, 0]))  # at a context's own pose the predictive mean is (almost) its latent
    np.testing.assert_allclose(decoded[0, context], images.numpy()[0, 0], atol=0.5)
    samples = pose_model.sample(images, poses, queries, num_samples=3, seed=1)
    assert samples.images.shape == (3, 1, POSES, SIZE, SIZE, 1)


def test_exchangeable_predictive_is_shared_by_all_queries(model: ConditionalBruno) -> None:
    images, poses = batch(2, 3, seed=5)
    predictive = model.predictive(images, poses, tf.one_hot([[0, 4, 5]] * 2, POSES))
    assert predictive.mean.shape == (2, 3, SIZE * SIZE)
    np.testing.assert_array_equal(predictive.mean.numpy()[:, 0], predictive.mean.numpy()[:, 2])
