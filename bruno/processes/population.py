"""A population process: the subject code's loadings are the other training subjects' latents (SPEC §9.4).

Our variant (not in the paper). A bank Z [V, N, D] holds the latents of every training volume at every pose
(not trained: filled by encoding the train split once, then overwritten with the latents each training step
computes). For a sequence of subject s with O the bank's subjects other than s,

    z_q = μ₋ₛ(q) + c · B̃₋ₛ(q)ᵀ u + ε_q,    u ~ N(0, I),
    μ₋ₛ(q) = mean_{v ∈ O} Z[v, q],    B̃₋ₛ = (Z[O] − μ₋ₛ) / √(|O| − 1),

so the subjects' latents covary as c² times the sample covariance of the others plus the Gaussian pose
kernel ε of SPEC §8 (``prior_var``, ``prior_corr``, ``prior_length``); c = softplus(``prior_shrinkage``) is
learned. The predictive is the latent factor process's Woodbury form
(:func:`~bruno.processes.latent_factor.factor_predictive`) with W(q) = c · B̃₋ₛ(q)ᵀ, r = V (the left-out
subject's column is zero, so it adds nothing). Training leaves each sequence's own subject out, as a new
subject is at test time, so the flow is not rewarded for pulling a subject into a subspace estimated from
itself (the latent factor process's failure, RESULTS.md); at test time nothing is left out.

Gaussian only, as the latent factor process. Costs per sequence one r × r Cholesky (r = V ≈ 105 on IXI) and
the [V, n, D] gathers of the bank; the bank is a model variable, so it is saved with every checkpoint.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Optional

import numpy as np
import tensorflow as tf

from bruno.processes.base import softplus_inverse
from bruno.processes.latent_factor import FactorPredictive, factor_predictive
from bruno.processes.pose_kernel import PoseKernelProcess

__all__ = ["MIN_POPULATION", "PopulationProcess"]

logger = logging.getLogger(__name__)

MIN_POPULATION = 3  # leaving one out must leave two subjects to estimate a covariance from


class PopulationProcess(PoseKernelProcess):
    """The process of the module docstring.

    Args:
        num_dims, num_poses, kernel, variance_init, correlation_init, length_init, length_min, nugget, dtype:
            as :class:`PoseKernelProcess` (always Gaussian; the bank's mean replaces the learned atlas).
        shrinkage_init: the initial c > 0.
    """

    uses_subjects = test_time_state = True
    train_latents_needed = MIN_POPULATION

    def __init__(self, num_dims: int, num_poses: int, kernel: str = "matern32", variance_init: float = 1.0,
                 correlation_init: float = 0.1, length_init: float = 3.0, length_min: float = 0.5,
                 nugget: float = 1e-3, shrinkage_init: float = 0.5, dtype: tf.DType = tf.float32,
                 name: Optional[str] = None) -> None:
        if not shrinkage_init > 0:
            raise ValueError(f"shrinkage_init={shrinkage_init!r}, expected > 0")
        super().__init__(num_dims, num_poses, kernel, False, variance_init, correlation_init, 1000.0, length_init,
                         length_min, nugget, dtype, name)
        del self.prior_atlas  # the prior mean is the bank's (leave-one-out) mean, not a learned atlas
        self.prior_shrinkage = tf.Variable(tf.constant(softplus_inverse(shrinkage_init), dtype), name="prior_shrinkage")
        self.population_bank = tf.Variable(tf.zeros([0, num_poses, num_dims], dtype), trainable=False,
                                           shape=tf.TensorShape([None, num_poses, num_dims]), name="population_bank")

    @property
    def shrinkage(self) -> tf.Tensor:
        """c = softplus(``prior_shrinkage``)."""
        return tf.nn.softplus(self.prior_shrinkage)

    def set_shrinkage(self, value: float) -> None:
        """Set c (> 0): the val-chosen test-time value (:mod:`bruno.runs.population_state`)."""
        if not value > 0:
            raise ValueError(f"shrinkage {value!r}: expected > 0")
        self.prior_shrinkage.assign(softplus_inverse(value))

    def warm_start_variables(self) -> dict[str, tf.Variable]:
        return {role: variable for role, variable in super().warm_start_variables().items() if role != "atlas"}

    def start_from_latents(self, latents: np.ndarray, val_loss: Callable[[], float], fresh: bool) -> None:
        """Step 0: the bank holds the train split's latents."""
        self.fill(latents)
        logger.info("step 0: population bank filled with the latents of %d train volumes", len(latents))

    def fill(self, latents: np.ndarray) -> None:
        """Set the bank to the latents [V, N, D] of every training volume (V >= :data:`MIN_POPULATION`)."""
        expected = (self.num_poses, self.num_dims)
        if np.ndim(latents) != 3 or np.shape(latents)[1:] != expected or len(latents) < MIN_POPULATION:
            raise ValueError(f"bank latents: shape {np.shape(latents)}, expected (V, {expected[0]}, {expected[1]}) "
                             f"with V >= {MIN_POPULATION} training volumes")
        self.population_bank.assign(tf.constant(latents, self.dtype))

    def _population(self, poses: tf.Tensor, keep: tf.Tensor, count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """μ₋ₛ(q) [B, P, D] and the loadings c · B̃₋ₛ(q)ᵀ [B, P, D, V] at poses [B, P], with ``keep`` [V, B] the
        subjects in O and ``count`` [B] = |O|."""
        bank = tf.gather(self.population_bank, poses, axis=1)  # Z[v, q], [V, B, P, D]
        mean = tf.einsum("vb,vbpd->bpd", keep, bank) / count[:, None, None]
        scale = self.shrinkage / tf.sqrt(count - 1.0)
        centred = (bank - mean[None]) * (keep * scale[None])[:, :, None, None]
        return mean, tf.transpose(centred, [1, 2, 3, 0])

    def predictive(self, context_z: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor,
                   leave_out: Optional[tf.Tensor] = None) -> FactorPredictive:
        """The exact Gaussian predictive of the latents at ``query_poses`` given the context latents.

        Args:
            context_z: [batch, n, D] (n may be 0: the prior); context_poses: integer [batch, n], distinct within a
                sequence; query_poses: integer [batch, Q].
            leave_out: integer [batch], the bank row of each sequence's subject, left out of the population
                (−1: none); None: nobody (a new subject).

        Returns:
            :class:`~bruno.processes.FactorPredictive` with mean and diagonal variance [batch, Q, D] and factor
            [batch, Q, D, V].
        """
        context_z = tf.convert_to_tensor(context_z, self.dtype)
        batch = tf.shape(query_poses)[0]
        size = tf.shape(self.population_bank)[0]
        keep = (tf.ones([size, batch], self.dtype) if leave_out is None
                else 1.0 - tf.transpose(tf.one_hot(leave_out, size, dtype=self.dtype)))  # one_hot(−1) = 0
        count = tf.reduce_sum(keep, axis=0)
        context_mean, context_loadings = self._population(context_poses, keep, count)
        query_mean, query_loadings = self._population(query_poses, keep, count)
        return factor_predictive(self, context_z, context_poses, query_poses, context_mean, query_mean,
                                 context_loadings, query_loadings)

    def sequence_log_prob(self, z: tf.Tensor, poses: tf.Tensor, num_context: int,
                          subjects: Optional[tf.Tensor] = None) -> tf.Tensor:
        """As :meth:`~bruno.processes.base.Process.sequence_log_prob`; with ``subjects`` (bank rows [batch], −1 for
        a subject outside the bank) each sequence's own subject is left out, and the sequences' latents are then
        written into the bank at (subject, pose) (without gradient; rows −1 are not written)."""
        predictive = self.predictive(z[:, :num_context], poses[:, :num_context], poses[:, num_context:], subjects)
        log_prob = self.log_prob(predictive, z[:, num_context:])
        if subjects is not None:
            rows = tf.broadcast_to(tf.cast(subjects, poses.dtype)[:, None], tf.shape(poses))
            index = tf.reshape(tf.stack([rows, poses], axis=-1), [-1, 2])
            inside = index[:, 0] >= 0
            latents = tf.reshape(tf.stop_gradient(tf.cast(z, self.dtype)), [-1, self.num_dims])
            self.population_bank.scatter_nd_update(tf.boolean_mask(index, inside), tf.boolean_mask(latents, inside))
        return log_prob

    def summary(self) -> dict[str, float]:
        """The pose-kernel figures and the shrinkage c."""
        return {**super().summary(), "shrinkage": float(self.shrinkage.numpy())}
