"""Masks and the affine coupling bijectors of the conditional RealNVP (SPEC §2.2).

With a binary mask b (1 = pass-through entries that condition the transform):

    (ŝ, t̂) = NN(b⊙h ; e),   s = tanh(ŝ)⊙(1−b),   t = t̂⊙(1−b)
    forward:  h' = b⊙h + (1−b)⊙(h⊙exp(s) + t)         log|det| = Σ s
    inverse:  h  = b⊙h' + (1−b)⊙(h' − t)⊙exp(−s)       (NN evaluated on b⊙h' = b⊙h)

The log-scale is bounded to (−1, 1) by the tanh. An optional ``condition`` (an image or vector of the same
leading shape, SPEC §9.5's classical estimate) joins b⊙h at the network's input: a condition, not a transformed
variable, so the log-det keeps its form. The pose embedding e is a **required** keyword
argument of ``forward``/``inverse``/``forward_log_det_jacobian``, so a conditioning routed to the
wrong bijector name raises instead of silently running unconditioned (SPEC §6 pitfall 3).
``forward_and_log_det`` is the fused path (one network call for both outputs) used in training.
The network may compute in a lower precision (:mod:`bruno.precision`); its outputs are cast back to
the input's dtype before the tanh, so the affine update and the log-det sum stay float32.

Masks: ``checkerboard0`` b[i, j, c] = (i + j) mod 2 and ``checkerboard1`` its complement;
``channel0`` b = 1 on the first C/2 channels and ``channel1`` on the last C/2; dense ``even``
b[k] = k mod 2 on the flattened index k (the even entries are transformed) and ``odd`` its complement.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from bruno.flows.layers import ConvCouplingNet, DenseCouplingNet

__all__ = ["ConvCoupling", "DenseCoupling", "conv_mask", "dense_mask"]

CONV_MASKS = ("checkerboard0", "checkerboard1", "channel0", "channel1")
DENSE_MASKS = ("even", "odd")


def conv_mask(kind: str, height: int, width: int, channels: int) -> np.ndarray:
    """float32 [H, W, C] mask, 1 on the pass-through entries."""
    if kind.startswith("checkerboard"):
        i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        mask = np.repeat(((i + j) % 2)[:, :, None], channels, axis=2).astype(np.float32)
    elif kind.startswith("channel"):
        if channels % 2:
            raise ValueError(f"channel masks need an even number of channels, got {channels}")
        mask = np.zeros((height, width, channels), np.float32)
        mask[:, :, : channels // 2] = 1.0
    else:
        raise ValueError(f"mask={kind!r}, expected one of {', '.join(CONV_MASKS)}")
    return 1.0 - mask if kind.endswith("1") else mask


def dense_mask(parity: str, dims: int) -> np.ndarray:
    """float32 [D] mask, 1 on the pass-through entries: ``even`` → k mod 2, ``odd`` → 1 − k mod 2."""
    if parity not in DENSE_MASKS:
        raise ValueError(f"mask={parity!r}, expected one of {', '.join(DENSE_MASKS)}")
    return ((np.arange(dims) + DENSE_MASKS.index(parity)) % 2).astype(np.float32)


class _AffineCoupling(tfb.Bijector):
    """Shared affine coupling maths; subclasses fix the mask and the network."""

    def __init__(self, mask: np.ndarray, net: Any, event_ndims: int, name: str) -> None:
        super().__init__(forward_min_event_ndims=event_ndims, name=name)
        self._mask_np = mask
        self.net = net
        self._axes = list(range(-event_ndims, 0))

    def _mask(self, dtype: tf.DType) -> tf.Tensor:
        return tf.constant(self._mask_np, dtype=dtype)

    def _shift_and_log_scale(self, x: tf.Tensor, pose_embedding: tf.Tensor, init: bool = False,
                             condition: Optional[tf.Tensor] = None) -> tuple[tf.Tensor, tf.Tensor]:
        mask = self._mask(x.dtype)
        inputs = x * mask if condition is None else tf.concat([x * mask, tf.cast(condition, x.dtype)], axis=-1)
        raw_log_scale, shift = (tf.cast(t, x.dtype) for t in self.net(inputs, pose_embedding, init=init))
        return tf.tanh(raw_log_scale) * (1.0 - mask), shift * (1.0 - mask)

    def forward_and_log_det(self, x: tf.Tensor, pose_embedding: tf.Tensor, init: bool = False,
                            condition: Optional[tf.Tensor] = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Fused forward: (y, log|det ∂y/∂x|) with one network call; ``init`` runs the data-dependent init;
        ``condition``: extra inputs of the s/t network beside the masked x (same leading shape, any last axis)."""
        log_scale, shift = self._shift_and_log_scale(x, pose_embedding, init, condition)
        mask = self._mask(x.dtype)
        y = x * mask + (1.0 - mask) * (x * tf.exp(log_scale) + shift)
        return y, tf.reduce_sum(log_scale, axis=self._axes)

    def _forward(self, x: tf.Tensor, pose_embedding: tf.Tensor, condition: Optional[tf.Tensor] = None) -> tf.Tensor:
        return self.forward_and_log_det(x, pose_embedding, condition=condition)[0]

    def _inverse(self, y: tf.Tensor, pose_embedding: tf.Tensor, condition: Optional[tf.Tensor] = None) -> tf.Tensor:
        log_scale, shift = self._shift_and_log_scale(y, pose_embedding, condition=condition)
        mask = self._mask(y.dtype)
        return y * mask + (1.0 - mask) * (y - shift) * tf.exp(-log_scale)

    def _forward_log_det_jacobian(self, x: tf.Tensor, pose_embedding: tf.Tensor,
                                  condition: Optional[tf.Tensor] = None) -> tf.Tensor:
        return self.forward_and_log_det(x, pose_embedding, condition=condition)[1]


class ConvCoupling(_AffineCoupling):
    """Affine coupling on images [batch, H, W, C] with a checkerboard or channel mask.

    Args:
        mask_kind: one of ``checkerboard0``, ``checkerboard1``, ``channel0``, ``channel1``.
        shape: (H, W, C) of the event.
        filters, num_blocks, first_kernel_size, orthogonal_label_heads, normalize_init_output:
            see :class:`~bruno.flows.layers.ConvCouplingNet`.
        name: unique bijector name (the key of its conditioning kwargs in a ``tfb.Chain``).
    """

    def __init__(self, mask_kind: str, shape: tuple[int, int, int], filters: int, num_blocks: int,
                 first_kernel_size: int = 3, orthogonal_label_heads: bool = True,
                 normalize_init_output: bool = False, name: str = "conv_coupling") -> None:
        height, width, channels = shape
        net = ConvCouplingNet(channels, filters, num_blocks, first_kernel_size, orthogonal_label_heads,
                              normalize_init_output, name=f"{name}_net")
        super().__init__(conv_mask(mask_kind, height, width, channels), net, 3, name)
        self.mask_kind = mask_kind


class DenseCoupling(_AffineCoupling):
    """Affine coupling on vectors [batch, D] with the ``even``/``odd`` interleaved mask.

    Args:
        mask_kind: ``even`` or ``odd``.
        dims: D.
        units: hidden units U of :class:`~bruno.flows.layers.DenseCouplingNet`.
        normalize_init_output: see :mod:`bruno.flows.layers`.
        name: unique bijector name.
    """

    def __init__(self, mask_kind: str, dims: int, units: int = 256, normalize_init_output: bool = False,
                 name: str = "dense_coupling") -> None:
        net = DenseCouplingNet(dims, units, normalize_init_output, name=f"{name}_net")
        super().__init__(dense_mask(mask_kind, dims), net, 1, name)
        self.mask_kind = mask_kind
