from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from bruno.config import ModelConfig, ProcessConfig
from bruno.flows.layers import PoseEmbedding
from bruno.flows.realnvp import ConditionalRealNVP, FlowArchitecture
from bruno.models import ConditionalBruno
from tests.flows.test_coupling import randomise

SMALL = FlowArchitecture(num_scales=3, num_filters=4, num_residual_blocks=1, num_dense_couplings=2, dense_units=8)


def build(size: int, architecture: FlowArchitecture, dtype: str = "float32", seed: int = 0,  # type: ignore[no-untyped-def]
          estimate: tf.Tensor | None = None):
    keras.backend.set_floatx(dtype)
    try:
        flow = ConditionalRealNVP(size, architecture)
        embedding = PoseEmbedding(4)
        e = embedding(tf.one_hot([1, 3], 5, dtype=dtype))
        flow.forward_and_log_det(tf.fill([2, size, size, 1], tf.constant(128.0, dtype)), e, estimate=estimate)
    finally:
        keras.backend.set_floatx("float32")
    randomise(flow, seed=seed, scale=0.15)
    return flow, embedding, e


def pixels(size: int, dtype=np.float32, seed: int = 1) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).uniform(1.0, 255.0, (2, size, size, 1)).astype(dtype))


def test_log_det_equals_autodiff_jacobian_on_8x8() -> None:
    flow, _, e = build(8, SMALL, "float64")
    x = pixels(8, np.float64)
    z, log_det = flow.forward_and_log_det(x, e)
    assert z.shape == (2, 64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = flow.forward_and_log_det(x, e)[0]
    jacobian = tape.batch_jacobian(out, x).numpy().reshape(2, 64, 64)
    np.testing.assert_allclose(np.linalg.slogdet(jacobian)[1], log_det.numpy(), rtol=1e-8)


@pytest.mark.parametrize("size, architecture", [
    (8, SMALL),
    (16, FlowArchitecture(num_scales=2, num_filters=8, num_residual_blocks=2, num_dense_couplings=3, dense_units=16)),
])
def test_inverts_a_fresh_tensor(size: int, architecture: FlowArchitecture) -> None:
    flow, _, e = build(size, architecture)
    x = pixels(size)
    z, _ = flow.forward_and_log_det(x, e)
    back = flow.inverse(tf.constant(z.numpy()), pose_embedding=e)  # fresh tensor: the bijector cache cannot answer
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-4)


def test_a_flow_conditioned_on_an_estimate_inverts_and_keeps_its_log_det() -> None:
    """SPEC §9.5: every coupling sees the classical estimate as extra input channels (a condition, not a variable):
    the log-det still equals the autodiff Jacobian, the flow inverts given the same estimate, and the estimate
    changes the latent."""
    estimate = pixels(8, np.float64, seed=5)
    flow, _, e = build(8, SMALL, "float64", estimate=estimate)
    x = pixels(8, np.float64)
    z, log_det = flow.forward_and_log_det(x, e, estimate=estimate)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = flow.forward_and_log_det(x, e, estimate=estimate)[0]
    jacobian = tape.batch_jacobian(out, x).numpy().reshape(2, 64, 64)
    np.testing.assert_allclose(np.linalg.slogdet(jacobian)[1], log_det.numpy(), rtol=1e-8)
    back = flow.inverse(tf.constant(z.numpy()), pose_embedding=e, estimate=estimate)
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-8)
    via_bijectors = flow.forward(x, pose_embedding=e, estimate=estimate)
    np.testing.assert_allclose(via_bijectors.numpy(), z.numpy(), rtol=1e-12)
    other, _ = flow.forward_and_log_det(x, e, estimate=pixels(8, np.float64, seed=6))
    assert np.abs(other.numpy() - z.numpy()).max() > 1e-3


def test_fused_path_equals_bijector_composition() -> None:
    flow, _, e = build(8, SMALL, "float64")
    x = pixels(8, np.float64)
    z, log_det = flow.forward_and_log_det(x, e)
    np.testing.assert_allclose(flow.forward(tf.constant(x.numpy()), pose_embedding=e).numpy(), z.numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        flow.forward_log_det_jacobian(tf.constant(x.numpy()), event_ndims=3, pose_embedding=e).numpy(), log_det.numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        flow.inverse_log_det_jacobian(tf.constant(z.numpy()), event_ndims=1, pose_embedding=e).numpy(), -log_det.numpy(), rtol=1e-9)
    assert flow.forward_event_shape([8, 8, 1]) == [64] and flow.inverse_event_shape([64]) == [8, 8, 1]


def test_changing_the_pose_changes_the_latent() -> None:
    flow, embedding, e = build(8, SMALL)
    x = pixels(8)
    z1 = flow.forward_and_log_det(x, e)[0]
    z2 = flow.forward_and_log_det(x, embedding(tf.one_hot([2, 4], 5)))[0]
    assert np.abs(z1.numpy() - z2.numpy()).max() > 1e-3


def test_latent_order_of_the_multiscale_structure() -> None:
    """With identity couplings the flow is logit + squeezes/factor-outs: check the coordinate order."""
    flow = ConditionalRealNVP(8, FlowArchitecture(num_scales=3, num_filters=2, num_residual_blocks=1, num_dense_couplings=0))
    e = tf.zeros([1, 32])
    x = pixels(8)[:1]
    flow.forward_and_log_det(x, e)
    heads = [v for v in flow.trainable_variables if any(k in v.name for k in ("head_s", "head_t", "label_s", "label_t"))]
    assert len(heads) == 16 * 6  # per conv coupling: two 1x1 heads (kernel, bias) and two label projections
    for v in heads:
        v.assign(tf.zeros_like(v))  # s = t = 0: every coupling is the identity
    z = flow.forward_and_log_det(x, e)[0].numpy().reshape(2, 2, 16)
    y = np.log(1e-5 / 2 + (1 - 1e-5) * x.numpy()[0, :, :, 0] / 256)
    y = y - np.log1p(-(1e-5 / 2 + (1 - 1e-5) * x.numpy()[0, :, :, 0] / 256))
    s1 = tf.nn.space_to_depth(y[None, :, :, None], 2).numpy()[0]  # (4, 4, 4)
    z0, h = s1[..., :2], s1[..., 2:]
    s2, z0 = tf.nn.space_to_depth(h[None], 2).numpy()[0], tf.nn.space_to_depth(z0[None], 2).numpy()[0]
    expected = np.concatenate([z0, s2[..., :4], s2[..., 4:]], axis=-1)
    np.testing.assert_allclose(z, expected, rtol=1e-5)


def test_image_size_must_divide() -> None:
    with pytest.raises(ValueError, match=r"image_size=20, expected a multiple of 2\^num_scales = 8"):
        ConditionalRealNVP(20, FlowArchitecture())


def count(variables: list[tf.Variable]) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


@pytest.mark.parametrize("num_poses, process, trainable", [(2, "gaussian", 15_460_314), (80, "student_t", 15_463_834)],
                         ids=["m1_shapenet", "paper"])
def test_parameter_counts(num_poses: int, process: str, trainable: int) -> None:
    model = ConditionalBruno(32, num_poses, ModelConfig(process=ProcessConfig(kind=process)))
    images = tf.fill([1, 1, 32, 32, 1], 100.0)
    model.encode(images, tf.one_hot([[0]], num_poses))
    assert count(model.trainable_variables) == trainable
    assert count(model.non_trainable_variables) == 13_312  # frozen label biases set by the init pass


def test_single_scale_flow_equals_a_plain_tfp_chain() -> None:
    """With one scale there is no factor-out: the flow is literally a tfb.Chain of its layers."""
    from tensorflow_probability import bijectors as tfb
    from tensorflow_probability import distributions as tfd

    from bruno.flows.logit import logit_bijector

    architecture = FlowArchitecture(num_scales=1, num_filters=4, num_residual_blocks=1, num_dense_couplings=2, dense_units=8)
    flow, _, e = build(8, architecture, "float64")
    layers = flow.scales[0].checkerboard
    chain = tfb.Chain([*reversed(flow.dense), tfb.Reshape([64], [8, 8, 1]), *reversed(layers), logit_bijector(dtype=tf.float64)])
    kwargs = {b.name: {"pose_embedding": e} for b in [*flow.dense, *layers]}
    x = pixels(8, np.float64)
    z, log_det = flow.forward_and_log_det(x, e)
    np.testing.assert_allclose(chain.forward(tf.constant(x.numpy()), **kwargs).numpy(), z.numpy(), rtol=1e-10)
    np.testing.assert_allclose(chain.forward_log_det_jacobian(tf.constant(x.numpy()), event_ndims=3, **kwargs).numpy(),
                               log_det.numpy(), rtol=1e-10)
    np.testing.assert_allclose(chain.inverse(tf.constant(z.numpy()), **kwargs).numpy(),
                               flow.inverse(tf.constant(z.numpy()), pose_embedding=e).numpy(), rtol=1e-9)
    base = tfd.MultivariateNormalDiag(tf.zeros([64], tf.float64))
    density = tfd.TransformedDistribution(base, tfb.Invert(chain))
    np.testing.assert_allclose(density.log_prob(tf.constant(x.numpy()), bijector_kwargs=kwargs).numpy(),
                               (base.log_prob(z) + log_det).numpy(), rtol=1e-10)
