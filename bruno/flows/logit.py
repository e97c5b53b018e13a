"""Pixels → logit space, the first (parameter-free) step of the flow (SPEC §2.1).

x̃ = x + u (dequantised in the data pipeline, x̃ ∈ [0, 256)); x' = x̃/256; q = α/2 + (1−α)·x';
y = ln q − ln(1−q), with α = 1e−5. Per image, log|det| = −D·ln 256 + D·ln(1−α) + Σ(−ln q − ln(1−q)).
The upstream conditional code omits the constant D·ln(1−α) (quirk Q4, ≈ −1e−5·D nats); we include
it by default so the density is exact (``include_alpha_constant=False`` reproduces the upstream).
The inverse is the proper one, x̃ = 256·(sigmoid(y) − α/2)/(1−α), so samples come back on the
[0, 256) intensity scale.
"""
from __future__ import annotations

import math

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["ALPHA", "logit_bijector", "logit_forward_and_log_det", "logit_inverse"]

ALPHA = 1e-5


def logit_bijector(alpha: float = ALPHA, dtype: tf.DType = tf.float32) -> tfb.Bijector:
    """The TFP composition ``Invert(Sigmoid) ∘ Shift(α/2) ∘ Scale(1−α) ∘ Scale(1/256)`` for ``dtype`` inputs."""
    def constant(value: float) -> tf.Tensor:
        return tf.constant(value, dtype)

    return tfb.Chain([tfb.Invert(tfb.Sigmoid()), tfb.Shift(constant(alpha / 2.0)), tfb.Scale(constant(1.0 - alpha)),
                      tfb.Scale(constant(1.0 / 256.0))], name="logit")


def logit_forward_and_log_det(x: tf.Tensor, alpha: float = ALPHA, include_alpha_constant: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """Fused forward of :func:`logit_bijector`: x [batch, H, W, C] in [0, 256) → (y, log|det| [batch])."""
    q = alpha / 2.0 + (1.0 - alpha) * x / 256.0
    y = tf.math.log(q) - tf.math.log1p(-q)
    dims = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
    constant = -math.log(256.0) + (math.log1p(-alpha) if include_alpha_constant else 0.0)
    log_det = tf.reduce_sum(-tf.math.log(q) - tf.math.log1p(-q), axis=[1, 2, 3]) + dims * constant
    return y, log_det


def logit_inverse(y: tf.Tensor, alpha: float = ALPHA) -> tf.Tensor:
    """x̃ = 256·(sigmoid(y) − α/2)/(1 − α), back on the [0, 256) scale."""
    return 256.0 * (tf.sigmoid(y) - alpha / 2.0) / (1.0 - alpha)
