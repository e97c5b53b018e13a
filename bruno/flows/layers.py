"""Weight-normalised layers with data-dependent initialisation, the pose embedding, and s/t networks.

Weight normalisation (Salimans & Kingma, 2016): W = g·V/‖V‖, the norm taken per output unit over
all other axes, V ~ N(0, 0.05²), g = 1, b = 0. *Data-dependent init* (SPEC §2.7): one call with
``init=True`` on the first batch computes the pre-activation a = W·x + b of every layer in
forward order, takes its per-unit mean m and variance s² over the batch (and spatial) axes, and
sets g ← g/√(s²+1e−10), b ← b − m/√(s²+1e−10), so that a becomes zero-mean, unit-variance. During
that pass the upstream code hands the *un-normalised* a downstream (quirk Q3, the default here,
``normalize_init_output=False``); the PixelCNN++ convention hands the normalised a
(``normalize_init_output=True``).

The pose p (one-hot, length N) is embedded once, e = leaky_relu_0.2(W_e·p + b_e) ∈ R^32, and every
s/t network adds a projection of e to each of its layers (SPEC §2.3–§2.6).

All layers are ``tf_keras`` layers (the Keras that TFP itself uses), so a ``tf.Module`` holding
them finds their variables.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

__all__ = [
    "ConvCouplingNet",
    "DenseCouplingNet",
    "PoseConv",
    "PoseDense",
    "PoseEmbedding",
    "WeightNormConv2D",
    "WeightNormDense",
]

LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default; the Keras LeakyReLU *layer* defaults to 0.3


class _WeightNorm(keras.layers.Layer):
    """Common parts: the g and b variables and the data-dependent init."""

    def __init__(self, units: int, bias_trainable: bool = True, normalize_init_output: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.bias_trainable, self.normalize_init_output = units, bias_trainable, normalize_init_output

    def _add_gain_and_bias(self) -> None:
        self.g = self.add_weight(name="g", shape=[self.units], initializer="ones")
        # Upstream keeps b even where the layer has "no bias": frozen, but set by the init pass.
        self.b = self.add_weight(name="b", shape=[self.units], initializer="zeros", trainable=self.bias_trainable)

    def _initialize(self, pre_activation: tf.Tensor) -> tf.Tensor:
        """Moments and the new g, b in the variables' dtype (float32 also when the layer computes in float16/bfloat16)."""
        dtype = getattr(self.g, "true_dtype", self.g.dtype)  # a mixed-precision variable reads as its compute dtype
        axes = list(range(pre_activation.shape.rank - 1))
        values = tf.cast(pre_activation, dtype)
        mean, variance = tf.nn.moments(values, axes=axes)
        scale = tf.math.rsqrt(variance + 1e-10)
        self.g.assign(tf.cast(self.g, dtype) * scale)
        self.b.assign(tf.cast(self.b, dtype) - mean * scale)
        if self.normalize_init_output:
            return tf.cast((values - mean) * scale, pre_activation.dtype)
        return pre_activation


class WeightNormDense(_WeightNorm):
    """Dense layer with weight normalisation: x [batch, in] → [batch, units]."""

    def build(self, input_shape: tf.TensorShape) -> None:
        self.v = self.add_weight(name="v", shape=[int(input_shape[-1]), self.units], initializer=keras.initializers.RandomNormal(0.0, 0.05))
        self._add_gain_and_bias()

    def call(self, x: tf.Tensor, init: bool = False) -> tf.Tensor:
        w = self.g * self.v / tf.norm(self.v, axis=0)
        out = tf.matmul(x, w) + self.b
        return self._initialize(out) if init else out


class WeightNormConv2D(_WeightNorm):
    """'SAME' convolution with weight normalisation: x [batch, H, W, in] → [batch, H, W, units]."""

    def __init__(self, units: int, kernel_size: int, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.kernel_size = kernel_size

    def build(self, input_shape: tf.TensorShape) -> None:
        k = self.kernel_size
        self.v = self.add_weight(name="v", shape=[k, k, int(input_shape[-1]), self.units], initializer=keras.initializers.RandomNormal(0.0, 0.05))
        self._add_gain_and_bias()

    def call(self, x: tf.Tensor, init: bool = False) -> tf.Tensor:
        w = self.g * self.v / tf.sqrt(tf.reduce_sum(tf.square(self.v), axis=[0, 1, 2]))
        out = tf.nn.conv2d(x, w, strides=1, padding="SAME") + self.b
        return self._initialize(out) if init else out


class PoseEmbedding(keras.layers.Layer):
    """e = leaky_relu_0.2(W_e·p + b_e): poses [batch, N] → [batch, size]; orthogonal W_e, zero b_e."""

    def __init__(self, size: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(size, kernel_initializer=keras.initializers.Orthogonal(), name="labels_layer")

    def call(self, poses: tf.Tensor) -> tf.Tensor:
        return tf.nn.leaky_relu(self.dense(poses), alpha=LEAKY_SLOPE)


class PoseConv(keras.layers.Layer):
    """Pose-conditioned conv CC(h) = WNConv(h) + broadcast(WNDense(e), no trainable bias) (SPEC §2.3)."""

    def __init__(self, filters: int, kernel_size: int, normalize_init_output: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conv = WeightNormConv2D(filters, kernel_size, normalize_init_output=normalize_init_output, name="conv")
        self.label = WeightNormDense(filters, bias_trainable=False, normalize_init_output=normalize_init_output, name="label")

    def call(self, h: tf.Tensor, e: tf.Tensor, init: bool = False) -> tf.Tensor:
        return self.conv(h, init=init) + self.label(e, init=init)[:, None, None, :]


class PoseDense(keras.layers.Layer):
    """Pose-conditioned dense CD(g) = WNDense([leaky_relu(WNDense(e → label_units)), g]) (SPEC §2.6)."""

    def __init__(self, units: int, label_units: int, normalize_init_output: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = WeightNormDense(label_units, normalize_init_output=normalize_init_output, name="label")
        self.dense = WeightNormDense(units, normalize_init_output=normalize_init_output, name="dense")

    def call(self, g: tf.Tensor, e: tf.Tensor, init: bool = False) -> tf.Tensor:
        label = tf.nn.leaky_relu(self.label(e, init=init), alpha=LEAKY_SLOPE)
        return self.dense(tf.concat([label, g], axis=-1), init=init)


def _label_head_initializer(orthogonal: bool) -> keras.initializers.Initializer:
    """A new initializer per call: an unseeded tf_keras initializer repeats its values when reused."""
    return keras.initializers.Orthogonal() if orthogonal else keras.initializers.Zeros()


class ConvCouplingNet(keras.layers.Layer):
    """The s/t network of a conv coupling: a pose-conditioned residual network (SPEC §2.3).

    ``u0 = ELU(CC0(x))``; R blocks ``u = ELU(CC''(ELU(CC'(u))) + u)``; then
    ``ŝ = Conv1×1_s(u) + G_s·e`` and ``t̂ = Conv1×1_t(u) + G_t·e``. The 1×1 heads start at zero; the
    label projections G are orthogonal (upstream quirk Q2, ``orthogonal_label_heads=True``) or zero.
    CC0 has a 3×3 kernel (upstream quirk Q1, ``first_kernel_size=3``) or the intended 1×1.

    Call: ``(x [batch, H, W, C], e [batch, E], init) → (ŝ, t̂)``, each [batch, H, W, C].
    """

    def __init__(self, channels: int, filters: int, num_blocks: int, first_kernel_size: int = 3,
                 orthogonal_label_heads: bool = True, normalize_init_output: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        wn = dict(normalize_init_output=normalize_init_output)
        self.first = PoseConv(filters, first_kernel_size, name="first", **wn)
        self.blocks = [
            (PoseConv(filters, 3, name=f"block{r}_a", **wn), PoseConv(filters, 3, name=f"block{r}_b", **wn))
            for r in range(num_blocks)
        ]
        self.head_s = keras.layers.Conv2D(channels, 1, kernel_initializer="zeros", name="head_s")
        self.head_t = keras.layers.Conv2D(channels, 1, kernel_initializer="zeros", name="head_t")
        self.label_s = keras.layers.Dense(channels, use_bias=False, name="label_s",
                                          kernel_initializer=_label_head_initializer(orthogonal_label_heads))
        self.label_t = keras.layers.Dense(channels, use_bias=False, name="label_t",
                                          kernel_initializer=_label_head_initializer(orthogonal_label_heads))

    def call(self, x: tf.Tensor, e: tf.Tensor, init: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        u = tf.nn.elu(self.first(x, e, init=init))
        for conv_a, conv_b in self.blocks:
            u = tf.nn.elu(conv_b(tf.nn.elu(conv_a(u, e, init=init)), e, init=init) + u)
        s = self.head_s(u) + self.label_s(e)[:, None, None, :]
        t = self.head_t(u) + self.label_t(e)[:, None, None, :]
        return s, t


class DenseCouplingNet(keras.layers.Layer):
    """The s/t network of a dense coupling (SPEC §2.6).

    ``g1 = ELU(CD(x → U))``, ``g2 = ELU(CD(g1 → U))``, then for each of ŝ and t̂ a plain dense head
    ``Dense([leaky_relu(Dense(e → U/2)), g2] → D)`` with orthogonal kernels and zero biases (the
    upstream does not zero them: quirk Q2).

    Call: ``(x [batch, D], e [batch, E], init) → (ŝ, t̂)``, each [batch, D].
    """

    def __init__(self, dims: int, units: int = 256, normalize_init_output: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        wn = dict(normalize_init_output=normalize_init_output)
        self.layer1 = PoseDense(units, dims // 2, name="layer1", **wn)
        self.layer2 = PoseDense(units, units // 2, name="layer2", **wn)
        orthogonal = keras.initializers.Orthogonal
        self.heads = {
            name: (keras.layers.Dense(units // 2, kernel_initializer=orthogonal(), name=f"label_{name}"),
                   keras.layers.Dense(dims, kernel_initializer=orthogonal(), name=f"head_{name}"))
            for name in ("s", "t")
        }

    def call(self, x: tf.Tensor, e: tf.Tensor, init: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        g = tf.nn.elu(self.layer1(x, e, init=init))
        g = tf.nn.elu(self.layer2(g, e, init=init))
        out = []
        for name in ("s", "t"):
            label, head = self.heads[name]
            out.append(head(tf.concat([tf.nn.leaky_relu(label(e), alpha=LEAKY_SLOPE), g], axis=-1)))
        return out[0], out[1]
