"""Squeeze: [H, W, C] → [H/2, W/2, 4C] by ``tf.nn.space_to_depth(2)``; volume preserving.

The output channel index is (2·dy + dx)·C + c for the pixel offset (dy, dx) inside each 2×2 block.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["Squeeze"]


class Squeeze(tfb.Bijector):
    """Space-to-depth by 2 on events [H, W, C] (H and W even); log|det| = 0."""

    def __init__(self, name: str = "squeeze") -> None:
        super().__init__(forward_min_event_ndims=3, is_constant_jacobian=True, name=name)

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.space_to_depth(x, 2)

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        return tf.nn.depth_to_space(y, 2)

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        return tf.zeros([], dtype=x.dtype)

    def _forward_event_shape(self, shape: tf.TensorShape) -> tf.TensorShape:
        h, w, c = shape[-3:]
        return tf.TensorShape([None if h is None else h // 2, None if w is None else w // 2, None if c is None else 4 * c])

    def _inverse_event_shape(self, shape: tf.TensorShape) -> tf.TensorShape:
        h, w, c = shape[-3:]
        return tf.TensorShape([None if h is None else 2 * h, None if w is None else 2 * w, None if c is None else c // 4])

    def _forward_event_shape_tensor(self, shape: tf.Tensor) -> tf.Tensor:
        return tf.stack([shape[-3] // 2, shape[-2] // 2, 4 * shape[-1]])

    def _inverse_event_shape_tensor(self, shape: tf.Tensor) -> tf.Tensor:
        return tf.stack([2 * shape[-3], 2 * shape[-2], shape[-1] // 4])
