"""A pose-aware Student-t (or Gaussian) process over the latents of one subject's slices (SPEC §8).

Our generalisation of the exchangeable process (not in the paper). Per latent dimension d, the
latents of a subject's slices at poses q, q' have the covariance

    K_d(q, q') = v_d · [ρ_d + (1 − ρ_d)·κ(|q − q'| / ℓ_d) + ε·δ(q, q')],

with κ(0) = 1 and κ → 0 far away (Matérn-3/2 ``(1 + √3 r)·exp(−√3 r)`` or squared exponential
``exp(−r²/2)``), and a pose-dependent prior mean μ_d(q): a learned latent atlas. ε (the nugget,
default 1e-3) is white noise per slice that keeps the solves well conditioned in float32; set it to
0 and let ℓ → 0 and K is exactly the exchangeable covariance of SPEC §1 (v on the diagonal, ρ·v
off it), so the faithful process is a special case.

The joint law of a subject's latents at n poses is a multivariate Student-t with covariance K (the
covariance parameterisation of SPEC §1.2) and mean μ(q). The predictive of a query pose a given
contexts at poses b (Shah et al. 2014; R = K / v, e_b = z_b − μ(b)):

    m_a  = μ(a) + r_abᵀ R_bb⁻¹ e_b,        k_a = v·(R_aa − r_abᵀ R_bb⁻¹ r_ab),
    β    = e_bᵀ R_bb⁻¹ e_b / v,            ν_a = ν0 + n,
    σ²_a = (ν0 + β − 2) / (ν0 + n − 2) · k_a     (a variance; the Gaussian process uses N(m_a, k_a)).

Targets are conditionally independent given the contexts, so training is unchanged; unlike the
exchangeable process, every query pose gets its own predictive. One n×n Cholesky per sequence and
latent dimension (n ≤ ~10), negligible beside the flow.

Parameters (one per latent dimension unless stated): ``prior_var`` v = softplus(a)²,
``prior_corr`` ρ = sigmoid(r), ``prior_nu`` ν0 = exp(b) + 2 (Student-t only),
``prior_length`` ℓ = softplus(l) + ℓ_min (in poses), ``prior_atlas`` μ [N, D] (starts at 0).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from bruno.processes.base import DF_MIN, Process, floored_softplus, unconstrained
from bruno.processes.exchangeable import Predictive

__all__ = ["KERNELS", "PoseKernelProcess"]

KERNELS = ("matern32", "rbf")
_MIN_RELATIVE_VARIANCE = 1e-6  # k_a / v never below this (round-off at a context's own pose)


class _KernelSolve(NamedTuple):
    """Per-dimension solves against R_bb = chol cholᵀ, [B, D, n, n]: residual e_b and alpha = R_bb⁻¹ e_b [B, D, n],
    weights R_bb⁻¹ r_ba [B, D, n, Q], interpolated r_abᵀ R_bb⁻¹ e_b and gaussian_variance k_a [B, Q, D]."""

    chol: tf.Tensor
    residual: tf.Tensor
    alpha: tf.Tensor
    weights: tf.Tensor
    interpolated: tf.Tensor
    gaussian_variance: tf.Tensor


_KERNEL_CLASSES = {"matern32": tfp.math.psd_kernels.MaternThreeHalves, "rbf": tfp.math.psd_kernels.ExponentiatedQuadratic}


class PoseKernelProcess(Process):
    """The process of SPEC §8.

    Args:
        num_dims: D, the latent dimension.
        num_poses: N, the number of poses (rows of the latent atlas).
        kernel: ``matern32`` or ``rbf``.
        student: Student-t (True) or Gaussian process.
        variance_init, correlation_init, df_init: as the exchangeable process (1, 0.1, 1000).
        length_init: initial length scale ℓ in poses (> ``length_min``).
        length_min: lower bound of ℓ.
        nugget: ε, per-slice white noise relative to v (>= 0).
        dtype: float32 or float64.
    """

    def __init__(self, num_dims: int, num_poses: int, kernel: str = "matern32", student: bool = True,
                 variance_init: float = 1.0, correlation_init: float = 0.1, df_init: float = 1000.0,
                 length_init: float = 3.0, length_min: float = 0.5, nugget: float = 1e-3,
                 dtype: tf.DType = tf.float32, name: Optional[str] = None) -> None:
        super().__init__(name=name)
        checks = [(num_dims >= 1, "num_dims", num_dims, ">= 1"), (num_poses >= 1, "num_poses", num_poses, ">= 1"),
                  (kernel in KERNELS, "kernel", kernel, f"one of {KERNELS}"),
                  (variance_init > 0, "variance_init", variance_init, "> 0"),
                  (0.0 < correlation_init < 1.0, "correlation_init", correlation_init, "in (0, 1)"),
                  (df_init > DF_MIN, "df_init", df_init, f"> {DF_MIN}"),
                  (length_min > 0, "length_min", length_min, "> 0"),
                  (length_init > length_min, "length_init", length_init, f"> length_min = {length_min}"),
                  (nugget >= 0, "nugget", nugget, ">= 0")]
        for ok, key, value, expected in checks:
            if not ok:
                raise ValueError(f"{key}={value!r}, expected {expected}")
        self.num_dims, self.num_poses, self.kernel, self.student = num_dims, num_poses, kernel, student
        self.length_min, self.nugget, self.dtype = length_min, nugget, dtype

        self._create_parameters(variance_init, correlation_init, df_init if student else None)  # ρ: the subject-level share
        self.prior_length = self._per_dim(unconstrained(floored_softplus(length_min, tf.float64), length_init), "prior_length")
        self.prior_atlas = tf.Variable(tf.zeros([num_poses, num_dims], dtype), name="prior_atlas")

    def warm_start_variables(self) -> dict[str, tf.Variable]:
        return {**super().warm_start_variables(), "length": self.prior_length, "atlas": self.prior_atlas}

    @property
    def length_scale(self) -> tf.Tensor:
        """ℓ in poses, [D]."""
        return floored_softplus(self.length_min, self.dtype).forward(self.prior_length)

    def relative_covariance(self, poses_a: tf.Tensor, poses_b: tf.Tensor) -> tf.Tensor:
        """R = K / v between two sets of poses of each sequence.

        Args:
            poses_a: integer poses [batch, A]; poses_b: [batch, M].

        Returns:
            [batch, D, A, M]: ρ + (1 − ρ)·κ(|a − b|/ℓ) + ε·[a = b].
        """
        a = tf.cast(poses_a, self.dtype)[:, None, :, None, None]  # one feature: the pose
        b = tf.cast(poses_b, self.dtype)[:, None, None, :, None]
        rho = self.correlation[None, :, None, None]
        kernel = _KERNEL_CLASSES[self.kernel](length_scale=self.length_scale[None, :, None, None])  # κ(|a − b|/ℓ)
        same = tf.cast(tf.equal(a[..., 0], b[..., 0]), self.dtype)
        return rho + (1.0 - rho) * kernel.apply(a, b) + self.nugget * same

    def _solve(self, residual: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor) -> _KernelSolve:
        """The per-dimension kernel solves shared by the predictives (n >= 1 contexts), from the contexts'
        residuals e_b = z_b − (their prior mean), [B, n, D]."""
        chol = tf.linalg.cholesky(self.relative_covariance(context_poses, context_poses))  # [B, D, n, n]
        cross = self.relative_covariance(context_poses, query_poses)  # r_ba, [B, D, n, Q]
        residual_t = tf.transpose(residual, [0, 2, 1])[..., None]  # [B, D, n, 1]
        alpha = tf.linalg.cholesky_solve(chol, residual_t)  # R_bb⁻¹ e_b
        weights = tf.linalg.cholesky_solve(chol, cross)  # R_bb⁻¹ r_ba, [B, D, n, Q]
        explained = tf.transpose(tf.reduce_sum(cross * weights, axis=2), [0, 2, 1])  # r_abᵀ R_bb⁻¹ r_ab, [B, Q, D]
        interpolated = tf.transpose(tf.reduce_sum(cross * alpha, axis=2), [0, 2, 1])  # r_abᵀ R_bb⁻¹ e_b, [B, Q, D]
        gaussian_variance = self.variance * tf.maximum(1.0 + self.nugget - explained, _MIN_RELATIVE_VARIANCE)
        return _KernelSolve(chol, residual_t[..., 0], alpha[..., 0], weights, interpolated, gaussian_variance)

    def predictive(self, context_z: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor) -> Predictive:
        """The predictive of the latents at ``query_poses`` given the context latents.

        Args:
            context_z: [batch, n, D] (n may be 0: the prior).
            context_poses: integer [batch, n], distinct within a sequence.
            query_poses: integer [batch, Q].

        Returns:
            :class:`Predictive` with [batch, Q, D] mean and variance.
        """
        context_z = tf.convert_to_tensor(context_z, self.dtype)
        v, df0 = self.variance, self.df
        prior_mean = tf.gather(self.prior_atlas, query_poses)  # [B, Q, D]
        if context_z.shape[1] == 0:
            variance = tf.zeros_like(prior_mean) + v * (1.0 + self.nugget)
            return Predictive(prior_mean, variance, None if df0 is None else df0 + tf.zeros_like(v))
        solve = self._solve(context_z - tf.gather(self.prior_atlas, context_poses), context_poses, query_poses)
        mean = prior_mean + solve.interpolated
        if df0 is None:
            return Predictive(mean, solve.gaussian_variance, None)
        n = tf.cast(tf.shape(context_z)[1], self.dtype)
        beta = tf.reduce_sum(solve.residual * solve.alpha, axis=-1) / v  # [B, D]
        variance = ((df0 + beta - 2.0) / (df0 + n - 2.0))[:, None, :] * solve.gaussian_variance
        return Predictive(mean, variance, (df0 + n)[None, None, :])

    def summary(self) -> dict[str, float]:
        """The base figures and the length-scale quantiles."""
        length = self.length_scale.numpy()
        return {**super().summary(), **{f"length_q{q}": float(np.percentile(length, q)) for q in (10, 50, 90)}}
