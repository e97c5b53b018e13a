"""The interface every latent process gives the model (:class:`~bruno.models.ConditionalBruno`).

A process scores and predicts the latents z [batch, n, D] of one subject's slices, each with its
pose index [batch, n]:

* :meth:`Process.predictive` (context latents, context poses, query poses) → the predictive of each
  query, a :class:`~bruno.processes.Predictive` (independent per dimension) or a
  :class:`~bruno.processes.FactorPredictive` (correlated dimensions); its ``distribution()`` samples;
* :meth:`Process.log_prob` (predictive, z) → Σ_j log p(z_j) of each query [batch, Q];
* :meth:`Process.sequence_log_prob` (z, poses, n_c) → training's score of the T − n_c targets of
  each sequence given its first n_c items;
* :attr:`Process.parameters` (the trainable variables, which training schedules apart from the
  flow's) and :meth:`Process.summary` (figures logged while training).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability import bijectors as tfb

__all__ = ["CORRELATION", "DF_MIN", "VARIANCE", "Process", "df_bijector", "floored_softplus", "softplus_inverse", "unconstrained"]


DF_MIN = 2.0  # ν0 = exp(b) + 2 > 2, so the variance exists

# The constraints of the per-dimension parameters, as TFP bijectors from their unconstrained variables
# (upstream's parameterisation, so the variables and their checkpoint keys stay upstream's ``prior_*``).
VARIANCE = tfb.Chain([tfb.Square(), tfb.Softplus()], name="variance")  # v = softplus(a)²
CORRELATION = tfb.Sigmoid(name="correlation")  # ρ = sigmoid(r)


def df_bijector(dtype: tf.DType = tf.float32) -> tfb.Bijector:
    """ν0 = exp(b) + :data:`DF_MIN` (the shift is a tensor of ``dtype``)."""
    return tfb.Chain([tfb.Shift(tf.constant(DF_MIN, dtype)), tfb.Exp()], name="df")


def floored_softplus(floor: float, dtype: tf.DType = tf.float32) -> tfb.Bijector:
    """x ↦ softplus(x) + ``floor``: a parameter bounded below (the pose kernel's length scale)."""
    return tfb.Chain([tfb.Shift(tf.constant(floor, dtype)), tfb.Softplus()], name="floored_softplus")


def softplus_inverse(y: float) -> float:
    """softplus⁻¹(y) in float64 (TFP's), for initial values of softplus-parameterised variables."""
    return float(tfp.math.softplus_inverse(tf.constant(y, tf.float64)))


def unconstrained(bijector: tfb.Bijector, value: float) -> float:
    """The variable's initial value for a parameter's initial ``value``: ``bijector.inverse`` in float64."""
    return float(bijector.inverse(tf.constant(value, tf.float64)))


class Process(tf.Module):
    """Base class of the latent processes; subclasses implement :meth:`predictive`.

    Every process has per-dimension parameters in the upstream parameterisation, created by
    :meth:`_create_parameters`: variance v = softplus(a)² (variable ``prior_var``), correlation
    ρ = sigmoid(r) (``prior_corr``) and, for a Student-t process, ν0 = exp(b) + 2 (``prior_nu``).

    Capabilities (what training and restoring ask instead of the class):
        uses_subjects: :meth:`sequence_log_prob` reads each sequence's training subject.
        test_time_state: the best checkpoint is completed by a state made once training ends
            (:mod:`bruno.runs.population_state`).
        train_latents_needed: 0, or the fewest train volumes whose latents step 0 starts it from
            (:meth:`start_from_latents`).
    """

    num_dims: int
    dtype: tf.DType
    prior_nu: Optional[tf.Variable] = None
    uses_subjects = False
    test_time_state = False
    train_latents_needed = 0

    def start_from_latents(self, latents: np.ndarray, val_loss: Callable[[], float], fresh: bool) -> None:
        """Step 0 from the train split's latents [V, N, D] (processes with ``train_latents_needed``); ``val_loss``
        scores a choice, ``fresh``: the flow was initialised here, not copied from a trained run."""
        raise NotImplementedError(f"{type(self).__name__} does not start from latents")

    def _per_dim(self, value: float, name: str) -> tf.Variable:
        return tf.Variable(tf.fill([self.num_dims], tf.constant(value, self.dtype)), name=name)

    def _create_parameters(self, variance_init: float, correlation_init: float, df_init: Optional[float]) -> None:
        """a0 = softplus⁻¹(√var_init), r0 = logit(corr_init), b0 = log(df_init − 2) (no ν0 when ``df_init`` is None):
        the inverses of :data:`VARIANCE`, :data:`CORRELATION` and :func:`df_bijector`, in float64."""
        self.prior_var = self._per_dim(unconstrained(VARIANCE, variance_init), "prior_var")
        self.prior_corr = self._per_dim(unconstrained(CORRELATION, correlation_init), "prior_corr")
        if df_init is not None:
            self.prior_nu = self._per_dim(unconstrained(df_bijector(tf.float64), df_init), "prior_nu")

    @property
    def variance(self) -> tf.Tensor:
        """v = softplus(a)², [D]."""
        return VARIANCE.forward(self.prior_var)

    @property
    def correlation(self) -> tf.Tensor:
        """ρ = sigmoid(r), [D]."""
        return CORRELATION.forward(self.prior_corr)

    @property
    def df(self) -> Optional[tf.Tensor]:
        """ν0 = exp(b) + 2, [D]; None for a Gaussian process."""
        return None if self.prior_nu is None else df_bijector(self.dtype).forward(self.prior_nu)

    def predictive(self, context_z: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor) -> Any:
        """The latent predictive at each query pose given the contexts (k = 0: the prior).

        Args:
            context_z: [batch, k, D]; context_poses: int [batch, k]; query_poses: int [batch, Q].
        """
        raise NotImplementedError

    def log_prob(self, predictive: Any, z: tf.Tensor) -> tf.Tensor:
        """Σ_j log p(z_j) of latents z [batch, Q, D] under ``predictive`` → [batch, Q]."""
        return predictive.log_prob(z)

    def sequence_log_prob(self, z: tf.Tensor, poses: tf.Tensor, num_context: int,
                          subjects: Optional[tf.Tensor] = None) -> tf.Tensor:
        """log p(z_t | z_1..z_{n_c}) of each target t > n_c of sequences z [batch, T, D] with poses int
        [batch, T] → [batch, T − n_c]: the targets do not condition each other. ``subjects`` (int [batch], the
        training subject of each sequence) matters only to the population process."""
        predictive = self.predictive(z[:, :num_context], poses[:, :num_context], poses[:, num_context:])
        return self.log_prob(predictive, z[:, num_context:])

    def warm_start_variables(self) -> dict[str, tf.Variable]:
        """The variables a warm start (``train.init_from``) may copy into another process, by role:
        any two processes that both list a role and agree on its shape share it."""
        return {"variance": self.prior_var, "correlation": self.prior_corr}

    @property
    def parameters(self) -> tuple[tf.Variable, ...]:
        """The trainable variables of the process."""
        return tuple(self.trainable_variables)

    def summary(self) -> dict[str, float]:
        """Correlation quantiles, variance range and median df of the process (subclasses add theirs)."""
        correlation, variance = self.correlation.numpy(), self.variance.numpy()
        summary = {f"correlation_q{q}": float(np.percentile(correlation, q)) for q in (10, 50, 90)}
        summary.update(variance_min=float(variance.min()), variance_max=float(variance.max()))
        if self.df is not None:
            summary["df_median"] = float(np.median(self.df.numpy()))
        return summary
