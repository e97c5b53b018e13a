from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from bruno.flows.coupling import ConvCoupling, DenseCoupling, conv_mask, dense_mask
from bruno.flows.layers import PoseEmbedding, WeightNormConv2D, WeightNormDense
from bruno.flows.logit import logit_bijector, logit_forward_and_log_det, logit_inverse
from bruno.flows.squeeze import Squeeze

tfb = tfp.bijectors


def randomise(module: tf.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Give every variable random non-zero values (fresh layers start as near-identities)."""
    rng = np.random.default_rng(seed)
    for v in module.variables:
        v.assign(rng.normal(0.0, scale, v.shape).astype(v.dtype.as_numpy_dtype))


def test_checkerboard_and_channel_masks() -> None:
    cb0 = conv_mask("checkerboard0", 4, 4, 2)
    np.testing.assert_array_equal(cb0[:2, :2, 0], [[0, 1], [1, 0]])
    assert (cb0[..., 0] == cb0[..., 1]).all()
    np.testing.assert_array_equal(conv_mask("checkerboard1", 4, 4, 2), 1 - cb0)
    i, j = np.meshgrid(range(4), range(4), indexing="ij")
    np.testing.assert_array_equal(cb0[..., 0], (i + j) % 2)
    ch0 = conv_mask("channel0", 2, 2, 4)
    assert (ch0[..., :2] == 1).all() and (ch0[..., 2:] == 0).all()
    np.testing.assert_array_equal(conv_mask("channel1", 2, 2, 4), 1 - ch0)
    np.testing.assert_array_equal(dense_mask("even", 6), [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(dense_mask("odd", 6), [1, 0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"mask='diagonal', expected one of checkerboard0"):
        conv_mask("diagonal", 2, 2, 2)
    with pytest.raises(ValueError, match="even number of channels, got 3"):
        conv_mask("channel0", 2, 2, 3)


def test_squeeze_channel_order_and_inverse() -> None:
    x = np.arange(4 * 4 * 3, dtype=np.float32).reshape(1, 4, 4, 3)
    y = Squeeze().forward(x).numpy()
    assert y.shape == (1, 2, 2, 12)
    for dy in range(2):
        for dx in range(2):
            for c in range(3):
                assert y[0, 1, 0, (2 * dy + dx) * 3 + c] == x[0, 2 + dy, dx, c]
    np.testing.assert_array_equal(Squeeze().inverse(tf.constant(y)).numpy(), x)
    assert Squeeze().forward_event_shape([4, 4, 3]) == [2, 2, 12]
    assert float(Squeeze().forward_log_det_jacobian(x, event_ndims=3)) == 0.0


def test_logit_fused_equals_tfp_chain_and_inverts() -> None:
    x = tf.constant(np.random.default_rng(0).uniform(0, 256, (2, 4, 4, 1)))
    y, log_det = logit_forward_and_log_det(x)
    chain = logit_bijector(dtype=tf.float64)
    np.testing.assert_allclose(y.numpy(), chain.forward(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(log_det.numpy(), chain.forward_log_det_jacobian(x, event_ndims=3).numpy(), rtol=1e-12)
    _, upstream = logit_forward_and_log_det(x, include_alpha_constant=False)
    np.testing.assert_allclose((log_det - upstream).numpy(), 16 * np.log1p(-1e-5), rtol=1e-9)
    np.testing.assert_allclose(logit_inverse(tf.constant(y.numpy())).numpy(), x.numpy(), atol=1e-9)


def make_conv_coupling(kind: str = "checkerboard0", shape=(4, 4, 2), dtype=tf.float64) -> tuple[ConvCoupling, tf.Tensor]:
    coupling = ConvCoupling(kind, shape, filters=4, num_blocks=1, name=f"c_{kind}")
    embedding = PoseEmbedding(3, dtype=dtype)(tf.one_hot([0, 2], 5, dtype=dtype))
    coupling.forward(tf.zeros([2, *shape], dtype), pose_embedding=embedding)  # build
    randomise(coupling)
    return coupling, embedding


@pytest.mark.parametrize("kind, shape", [("checkerboard0", (4, 4, 2)), ("checkerboard1", (4, 4, 1)), ("channel0", (2, 2, 4)), ("channel1", (2, 2, 4))])
def test_conv_coupling_inverts_and_log_det_matches_autodiff(kind: str, shape: tuple[int, int, int]) -> None:
    keras.backend.set_floatx("float64")
    try:
        coupling, e = make_conv_coupling(kind, shape)
    finally:
        keras.backend.set_floatx("float32")
    x = tf.constant(np.random.default_rng(1).normal(size=(2, *shape)))
    y, log_det = coupling.forward_and_log_det(x, e)
    assert not np.allclose(y.numpy(), x.numpy())  # a real transform
    mask = conv_mask(kind, *shape)
    np.testing.assert_array_equal(y.numpy()[:, mask == 1], x.numpy()[:, mask == 1])  # pass-through entries
    x_back = coupling.inverse(tf.constant(y.numpy()), pose_embedding=e)  # a fresh tensor: no bijector cache
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=1e-10)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reshape(coupling.forward_and_log_det(x, e)[0], [2, -1])
    jacobian = tape.batch_jacobian(out, x).numpy().reshape(2, out.shape[1], -1)
    np.testing.assert_allclose(np.linalg.slogdet(jacobian)[1], log_det.numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        coupling.inverse_log_det_jacobian(tf.constant(y.numpy()), event_ndims=3, pose_embedding=e).numpy(),
        -log_det.numpy(), rtol=1e-9)


def test_dense_coupling_inverts() -> None:
    coupling = DenseCoupling("odd", 8, units=6, name="d")
    e = tf.random.normal([3, 4])
    coupling.forward(tf.zeros([3, 8]), pose_embedding=e)
    randomise(coupling, scale=0.2)
    x = tf.random.normal([3, 8])
    y, log_det = coupling.forward_and_log_det(x, e)
    np.testing.assert_array_equal(y.numpy()[:, ::2], x.numpy()[:, ::2])  # odd mask: even k pass through
    np.testing.assert_allclose(coupling.inverse(tf.constant(y.numpy()), pose_embedding=e).numpy(), x.numpy(), atol=1e-5)
    assert np.abs(log_det.numpy()).max() > 1e-3


def test_conditioning_keyword_is_required() -> None:
    coupling, e = make_conv_coupling(dtype=tf.float32)
    with pytest.raises(TypeError, match="pose_embedding"):
        coupling.forward(tf.zeros([2, 4, 4, 2]))
    chain = tfb.Chain([coupling])
    with pytest.raises(TypeError, match="pose_embedding"):
        chain.forward(tf.zeros([2, 4, 4, 2]), wrong_name={"pose_embedding": e})
    routed = chain.forward(tf.ones([2, 4, 4, 2]), c_checkerboard0={"pose_embedding": e})
    np.testing.assert_allclose(routed.numpy(), coupling.forward(tf.ones([2, 4, 4, 2]), pose_embedding=e).numpy())


@pytest.mark.parametrize("normalize", [False, True])
def test_data_dependent_init(normalize: bool) -> None:
    x = tf.constant(np.random.default_rng(2).normal(3.0, 2.0, (64, 5, 5, 3)), tf.float32)
    conv = WeightNormConv2D(4, 3, normalize_init_output=normalize)
    raw = conv(x, init=True)
    after = conv(x).numpy()
    np.testing.assert_allclose(after.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(after.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
    # Upstream quirk Q3: the init pass hands on the un-normalised pre-activation.
    assert np.allclose(raw.numpy(), after, atol=1e-4) == normalize
    dense = WeightNormDense(3, bias_trainable=False)
    dense(tf.constant(np.random.default_rng(3).normal(1.0, 4.0, (50, 7)), tf.float32), init=True)
    assert abs(float(tf.reduce_sum(tf.abs(dense.b)))) > 0 and not dense.b.trainable
