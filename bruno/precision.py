"""Mixed precision for GPU training (``train.mixed_precision``): float16 or bfloat16 s/t networks.

Only the layers created inside :func:`compute_policy` — the pose embedding and the couplings' s/t
networks — compute in the low precision; their variables stay float32. Everything that sums many
terms stays float32: the couplings cast the networks' outputs back before the tanh, the affine
update and the log-det sum (:mod:`bruno.flows.coupling`); the pre-processing, the exchangeable
process and the loss never see a low-precision tensor; the data-dependent init takes its moments
in float32.

float16 has a narrow exponent range, so its gradients are computed on a scaled loss
(:class:`DynamicLossScale`: start at 2^15, halve and skip the update when a gradient is not finite,
double after 2,000 finite steps). Our loss is in nats per image (thousands), so the first few steps
of a run are typically skipped while the scale comes down (11 on the tiny config). bfloat16 has float32's range and needs no scaling.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Optional

import tensorflow as tf
import tf_keras as keras

from bruno.errors import ConfigError

__all__ = ["PRECISIONS", "DynamicLossScale", "compute_policy", "require_gpu"]

PRECISIONS = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def compute_policy(precision: Optional[str]) -> Iterator[None]:
    """Layers created inside compute in ``precision`` (None: float32) with float32 variables."""
    if precision is None:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def require_gpu(precision: Optional[str]) -> None:
    """Refuse mixed precision where no GPU is visible (on CPUs it is slower, bfloat16 about 8×).

    Raises:
        ConfigError: ``precision`` is set and TensorFlow sees no GPU.
    """
    if precision is not None and not tf.config.list_physical_devices("GPU"):
        raise ConfigError(f"train.mixed_precision={precision!r} needs a GPU and none is visible; "
                          "remove the key (or set it to null) to train in float32 on CPUs")


class DynamicLossScale(tf.Module):
    """The loss multiplier of float16 training, checkpointed with the optimiser.

    Args:
        initial: the starting scale.
        growth_interval: finite steps after which the scale doubles.
    """

    def __init__(self, initial: float = 2.0 ** 15, growth_interval: int = 2000) -> None:
        super().__init__(name="loss_scale")
        self.scale = tf.Variable(initial, dtype=tf.float32, trainable=False, name="scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")
        self.growth_interval = growth_interval

    def unscale(self, gradients: Sequence[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
        """Gradients of the scaled loss → true gradients, and whether all of them are finite."""
        inverse = 1.0 / self.scale
        true = [g * tf.cast(inverse, g.dtype) for g in gradients]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in true])
        return true, finite

    def update(self, finite: tf.Tensor) -> None:
        """Halve after a non-finite step; double after ``growth_interval`` finite ones."""
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), tf.maximum(self.scale / 2.0, 2.0 ** -14)))
        self.good_steps.assign(tf.where(finite, tf.where(grow, tf.constant(0, tf.int64), self.good_steps + 1),
                                        tf.constant(0, tf.int64)))
