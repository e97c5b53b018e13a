"""The multi-scale conditional RealNVP (SPEC §2.5): images [H, W, 1] → latent vectors [D = H·W].

With S scales (S = 3 in the paper; H and W divisible by 2^S)::

    x [H, W, 1] in [0, 256) ──logit──► h
    scale s < S−1:  CB0 CB1 CB0 ─► squeeze h (and z) ─► CH0 CH1 CH0 ─► factor out: z ← [z, h[:C/2]], h ← h[C/2:]
    scale S−1:      CB0 CB1 CB0 CB1
    z ← [z, h]  [H/2^(S−1), W/2^(S−1), 4^(S−1)]  ─► flatten (row-major) ─► dense couplings even, odd, even, …

(CB = checkerboard coupling, CH = channel coupling, [a, b] = channel concatenation.) For S = 3 and
32×32 inputs the latent grid is (8, 8, 16), D = 1024. Factoring out changes no density: every
coordinate of the final vector goes to the same exchangeable process, so the structure only fixes
the order of the coordinates, which the dense even/odd masks see. The inverse walks back: the
last C_h channels of z are the last scale's h; before each earlier scale's channel couplings, as
many trailing z channels as h has are put back in front of h.

Every coupling receives the pose embedding e [batch, E] as the required keyword
``pose_embedding``. ``forward_and_log_det`` is the fused training path (one s/t network call per
coupling); the ``tfb.Bijector`` methods ``forward``/``inverse``/``forward_log_det_jacobian`` run
the same structure through each layer's public TFP API, and tests pin the two equal.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from bruno.flows.coupling import ConvCoupling, DenseCoupling
from bruno.flows.logit import ALPHA, logit_bijector, logit_forward_and_log_det, logit_inverse
from bruno.flows.squeeze import Squeeze

__all__ = ["ConditionalRealNVP", "FlowArchitecture"]


class FlowArchitecture(NamedTuple):
    """Sizes and upstream-quirk switches of the flow (from the config's ``model`` section).

    Attributes:
        num_scales: S (3 in the paper).
        num_filters: F, conv s/t network width (64).
        num_residual_blocks: R per conv s/t network (6).
        num_dense_couplings: dense couplings after the conv part (6).
        dense_units: U, dense s/t network width (256).
        first_kernel_size: 3 reproduces upstream quirk Q1 (the intended 1×1 first conv is 3×3).
        orthogonal_label_heads: True reproduces Q2 (label projections of the s/t heads not zeroed).
        normalize_init_output: False reproduces Q3 (the init pass hands on un-normalised activations).
        include_alpha_constant: True includes D·ln(1−α) in the logit log-det; False reproduces Q4.
    """

    num_scales: int = 3
    num_filters: int = 64
    num_residual_blocks: int = 6
    num_dense_couplings: int = 6
    dense_units: int = 256
    first_kernel_size: int = 3
    orthogonal_label_heads: bool = True
    normalize_init_output: bool = False
    include_alpha_constant: bool = True


class _Scale(NamedTuple):
    checkerboard: list[ConvCoupling]
    channel: list[ConvCoupling]  # empty at the last scale


Step = Callable[[tfb.Bijector, tf.Tensor, Optional[tf.Tensor]], tuple[tf.Tensor, tf.Tensor]]


class _Conditions(NamedTuple):
    """The estimate at each coupling's resolution: per scale before and after its squeeze, and flattened."""

    checkerboard: list[Optional[tf.Tensor]]
    channel: list[Optional[tf.Tensor]]
    dense: Optional[tf.Tensor]


class ConditionalRealNVP(tfb.Bijector):
    """The conditional RealNVP as one bijector from images [batch, H, W, 1] to latents [batch, D].

    Args:
        image_size: H = W, divisible by 2^num_scales.
        architecture: sizes and quirk switches.
        name: bijector name.

    Raises:
        ValueError: ``image_size`` not divisible by 2^num_scales, or sizes out of range.
    """

    def __init__(self, image_size: int, architecture: FlowArchitecture = FlowArchitecture(), name: str = "realnvp") -> None:
        super().__init__(forward_min_event_ndims=3, inverse_min_event_ndims=1, name=name)
        a = architecture
        if a.num_scales < 1:
            raise ValueError(f"num_scales={a.num_scales}, expected >= 1")
        if image_size < 2 ** a.num_scales or image_size % 2 ** a.num_scales:
            raise ValueError(f"image_size={image_size}, expected a multiple of 2^num_scales = {2 ** a.num_scales}")
        self.image_size, self.architecture = image_size, a
        conv: dict[str, Any] = dict(filters=a.num_filters, num_blocks=a.num_residual_blocks, first_kernel_size=a.first_kernel_size,
                    orthogonal_label_heads=a.orthogonal_label_heads, normalize_init_output=a.normalize_init_output)
        size, channels = image_size, 1
        self.scales: list[_Scale] = []
        for s in range(a.num_scales):
            last = s == a.num_scales - 1
            checkerboard = [ConvCoupling(f"checkerboard{i % 2}", (size, size, channels), name=f"scale{s}_checkerboard{i}", **conv)
                            for i in range(4 if last else 3)]
            channel = []
            if not last:
                size, channels = size // 2, channels * 4
                channel = [ConvCoupling(f"channel{i % 2}", (size, size, channels), name=f"scale{s}_channel{i}", **conv)
                           for i in range(3)]
                channels //= 2
            self.scales.append(_Scale(checkerboard, channel))
        self.latent_grid = (size, size, image_size * image_size // (size * size))
        self.last_channels = channels
        self.num_dims = image_size * image_size
        self.dense = [DenseCoupling("even" if i % 2 == 0 else "odd", self.num_dims, a.dense_units,
                                    a.normalize_init_output, name=f"dense{i}") for i in range(a.num_dense_couplings)]
        self.squeeze = Squeeze()

    # ----------------------------------------------------------------------------------- forward
    def _conditions(self, estimate: Optional[tf.Tensor], dtype: tf.DType) -> _Conditions:
        """The estimate image [batch, H, W, 1] (0..255) at every coupling's resolution: through the image's own logit,
        then squeezed as h is (all its channels kept); flattened for the dense couplings. None: unconditioned."""
        if estimate is None:
            return _Conditions([None] * len(self.scales), [None] * len(self.scales), None)
        c = logit_forward_and_log_det(tf.clip_by_value(tf.cast(estimate, dtype), 0.0, 255.5), ALPHA, True)[0]
        checkerboard, channel = [], []
        for scale in self.scales:
            checkerboard.append(c)
            if scale.channel:
                c = self.squeeze.forward(c)
            channel.append(c if scale.channel else None)
        return _Conditions(checkerboard, channel, tf.reshape(c, [-1, self.num_dims]))

    def _structure_forward(self, h: tf.Tensor, step: Step, conditions: _Conditions) -> tuple[tf.Tensor, tf.Tensor]:
        """Couplings, squeezes and factor-outs after the logit; ``step(coupling, h, condition)`` applies one coupling."""
        log_det = tf.zeros(tf.shape(h)[:1], h.dtype)
        z = None
        for scale, on_checkerboard, on_channel in zip(self.scales, conditions.checkerboard, conditions.channel):
            for coupling in scale.checkerboard:
                h, ldj = step(coupling, h, on_checkerboard)
                log_det += ldj
            if scale.channel:
                h = self.squeeze.forward(h)
                z = None if z is None else self.squeeze.forward(z)
                for coupling in scale.channel:
                    h, ldj = step(coupling, h, on_channel)
                    log_det += ldj
                half = h.shape[-1] // 2
                z = h[..., :half] if z is None else tf.concat([z, h[..., :half]], axis=-1)
                h = h[..., half:]
        flat = tf.reshape(h if z is None else tf.concat([z, h], axis=-1), [-1, self.num_dims])
        for coupling in self.dense:
            flat, ldj = step(coupling, flat, conditions.dense)
            log_det += ldj
        return flat, log_det

    def forward_and_log_det(self, x: tf.Tensor, pose_embedding: tf.Tensor, init: bool = False,
                            estimate: Optional[tf.Tensor] = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Fused training path.

        Args:
            x: float [batch, H, W, 1], dequantised pixels in [0, 256).
            pose_embedding: float [batch, E].
            init: run the data-dependent initialisation of every weight-normalised layer on this batch.
            estimate: float [batch, H, W, 1] on the 0..255 scale, the classical estimate of each image that every
                coupling is conditioned on (SPEC §9.5); None for a flow built without one.

        Returns:
            z float [batch, D] and log|det ∂z/∂x| float [batch] (including the logit step; the estimate changes
            the couplings' outputs, never the form of the log-det).
        """
        y, log_det = logit_forward_and_log_det(x, ALPHA, self.architecture.include_alpha_constant)
        z, ldj = self._structure_forward(y, lambda b, h, c: b.forward_and_log_det(h, pose_embedding, init, c),
                                         self._conditions(estimate, y.dtype))
        return z, log_det + ldj

    def _via_bijectors(self, x: tf.Tensor, pose_embedding: tf.Tensor,
                       estimate: Optional[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        def step(bijector: tfb.Bijector, h: tf.Tensor, condition: Optional[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
            ndims = bijector.forward_min_event_ndims
            kwargs = dict(pose_embedding=pose_embedding, condition=condition)
            return bijector.forward(h, **kwargs), bijector.forward_log_det_jacobian(h, event_ndims=ndims, **kwargs)

        logit = logit_bijector(ALPHA, x.dtype)
        log_det = logit.forward_log_det_jacobian(x, event_ndims=3)
        if not self.architecture.include_alpha_constant:
            log_det -= self.num_dims * math.log1p(-ALPHA)
        z, ldj = self._structure_forward(logit.forward(x), step, self._conditions(estimate, x.dtype))
        return z, log_det + ldj

    def _forward(self, x: tf.Tensor, pose_embedding: tf.Tensor, estimate: Optional[tf.Tensor] = None) -> tf.Tensor:
        return self._via_bijectors(x, pose_embedding, estimate)[0]

    def _forward_log_det_jacobian(self, x: tf.Tensor, pose_embedding: tf.Tensor,
                                  estimate: Optional[tf.Tensor] = None) -> tf.Tensor:
        return self._via_bijectors(x, pose_embedding, estimate)[1]

    # ----------------------------------------------------------------------------------- inverse
    def _inverse(self, z: tf.Tensor, pose_embedding: tf.Tensor, estimate: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Latents [batch, D] → images [batch, H, W, 1] on the [0, 256) scale (``estimate``: as in the forward)."""
        conditions = self._conditions(estimate, z.dtype)
        for coupling in reversed(self.dense):
            z = coupling.inverse(z, pose_embedding=pose_embedding, condition=conditions.dense)
        grid = tf.reshape(z, [-1, *self.latent_grid])
        h, rest = grid[..., -self.last_channels:], grid[..., : -self.last_channels]
        for scale, on_checkerboard, on_channel in reversed(list(zip(self.scales, conditions.checkerboard,
                                                                     conditions.channel))):
            if scale.channel:
                count = h.shape[-1]
                h = tf.concat([rest[..., -count:], h], axis=-1)
                rest = rest[..., :-count]
                for coupling in reversed(scale.channel):
                    h = coupling.inverse(h, pose_embedding=pose_embedding, condition=on_channel)
                h = self.squeeze.inverse(h)
                if rest.shape[-1]:
                    rest = self.squeeze.inverse(rest)
            for coupling in reversed(scale.checkerboard):
                h = coupling.inverse(h, pose_embedding=pose_embedding, condition=on_checkerboard)
        return logit_inverse(h, ALPHA)

    # ------------------------------------------------------------------------------ event shapes
    def _forward_event_shape(self, shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape([self.num_dims])

    def _forward_event_shape_tensor(self, shape: tf.Tensor) -> tf.Tensor:
        return tf.constant([self.num_dims], tf.int32)

    def _inverse_event_shape(self, shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape([self.image_size, self.image_size, 1])

    def _inverse_event_shape_tensor(self, shape: tf.Tensor) -> tf.Tensor:
        return tf.constant([self.image_size, self.image_size, 1], tf.int32)
