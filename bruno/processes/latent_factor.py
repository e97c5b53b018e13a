"""A latent factor process: a subject code shared by every pose and latent dimension (SPEC §9.3).

Our variant (not in the paper). The latents of one subject's slice at pose q are

    z_q = μ(q) + W(q)·u + ε_q,   u ~ N(0, I_r),

with W(q) [D, r] pose-dependent loadings (one free matrix per pose), μ(q) the latent atlas and ε
the Gaussian pose-kernel process of SPEC §8 (independent per dimension d, covariance K_d = v_d·R_d).
With W = 0 it is exactly :class:`~bruno.processes.PoseKernelProcess` (Gaussian).

Given contexts at poses b (residuals e_b = z_b − μ(b)), stacked over dimensions, Σ_bb = W_b W_bᵀ + K
with K block-diagonal over d. Woodbury needs only the per-dimension n × n solves and one r × r one:

    H = Σ_d W_b,dᵀ K_d⁻¹ W_b,d,    A = I_r + H,    û = A⁻¹ Σ_d W_b,dᵀ K_d⁻¹ e_b,d   (the code's posterior N(û, A⁻¹)).

For a query pose a and dimension d, with the kernel weights w_ad = R_d⁻¹ r_ab,d and the loading the
kernel interpolates from the contexts, g_ad = W_b,dᵀ w_ad ∈ R^r, the exact Gaussian predictive of
the query's D latents is

    mean_a  = μ(a) + Σ_c w_ad,c e_c,d + (W(a) − G_a) û,
    Cov_a   = diag(k_a) + (W(a) − G_a) A⁻¹ (W(a) − G_a)ᵀ        (k_a: §8's Gaussian variance),

a diagonal plus rank-r covariance (:class:`FactorPredictive`, TFP's
``MultivariateNormalDiagPlusLowRankCovariance``); the D dimensions of a query are *not* independent.
Targets stay conditionally independent given the contexts (each is scored by its own predictive).

Gaussian only: with one code shared by all dimensions a per-dimension Student-t (§8's ν_d, β_d) is
no longer defined, and a single shared ν would see n·D observations and be Gaussian in practice.

Parameters: §8's (``prior_var``, ``prior_corr``, ``prior_length``, ``prior_atlas``) and
``prior_loadings`` W [N, D, r] (start at 0; :meth:`LatentFactorProcess.set_from_pca` sets μ, W and v
from a PCA of training latents, the data-dependent initialisation).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf
from tensorflow_probability import distributions as tfd

from bruno.processes.base import softplus_inverse
from bruno.processes.latent_factor_init import initialize_latent_factors
from bruno.processes.pose_kernel import PoseKernelProcess

__all__ = ["FactorPredictive", "LatentFactorProcess", "factor_predictive"]


class FactorPredictive(NamedTuple):
    """A Gaussian predictive per query with covariance diag(variance) + factor·factorᵀ.

    Attributes:
        mean: [..., D]; variance: [..., D], the diagonal part; factor: [..., D, r].
    """

    mean: tf.Tensor
    variance: tf.Tensor
    factor: tf.Tensor

    def distribution(self) -> tfd.Distribution:
        """One D-variate Gaussian per query (batch shape [...])."""
        return tfd.MultivariateNormalDiagPlusLowRankCovariance(self.mean, self.variance, self.factor)

    def log_prob(self, z: tf.Tensor) -> tf.Tensor:
        """log p(z) of latents z [..., D] → [...]."""
        return self.distribution().log_prob(tf.convert_to_tensor(z, self.mean.dtype))

    def marginal_variance(self) -> tf.Tensor:
        """The per-dimension variance [..., D] (the diagonal of the covariance)."""
        return self.variance + tf.reduce_sum(tf.square(self.factor), axis=-1)

    def scaled(self, temperature: float) -> FactorPredictive:
        """The same law with every deviation from the mean multiplied by ``temperature`` (covariance × temperature²)."""
        return FactorPredictive(self.mean, self.variance * temperature ** 2, self.factor * temperature)


class LatentFactorProcess(PoseKernelProcess):
    """The process of the module docstring: §8's Gaussian pose kernel plus a rank-r subject code.

    Args:
        num_dims, num_poses, kernel, variance_init, correlation_init, length_init, length_min, nugget, dtype:
            as :class:`PoseKernelProcess` (always Gaussian).
        num_factors: r >= 1, the size of the subject code.
    """

    train_latents_needed = 2

    def start_from_latents(self, latents: np.ndarray, val_loss: Callable[[], float], fresh: bool) -> None:
        """Step 0: a PCA of the train split's latents (:mod:`bruno.processes.latent_factor_init`)."""
        initialize_latent_factors(self, latents, val_loss, fresh)

    def __init__(self, num_dims: int, num_poses: int, num_factors: int, kernel: str = "matern32",
                 variance_init: float = 1.0, correlation_init: float = 0.1, length_init: float = 3.0,
                 length_min: float = 0.5, nugget: float = 1e-3, dtype: tf.DType = tf.float32,
                 name: Optional[str] = None) -> None:
        if not (isinstance(num_factors, (int, np.integer)) and num_factors >= 1):
            raise ValueError(f"num_factors={num_factors!r}, expected an integer >= 1")
        super().__init__(num_dims, num_poses, kernel, False, variance_init, correlation_init, 1000.0, length_init,
                         length_min, nugget, dtype, name)
        self.num_factors = int(num_factors)
        self.prior_loadings = tf.Variable(tf.zeros([num_poses, num_dims, self.num_factors], dtype), name="prior_loadings")

    def predictive(self, context_z: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor) -> FactorPredictive:
        """The exact Gaussian predictive of the latents at ``query_poses`` given the context latents.

        Args:
            context_z: [batch, n, D] (n may be 0: the prior); context_poses: integer [batch, n], distinct
                within a sequence; query_poses: integer [batch, Q].

        Returns:
            :class:`FactorPredictive` with mean and diagonal variance [batch, Q, D] and factor [batch, Q, D, r].
        """
        context_loadings = tf.gather(self.prior_loadings, context_poses)  # [B, n, D, r]
        return factor_predictive(self, tf.convert_to_tensor(context_z, self.dtype), context_poses, query_poses,
                                 tf.gather(self.prior_atlas, context_poses), tf.gather(self.prior_atlas, query_poses),
                                 context_loadings, tf.gather(self.prior_loadings, query_poses))

    def summary(self) -> dict[str, float]:
        """The pose-kernel figures and the RMS of the loadings."""
        return {**super().summary(), "loadings_rms": float(np.sqrt(np.mean(np.square(self.prior_loadings.numpy()))))}

    def set_from_pca(self, loadings: np.ndarray, mean: Optional[np.ndarray] = None,
                     residual_variance: Optional[np.ndarray] = None) -> None:
        """Data-dependent initialisation from a PCA of training latents: W [N, D, r], and (unless None,
        then kept) μ [N, D] and v [D]."""
        shape = (self.num_poses, self.num_dims)
        for name, value, expected in (("loadings", loadings, shape + (self.num_factors,)), ("mean", mean, shape),
                                      ("residual_variance", residual_variance, (self.num_dims,))):
            if value is not None and np.shape(value) != expected:
                raise ValueError(f"{name}: shape {np.shape(value)}, expected {expected}")
        self.prior_loadings.assign(tf.constant(loadings, self.dtype))
        if mean is not None:
            self.prior_atlas.assign(tf.constant(mean, self.dtype))
        if residual_variance is not None:
            scale = np.sqrt(np.maximum(np.asarray(residual_variance, np.float64), 1e-4))
            self.prior_var.assign(tf.constant([softplus_inverse(float(s)) for s in scale], self.dtype))


def factor_predictive(kernel: PoseKernelProcess, context_z: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor,
                      context_mean: tf.Tensor, query_mean: tf.Tensor, context_loadings: tf.Tensor,
                      query_loadings: tf.Tensor) -> FactorPredictive:
    """The Woodbury predictive of the module docstring under ``kernel``'s Gaussian pose kernel, for given prior
    means μ(b) [B, n, D], μ(a) [B, Q, D] and loadings W(b) [B, n, D, r], W(a) [B, Q, D, r] (one set per
    sequence: the population process's loadings differ between subjects)."""
    v, r = kernel.variance, tf.shape(query_loadings)[-1]
    if context_z.shape[1] == 0:
        return FactorPredictive(query_mean, tf.zeros_like(query_mean) + v * (1.0 + kernel.nugget), query_loadings)
    solve = kernel._solve(context_z - context_mean, context_poses, query_poses)
    context_loadings = tf.transpose(context_loadings, [0, 2, 1, 3])  # W_b, [B, D, n, r]
    scaled = tf.linalg.cholesky_solve(solve.chol, context_loadings) / v[None, :, None, None]  # K_d⁻¹ W_b,d
    eye = tf.eye(r, dtype=kernel.dtype)
    chol_a = tf.linalg.cholesky(eye + tf.einsum("bdnr,bdns->brs", context_loadings, scaled))  # A = L Lᵀ
    code = tf.linalg.cholesky_solve(chol_a, tf.einsum("bdnr,bdn->br", scaled, solve.residual)[..., None])[..., 0]  # û
    unexplained = query_loadings - tf.einsum("bdnq,bdnr->bqdr", solve.weights, context_loadings)  # W(a) − G_a
    mean = query_mean + solve.interpolated + tf.einsum("bqdr,br->bqd", unexplained, code)
    batch, queries = tf.shape(unexplained)[0], tf.shape(unexplained)[1]
    flat = tf.reshape(unexplained, [batch, -1, r])  # [B, Q·D, r]
    whitened = tf.linalg.triangular_solve(chol_a, tf.transpose(flat, [0, 2, 1]), lower=True)  # L⁻¹ (W(a) − G_a)ᵀ
    factor = tf.reshape(tf.transpose(whitened, [0, 2, 1]), [batch, queries, kernel.num_dims, r])
    return FactorPredictive(mean, solve.gaussian_variance, factor)
