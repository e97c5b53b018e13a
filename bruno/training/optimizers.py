"""Optimisers with TensorFlow 1 semantics, as the upstream trained with (SPEC §3).

``RMSPropTF1`` follows ``tf.compat.v1.train.RMSPropOptimizer`` with momentum 0:

    ms ← ρ·ms + (1 − ρ)·g²          (ms starts at **ones**, not zeros)
    θ  ← θ − lr·g / √(ms + ε)        (ρ = 0.9, ε = 1e-10, ε inside the square root)

Keras' RMSprop starts ms at zeros and uses ε = 1e-7 outside the root, which gives much larger first
steps. ``AdamTF1`` follows ``tf.compat.v1.train.AdamOptimizer`` (β1 = 0.9, β2 = 0.999, ε = 1e-8):
lr_t = lr·√(1 − β2^t)/(1 − β1^t), θ ← θ − lr_t·m/(√v + ε).

The learning rate is an argument of :meth:`apply`, so schedules live with the training loop. Both
are ``tf.Module``s whose slots are checkpointed with the model. Slots are created by :meth:`build`
(call it in the distribution strategy's scope, before the first traced step).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import tensorflow as tf

__all__ = ["OPTIMIZERS", "AdamTF1", "RMSPropTF1", "make_optimizer"]


class _Optimizer(tf.Module):
    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.slots: list[list[tf.Variable]] = []
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")

    def build(self, variables: Sequence[tf.Variable]) -> None:
        raise NotImplementedError

    def apply(self, gradients: Sequence[Optional[tf.Tensor]], variables: Sequence[tf.Variable], learning_rate: tf.Tensor,
              rate_scales: Optional[Sequence[float]] = None) -> None:
        """One update of ``variables`` (None gradients are skipped); ``rate_scales`` multiply the rate per variable."""
        raise NotImplementedError

    @staticmethod
    def _rates(learning_rate: tf.Tensor, variables: Sequence[tf.Variable], rate_scales: Optional[Sequence[float]]) -> list[tf.Tensor]:
        scales = [1.0] * len(variables) if rate_scales is None else rate_scales
        return [tf.cast(learning_rate * scale, v.dtype) for v, scale in zip(variables, scales)]


class RMSPropTF1(_Optimizer):
    """RMSProp as TF1 computed it (accumulator initialised to ones)."""

    def __init__(self, decay: float = 0.9, epsilon: float = 1e-10, name: str = "rmsprop_tf1") -> None:
        super().__init__(name)
        self.decay, self.epsilon = decay, epsilon

    def build(self, variables: Sequence[tf.Variable]) -> None:
        self.slots = [[tf.Variable(tf.ones_like(v), trainable=False, name="ms")] for v in variables]

    def apply(self, gradients: Sequence[Optional[tf.Tensor]], variables: Sequence[tf.Variable], learning_rate: tf.Tensor,
              rate_scales: Optional[Sequence[float]] = None) -> None:
        self.iterations.assign_add(1)
        rates = self._rates(learning_rate, variables, rate_scales)
        for gradient, variable, (mean_square,), rate in zip(gradients, variables, self.slots, rates):
            if gradient is None:
                continue
            mean_square.assign(self.decay * mean_square + (1.0 - self.decay) * tf.square(gradient))
            variable.assign_sub(rate * gradient / tf.sqrt(mean_square + self.epsilon))


class AdamTF1(_Optimizer):
    """Adam as TF1 computed it."""

    def __init__(self, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8, name: str = "adam_tf1") -> None:
        super().__init__(name)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def build(self, variables: Sequence[tf.Variable]) -> None:
        self.slots = [[tf.Variable(tf.zeros_like(v), trainable=False, name="m"),
                       tf.Variable(tf.zeros_like(v), trainable=False, name="v")] for v in variables]

    def apply(self, gradients: Sequence[Optional[tf.Tensor]], variables: Sequence[tf.Variable], learning_rate: tf.Tensor,
              rate_scales: Optional[Sequence[float]] = None) -> None:
        t = tf.cast(self.iterations.assign_add(1), tf.float32)
        corrected = learning_rate * tf.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        rates = self._rates(corrected, variables, rate_scales)
        for gradient, variable, (first, second), rate in zip(gradients, variables, self.slots, rates):
            if gradient is None:
                continue
            first.assign(self.beta_1 * first + (1.0 - self.beta_1) * gradient)
            second.assign(self.beta_2 * second + (1.0 - self.beta_2) * tf.square(gradient))
            variable.assign_sub(rate * first / (tf.sqrt(second) + self.epsilon))


OPTIMIZERS: dict[str, type[_Optimizer]] = {"rmsprop": RMSPropTF1, "adam": AdamTF1}


def make_optimizer(name: str) -> _Optimizer:
    """The optimiser ``train.optimizer`` names (:data:`OPTIMIZERS`)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r}, expected one of {', '.join(map(repr, OPTIMIZERS))}")
    return OPTIMIZERS[name]()
