"""Exchangeable Student-t and Gaussian processes over the latents of one subject's slices.

Every latent coordinate j = 1..D is an independent exchangeable sequence (SPEC §1). For n items,
z_{1:n} ~ MVT_n(ν0, μ0·1, Σ_n) (or N(μ0·1, Σ_n) for the Gaussian process) in the *covariance*
parameterisation, Σ_n = (v − c)·I + c·11ᵀ: variance v on the diagonal, covariance c = ρ·v off it.

Parameters (one value per latent dimension, SPEC §1.1, the upstream parameterisation):

* prior mean μ0: a constant (0), not trained;
* variance v = softplus(a)², variable ``prior_var``, a0 = softplus⁻¹(√var_init);
* correlation ρ = sigmoid(r), variable ``prior_corr``, r0 = logit(corr_init); covariance c = ρ·v;
* degrees of freedom ν0 = exp(b) + 2 (Student-t only), variable ``prior_nu``, b0 = log(nu_init − 2).

Predictive of z_{n+1} given z_{1:n} (SPEC §1.3), with e_i = z_i − μ0, S = Σe_i, Q = Σe_i²:

    d = c / (v + (n−1)c),   m = μ0 + d·S,   k = v − n·c·d,
    β = Q/(v−c) − c·S² / ((v−c)(v+(n−1)c)),
    Student-t: t_{ν0+n}(location m, variance σ² = (ν0 + β − 2)/(ν0 + n − 2)·k);  Gaussian: N(m, k).

**Variance, not scale**: the Student-t predictive is parameterised by its variance σ², so its TFP
scale is √(σ²(ν−2)/ν) (SPEC §1.5). The state of a process is an immutable :class:`ProcessState`;
:meth:`ExchangeableProcess.update` is the upstream O(D) recurrent update (SPEC §1.4) and
:meth:`ExchangeableProcess.condition` the closed form from sums; they agree exactly. Through the
common interface (:class:`~bruno.processes.base.Process`) the poses are ignored: every query pose
gets the same predictive, and n_c = 0 in training scores each item given the ones before it.

The module is a little over 300 lines because the maths above is its documentation.

References:
    Korshunova et al., "BRUNO: A Deep Recurrent Model for Exchangeable Data", NeurIPS 2018.
    Shah, Wilson and Ghahramani, "Student-t Processes as Alternatives to Gaussian Processes", AISTATS 2014.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import tensorflow as tf
from tensorflow_probability import distributions as tfd

from bruno.processes.base import DF_MIN, Process

__all__ = [
    "ExchangeableProcess",
    "GaussianProcess",
    "Predictive",
    "ProcessState",
    "StudentTProcess",
    "predictive_distribution",
    "sequential_log_prob",
]


class ProcessState(NamedTuple):
    """What the process knows after n observations, per latent dimension.

    Attributes:
        num_observed: n, float [batch] (or broadcastable to it).
        mean: m, the predictive mean, float [batch, D].
        gaussian_variance: k, the Gaussian (Schur complement) predictive variance, float [batch, D].
        beta: β = eᵀΣ_n⁻¹e, float [batch, D] (0 for the Gaussian process).
        residual_sum: S = Σ (z_i − μ0), float [batch, D].
    """

    num_observed: tf.Tensor
    mean: tf.Tensor
    gaussian_variance: tf.Tensor
    beta: tf.Tensor
    residual_sum: tf.Tensor


def _closed_form(num_observed, residual_sum, residual_square_sum, mean, variance, covariance, student):  # type: ignore[no-untyped-def]
    """Predictive (m, k, β) from the sufficient statistics (n, S, Q); shapes broadcast."""
    n = num_observed
    spread = variance - covariance  # v − c > 0
    denominator = variance + (n - 1.0) * covariance  # v + (n−1)c > 0
    d = covariance / denominator
    m = mean + d * residual_sum
    k = variance - n * covariance * d
    if student:
        beta = residual_square_sum / spread - covariance * tf.square(residual_sum) / (spread * denominator)
    else:
        beta = tf.zeros_like(m)
    return m, k, beta


def predictive_distribution(mean: tf.Tensor, variance: tf.Tensor, df: Optional[tf.Tensor] = None) -> tfd.Distribution:
    """Per-dimension predictive: t_df with *variance* ``variance`` (df > 2), or N(mean, variance) when df is None.

    The Student-t uses TFP's log-density (accurate in float32 at ν ≈ 1000, SPEC §6 pitfall 6).
    """
    if df is None:
        return tfd.Normal(mean, tf.sqrt(variance))
    return tfd.StudentT(df=df, loc=mean, scale=tf.sqrt(variance * (df - 2.0) / df))


class Predictive(NamedTuple):
    """Per-dimension predictive parameters of the latents (of one item or of each query pose).

    Attributes:
        mean: [..., D].
        variance: [..., D], the variance (not the Student-t scale).
        df: degrees of freedom broadcastable to ``mean``; None for a Gaussian process.
    """

    mean: tf.Tensor
    variance: tf.Tensor
    df: Optional[tf.Tensor]

    def distribution(self) -> tfd.Distribution:
        """The independent per-dimension predictive."""
        return predictive_distribution(self.mean, self.variance, self.df)

    def log_prob(self, z: tf.Tensor) -> tf.Tensor:
        """log p(z) of latents z [..., D], summed over the dimensions → [...]."""
        return tf.reduce_sum(self.distribution().log_prob(tf.convert_to_tensor(z, self.mean.dtype)), axis=-1)

    def scaled(self, temperature: float) -> Predictive:
        """The same law with every deviation from the mean multiplied by ``temperature`` (variance × temperature²)."""
        return Predictive(self.mean, self.variance * temperature ** 2, self.df)


def sequential_log_prob(
    z: tf.Tensor,
    mean: tf.Tensor,
    variance: tf.Tensor,
    correlation: tf.Tensor,
    df: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """log p(z_i | z_1..z_{i−1}) of every item of exchangeable sequences, summed over dimensions.

    Args:
        z: float32 or float64 [batch, n, D].
        mean: prior mean μ0, broadcastable to [D].
        variance: prior variance v, broadcastable to [D].
        correlation: ρ ∈ (0, 1), broadcastable to [D]; the covariance is ρ·v.
        df: prior degrees of freedom ν0 > 2, broadcastable to [D]; None for the Gaussian process.

    Returns:
        [batch, n]: entry i is Σ_j log p(z_ij | z_1j..z_{i−1}j) (i = 0 is scored under the prior).
        Its sum over i is the joint log-density, which does not depend on the order of the items.
    """
    z = tf.convert_to_tensor(z)
    dtype = z.dtype
    mean, variance, correlation = (tf.cast(p, dtype) for p in (mean, variance, correlation))
    covariance = correlation * variance
    residual = z - mean
    # Statistics of the items before position i: exclusive cumulative sums along the sequence.
    residual_sum = tf.cumsum(residual, axis=1, exclusive=True)
    residual_square_sum = tf.cumsum(tf.square(residual), axis=1, exclusive=True)
    count = tf.cast(tf.range(tf.shape(z)[1]), dtype)[None, :, None]
    m, k, beta = _closed_form(count, residual_sum, residual_square_sum, mean, variance, covariance, df is not None)
    if df is None:
        return tf.reduce_sum(predictive_distribution(m, k).log_prob(z), axis=-1)
    df0 = tf.cast(df, dtype)
    predictive_variance = (df0 + beta - 2.0) / (df0 + count - 2.0) * k
    return tf.reduce_sum(predictive_distribution(m, predictive_variance, df0 + count).log_prob(z), axis=-1)


class ExchangeableProcess(Process):
    """Shared machinery of the Student-t and Gaussian exchangeable processes.

    Args:
        num_dims: D, the latent dimension.
        variance_init: initial prior variance (upstream 1).
        correlation_init: initial correlation (upstream 0.1).
        dtype: float32 or float64.
    """

    student = False

    def __init__(self, num_dims: int, variance_init: float = 1.0, correlation_init: float = 0.1,
                 dtype: tf.DType = tf.float32, name: Optional[str] = None) -> None:
        super().__init__(name=name)
        if num_dims < 1:
            raise ValueError(f"num_dims={num_dims}, expected >= 1")
        if variance_init <= 0:
            raise ValueError(f"variance_init={variance_init}, expected > 0")
        if not 0.0 < correlation_init < 1.0:
            raise ValueError(f"correlation_init={correlation_init}, expected in (0, 1)")
        self.num_dims, self.dtype = num_dims, dtype
        self.prior_mean = tf.zeros([num_dims], dtype=dtype)  # μ0: constant, not trained
        self._create_parameters(variance_init, correlation_init, None)

    @property
    def covariance(self) -> tf.Tensor:
        """c = ρ·v, [D]."""
        return self.correlation * self.variance

    def initial_state(self, batch_size: int) -> ProcessState:
        """The prior: n = 0, m = μ0, k = v, β = 0, S = 0, each [batch_size, D]."""
        zeros = tf.zeros([batch_size, self.num_dims], self.dtype)
        return ProcessState(tf.zeros([batch_size], self.dtype), zeros + self.prior_mean, zeros + self.variance, zeros, zeros)

    def update(self, state: ProcessState, z: tf.Tensor) -> ProcessState:
        """Observe one more item z [batch, D]: the upstream recurrent update (SPEC §1.4), O(D).

        Returns:
            A new state; ``state`` is not modified.
        """
        v, c, mu = self.variance, self.covariance, self.prior_mean
        n = state.num_observed + 1.0
        n_d = n[:, None]
        d = c / (v + (n_d - 1.0) * c)
        residual = z - mu
        mean = (1.0 - d) * state.mean + d * z
        gaussian_variance = (1.0 - d) * state.gaussian_variance + d * (v - c)
        beta = state.beta
        if self.student:
            def b_coefficient(count: tf.Tensor) -> tf.Tensor:  # off-diagonal of Σ_count⁻¹ (SPEC §1.2)
                return -c / ((v - c) * (v + (count - 1.0) * c))

            new_sum = state.residual_sum + residual
            beta = (beta + tf.square(residual) / (v - c) + b_coefficient(n_d) * tf.square(new_sum)
                    - b_coefficient(n_d - 1.0) * tf.square(state.residual_sum))
        return ProcessState(n, mean, gaussian_variance, beta, state.residual_sum + residual)

    def condition(self, z: tf.Tensor) -> ProcessState:
        """Observe n items at once, z [batch, n, D] (n may be 0): the closed form (SPEC §1.3).

        Equals ``n`` calls of :meth:`update`, and does not depend on the order of the items.
        """
        z = tf.convert_to_tensor(z, self.dtype)
        residual = z - self.prior_mean
        residual_sum = tf.reduce_sum(residual, axis=1)
        square_sum = tf.reduce_sum(tf.square(residual), axis=1)
        n = tf.cast(tf.shape(z)[1], self.dtype)
        m, k, beta = _closed_form(n, residual_sum, square_sum, self.prior_mean, self.variance, self.covariance, self.student)
        return ProcessState(tf.fill(tf.shape(z)[:1], n), m, k + tf.zeros_like(m), beta, residual_sum)

    def predictive_parameters(self, state: ProcessState) -> Predictive:
        """The predictive of the next item: mean and variance [batch, D] (and df)."""
        return Predictive(state.mean, state.gaussian_variance, None)

    def state_distribution(self, state: ProcessState) -> tfd.Distribution:
        """The per-dimension predictive of the next item, batch shape [batch, D]."""
        return self.predictive_parameters(state).distribution()

    def predictive(self, context_z: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor) -> Predictive:
        """The predictive of each query given the contexts (poses ignored: the same for every query),
        mean and variance [batch, Q, D]."""
        context_z = tf.convert_to_tensor(context_z, self.dtype)
        batch = int(context_z.shape[0]) if context_z.shape[0] is not None else tf.shape(context_z)[0]
        queries = tf.shape(query_poses)[1]  # dynamic: a compiled caller may leave it unknown
        state = self.condition(context_z) if context_z.shape[1] != 0 else self.initial_state(batch)  # None: compiled, k >= 1
        mean, variance, df = self.predictive_parameters(state)
        shape = [batch, queries, self.num_dims]
        return Predictive(tf.broadcast_to(mean[:, None], shape), tf.broadcast_to(variance[:, None], shape),
                          None if df is None else df[..., None, :])

    def sequence_log_prob(self, z: tf.Tensor, poses: tf.Tensor, num_context: int,
                          subjects: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Training's score (upstream): the targets given the first n_c items; n_c = 0 scores every item
        given the ones before it (:meth:`sequential_log_prob`); ``subjects`` is not used."""
        if num_context == 0:
            return self.sequential_log_prob(z)
        return self.state_log_prob(self.condition(z[:, :num_context]), z[:, num_context:])

    def state_log_prob(self, state: ProcessState, z: tf.Tensor) -> tf.Tensor:
        """Σ_j log p(z_j | state) of items that do *not* update the state.

        Args:
            state: batch shape [batch].
            z: [batch, D], or [batch, m, D] for m conditionally independent targets.

        Returns:
            [batch] or [batch, m].
        """
        z = tf.convert_to_tensor(z, self.dtype)
        if z.shape.rank == 3:  # one predictive per sequence, broadcast over its m targets
            state = ProcessState(*(t[:, None] for t in state))
        return tf.reduce_sum(self.state_distribution(state).log_prob(z), axis=-1)

    def prior_log_prob(self, z: tf.Tensor) -> tf.Tensor:
        """Σ_j log p(z_j) under the prior (μ0, v, ν0), z [..., D] → [...]."""
        z = tf.convert_to_tensor(z, self.dtype)
        return tf.reduce_sum(predictive_distribution(self.prior_mean, self.variance, self.df).log_prob(z), axis=-1)

    def sample(self, state: ProcessState, num_samples: int, seed: Optional[int | tf.Tensor] = None) -> tf.Tensor:
        """Independent draws from the predictive, float [num_samples, batch, D]."""
        return self.state_distribution(state).sample(num_samples, seed=seed)

    def sequential_log_prob(self, z: tf.Tensor) -> tf.Tensor:
        """log p(z_i | z_<i) for sequences z [batch, n, D] → [batch, n] (unconditional BRUNO, SPEC §1.7)."""
        return sequential_log_prob(z, self.prior_mean, self.variance, self.correlation, self.df)


class GaussianProcess(ExchangeableProcess):
    """The exchangeable Gaussian process (upstream ``GaussianRecurrentLayer``): 2·D parameters."""

    student = False


class StudentTProcess(ExchangeableProcess):
    """The exchangeable Student-t process (upstream ``StudentRecurrentLayer``): 3·D parameters.

    Args:
        df_init: initial degrees of freedom ν0 (upstream 1000); b0 = log(df_init − 2).
        (others as :class:`ExchangeableProcess`)
    """

    student = True

    def __init__(self, num_dims: int, variance_init: float = 1.0, correlation_init: float = 0.1,
                 df_init: float = 1000.0, dtype: tf.DType = tf.float32, name: Optional[str] = None) -> None:
        super().__init__(num_dims, variance_init, correlation_init, dtype, name)
        if df_init <= DF_MIN:
            raise ValueError(f"df_init={df_init}, expected > {DF_MIN}")
        self.prior_nu = self._per_dim(math.log(df_init - DF_MIN), "prior_nu")

    def predictive_parameters(self, state: ProcessState) -> Predictive:
        df0 = self.df
        assert df0 is not None
        n = state.num_observed[..., None]
        variance = (df0 + state.beta - 2.0) / (df0 + n - 2.0) * state.gaussian_variance
        return Predictive(state.mean, variance, df0 + n)
