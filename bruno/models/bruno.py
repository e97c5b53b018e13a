"""Conditional BRUNO: pose embedding + conditional RealNVP + exchangeable process (SPEC §3, §5.1).

A sequence of T slices of one subject, images x_t with one-hot poses p_t, is scored as follows:
e_t = embed(p_t); z_t, J_t = flow(x_t; e_t); the first n_c items are contexts and every target
t > n_c scores log p(z_t | z_1..z_{n_c}) + J_t (targets do not update the process, so they are
conditionally independent given the contexts). With n_c = 0 the score is the unconditional
BRUNO chain log p(z_t | z_<t) + J_t. Bits per dimension = −mean(score)/(D·ln 2) on the [0, 256)
intensity scale.

Sampling a volume: condition the process on the context latents (none: the prior, the learned
"mental map"), draw independent latents for every query pose and sample, and invert the flow with
each query's own pose. Samples come back on the [0, 256) intensity scale (the proper inverse of the
logit pre-processing). The mean image is the Monte Carlo average of the decoded samples (the
paper's "mean image"); :meth:`ConditionalBruno.decode_predictive_mean` decodes the predictive mean
latent instead (one image per query, no sampling).

With ``model.process.kind: pose_student_t`` (or ``pose_gaussian``), the exchangeable process is replaced by the
pose-aware process of SPEC §8 (:class:`~bruno.processes.PoseKernelProcess`): each target and each query pose gets its
own predictive, which depends on its distance to the contexts; with n_c = 0 targets are scored under
that process's prior (the latent atlas). ``kind: latent_factor`` adds a subject code shared by
every pose and dimension (:class:`~bruno.processes.LatentFactorProcess`, SPEC §9.3); ``kind: population``
takes that code's loadings from the other training subjects' latents (:class:`~bruno.processes.PopulationProcess`,
SPEC §9.4). The model is
handed its process (or builds the one ``model`` asks for) and only speaks the common interface
(:class:`~bruno.processes.base.Process`).

"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from bruno.baselines import ClassicalEstimate, CrossFittedEstimate
from bruno.config import Config, ModelConfig
from bruno.flows.layers import PoseEmbedding
from bruno.flows.realnvp import ConditionalRealNVP, FlowArchitecture
from bruno.memory import MemoryEstimate, flow_bytes
from bruno.models.sequence_model import LogProb, Samples, SequenceModel, shape_of
from bruno.processes import FactorPredictive, Predictive, Process, process_class, process_from_config
from bruno.units import bits_per_dim

__all__ = ["ConditionalBruno", "check_blend", "check_temperatures"]

logger = logging.getLogger(__name__)
MIN_INIT_IMAGES = 32
Estimator = Union[ClassicalEstimate, CrossFittedEstimate]


def check_temperatures(temperatures: Mapping[Any, Any]) -> None:
    """Raise ValueError unless every key is a number of contexts k >= 1 and every value a finite τ > 0."""
    for k, tau in temperatures.items():
        if int(k) < 1 or not 0 < float(tau) < float("inf"):
            raise ValueError(f"temperature {tau!r} at k = {k!r}: expected k >= 1 and a finite τ > 0")


def check_blend(weights: Mapping[Any, Any]) -> None:
    """Raise ValueError unless every key is a number of contexts k >= 1 and every value a weight w in [0, 1]."""
    for k, w in weights.items():
        if int(k) < 1 or not 0.0 <= float(w) <= 1.0:
            raise ValueError(f"blend weight {w!r} at k = {k!r}: expected k >= 1 and a weight in [0, 1]")


def _per_k(values: Mapping[int, float], num_context: int) -> float:
    """A test-time setting given per k (sorted keys) at ``num_context`` contexts: interpolated linearly in log k between
    the k given, the nearest one's outside them; 1.0 where none is given, and for the prior (k = 0)."""
    if not values or num_context < 1:
        return 1.0
    return float(np.interp(np.log(num_context), np.log(list(values)), list(values.values())))


class ConditionalBruno(SequenceModel):
    """The paper's model.

    Args:
        image_size: H = W of the slices, a multiple of 2^num_scales.
        num_poses: N, the length of the one-hot pose.
        config: the ``model`` config section.

    Raises:
        ValueError: sizes out of range (e.g. ``image_size`` not a multiple of 2^num_scales).
    """

    display_name, deterministic_label, is_baseline = "BRUNO", "decoded predictive mean", False
    exact_log_prob = supports_mixed_precision = has_process = True

    def __init__(self, image_size: int, num_poses: int, config: ModelConfig = ModelConfig(),
                 process: Optional[Process] = None) -> None:
        super().__init__(image_size, num_poses, config, name="conditional_bruno")
        flow = config.flow
        self.embedding = PoseEmbedding(flow.embedding_size, name="pose_embedding")
        self.flow = ConditionalRealNVP(image_size, FlowArchitecture(  # the quirk switches, named for what they do
            num_scales=flow.num_scales, num_filters=flow.num_filters, num_residual_blocks=flow.num_residual_blocks,
            num_dense_couplings=flow.num_dense_couplings, dense_units=flow.dense_units,
            first_kernel_size=3 if flow.upstream_first_conv_3x3 else 1,
            orthogonal_label_heads=flow.upstream_label_heads,
            normalize_init_output=not flow.upstream_init_passes_raw,
            include_alpha_constant=not flow.upstream_logit_log_det,
        ))
        self.process = process or process_from_config(config.process, self.num_dims, num_poses)
        self.estimator: Optional[Estimator] = None  # the classical estimate (config.estimate.use): attach_estimator
        self.temperatures: dict[int, float] = {}  # the test-time spread per number of contexts: set_temperatures
        self.blend: dict[int, float] = {}  # the decoded mean's weight against the classical estimate: set_blend

    def build(self) -> None:
        """Create every variable with a dummy forward pass through the flow."""
        size, poses = self.image_size, self.num_poses
        dummy = tf.fill([1, 1, size, size, 1], 128.0)
        self.encode(dummy, tf.one_hot([[0]], poses), estimates=dummy if self.conditioned_on_estimate else None)

    # ------------------------------------------------------------------------ the classical estimate
    @property
    def conditioned_on_estimate(self) -> bool:
        """Whether every coupling of the flow sees the classical estimate of its slice (``model.estimate.use``)."""
        return self.config.estimate.use

    def attach_estimator(self, estimator: Estimator) -> None:
        """Give the model its classical estimate: cross-fitted over the train subjects in training
        (:class:`~bruno.baselines.CrossFittedEstimate`), every train subject's PCA at test time
        (:class:`~bruno.baselines.ClassicalEstimate`)."""
        self.estimator = estimator

    def sequence_estimates(self, images: np.ndarray, poses: np.ndarray, num_context: int,
                           subjects: Optional[np.ndarray] = None) -> np.ndarray:
        """float32 [batch, T, H, W, 1]: each slice's estimate from its sequence's first ``num_context`` slices (none:
        the atlas), each train sequence's from the PCA that did not see its subject (``subjects``: train rows; None:
        new subjects, every train subject's PCA)."""
        if self.estimator is None:
            raise ValueError("model.estimate.use is set but no estimator is attached (attach_estimator)")
        images, indices = np.asarray(images, np.float64), np.argmax(np.asarray(poses), axis=-1)
        out = np.empty(images.shape, np.float32)
        volume = np.zeros((self.num_poses, self.image_size, self.image_size))
        for b in range(len(images)):
            contexts = indices[b, :num_context]
            volume[contexts] = images[b, :num_context, ..., 0]
            estimate = self.estimator.for_subject(None if subjects is None else int(subjects[b]))
            out[b, ..., 0] = estimate(volume, contexts)[indices[b]]
        return out

    def log_prob_inputs(self, images: np.ndarray, poses: np.ndarray, num_context: int,
                        subjects: Optional[np.ndarray] = None) -> dict[str, tf.Tensor]:
        """The further keywords of :meth:`log_prob` for a batch: ``subjects`` where the process uses them and they are
        known (training), ``estimates`` where the flow is conditioned on the classical estimate."""
        inputs: dict[str, tf.Tensor] = {}
        if self.uses_subjects and subjects is not None:
            inputs["subjects"] = tf.constant(subjects)
        if self.conditioned_on_estimate:
            inputs["estimates"] = tf.constant(self.sequence_estimates(images, poses, num_context, subjects))
        return inputs

    def _query_estimates(self, context_images: tf.Tensor, context_poses: tf.Tensor,
                         query_poses: tf.Tensor) -> tuple[Optional[tf.Tensor], Optional[tf.Tensor]]:
        """(context estimates [batch, k, H, W, 1], query estimates [batch, Q, H, W, 1]) from the contexts with every
        train subject's PCA; (None, None) for a flow not conditioned on the estimate."""
        if not self.conditioned_on_estimate:
            return None, None
        contexts = np.asarray(context_images)
        k = contexts.shape[1]
        poses = np.concatenate([np.asarray(context_poses), np.asarray(query_poses)], axis=1)
        padding = np.zeros((len(contexts), poses.shape[1] - k) + contexts.shape[2:], np.float32)  # the queries: unread
        images = np.concatenate([contexts, padding], axis=1)
        both = self.sequence_estimates(images, poses, k)
        return tf.constant(both[:, :k]), tf.constant(both[:, k:])

    def summary(self) -> dict[str, float]:
        """The process's figures (:meth:`~bruno.processes.Process.summary`)."""
        return self.process.summary()

    @classmethod
    def memory_estimate(cls, config: Config, images: int = 0) -> MemoryEstimate:
        flow = config.model.flow
        return MemoryEstimate(flow_bytes(config, images),
                              f"model.flow (num_filters={flow.num_filters}, num_residual_blocks={flow.num_residual_blocks}, "
                              f"num_scales={flow.num_scales}, data.image_size={config.data.image_size})")

    @property
    def uses_subjects(self) -> bool:
        """Whether training should tell :meth:`log_prob` each sequence's subject (its process asks for them)."""
        return self.process.uses_subjects

    @classmethod
    def has_test_time_state(cls, config: Config) -> bool:
        """Whether its process has a test-time state."""
        return process_class(config.model.process).test_time_state

    @property
    def process_variables(self) -> tuple[tf.Variable, ...]:
        return self.process.parameters

    # ------------------------------------------------------------------------------- encoding
    def encode(self, images: tf.Tensor, poses: tf.Tensor, init: bool = False,
               estimates: Optional[tf.Tensor] = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Latents and flow log-dets of a batch of sequences.

        Args:
            images: float32 [batch, T, H, W, 1], dequantised pixels in [0, 256).
            poses: float32 [batch, T, N], one-hot.
            init: run the data-dependent initialisation (the iteration-0 pass; use a large batch).
            estimates: float32 [batch, T, H, W, 1], each slice's classical estimate (:meth:`sequence_estimates`);
                required exactly when the flow is conditioned on it.

        Returns:
            z float32 [batch, T, D] and log|det| float32 [batch, T].
        """
        shape = self._check_images("images", images)
        self._check_poses("poses", poses, shape[:2])
        batch, length = tf.shape(images)[0], tf.shape(images)[1]
        flat_images = tf.reshape(images, [-1, self.image_size, self.image_size, 1])
        embedding = self.embedding(tf.reshape(poses, [-1, self.num_poses]))
        z, log_det = self.flow.forward_and_log_det(flat_images, embedding, init=init,
                                                   estimate=self._flat_estimates(estimates))
        return tf.reshape(z, [batch, length, self.num_dims]), tf.reshape(log_det, [batch, length])

    def _flat_estimates(self, estimates: Optional[tf.Tensor]) -> Optional[tf.Tensor]:
        if (estimates is None) == self.conditioned_on_estimate:
            raise ValueError("estimates: expected them exactly when model.estimate.use is set")
        return None if estimates is None else tf.reshape(estimates, [-1, self.image_size, self.image_size, 1])

    def initialize(self, images: tf.Tensor, poses: tf.Tensor, estimates: Optional[tf.Tensor] = None) -> None:
        """Data-dependent initialisation on the first batch (no gradient step; SPEC §2.7, §3).

        The per-unit statistics come from this batch: with a handful of images they are unreliable
        (2 images made the dense couplings' outputs reach ~1e10 in a probe; 64 gave |z| < 70).
        """
        batch, length = shape_of(images)[:2]
        count = (batch or 0) * (length or 0)
        if count and count < MIN_INIT_IMAGES:
            logger.warning("data-dependent init on only %d images (recommended >= %d): expect unstable scales",
                           count, MIN_INIT_IMAGES)
        self.encode(images, poses, init=True, estimates=estimates)

    def log_prob(self, images: tf.Tensor, poses: tf.Tensor, num_context: int,
                 subjects: Optional[tf.Tensor] = None, estimates: Optional[tf.Tensor] = None) -> LogProb:
        """Score the targets of each sequence given its first ``num_context`` slices (SPEC §1.7).

        Args:
            images: float32 [batch, T, H, W, 1], dequantised pixels in [0, 256).
            poses: float32 [batch, T, N], one-hot.
            num_context: n_c, 0 <= n_c < T; 0 scores every item given the ones before it.
            subjects: int [batch], each sequence's training subject (its bank row): the population process leaves
                it out and writes the sequence's latents into its bank (:attr:`uses_subjects`); None: new subjects.
            estimates: each slice's classical estimate from the first ``num_context`` slices (:meth:`log_prob_inputs`),
                where the flow is conditioned on it.

        Returns:
            :class:`LogProb` with ``log_prob`` [batch, T − n_c].

        Raises:
            ValueError: bad shapes, non-finite inputs, or ``num_context`` out of range.
        """
        self._check_num_context(num_context, self._check_images("images", images)[1])
        z, log_det = self.encode(images, poses, estimates=estimates)
        log_prob = (self.process.sequence_log_prob(z, tf.argmax(poses, axis=-1), num_context, subjects)
                    + log_det[:, num_context:])
        return LogProb(log_prob, bits_per_dim(-tf.reduce_mean(log_prob), self.num_dims))

    # ------------------------------------------------------------------------------- sampling
    @tf.function(reduce_retracing=True)
    def _decode(self, latents: tf.Tensor, poses: tf.Tensor, estimates: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Latents [n, D] and one-hot poses [n, N] (and estimates [n, H, W, 1]) → images [n, H, W, 1] (compiled)."""
        return self.flow.inverse(latents, pose_embedding=self.embedding(poses), estimate=estimates)

    # ------------------------------------------------------------------------ the test-time spread
    def set_temperatures(self, temperatures: dict[int, float]) -> None:
        """Scale the predictive's deviations from its mean by τ(k) given k >= 1 contexts (none given: τ = 1): the spread
        chosen on val by CRPS once training ends (:mod:`bruno.reconstruction.spread`). Between the k given, τ is
        interpolated linearly in log k; outside them it is the nearest one's. The prior (k = 0) is never scaled.

        Raises:
            ValueError: a k < 1 or a τ that is not finite and > 0.
        """
        check_temperatures(temperatures)
        self.temperatures = {int(k): float(tau) for k, tau in sorted(temperatures.items(), key=lambda item: int(item[0]))}

    def temperature(self, num_context: int) -> float:
        """τ(k) of :meth:`set_temperatures` for k contexts (1.0 where none is set, and for the prior)."""
        return _per_k(self.temperatures, num_context)

    # ------------------------------------------------------------------ the blend with the classical estimate
    def set_blend(self, weights: dict[int, float]) -> None:
        """Give the flow's decoded mean D the weight w(k) against the classical estimate C given k >= 1 contexts: the
        mean image becomes w·D + (1 − w)·C and every sample moves by (1 − w)(C − D), so the samples keep their spread
        about the new mean (chosen on val by SSIM once training ends: :mod:`bruno.reconstruction.blend`). Between the k
        given, w is interpolated linearly in log k; outside them it is the nearest one's; the prior is never blended.
        A flow that is not conditioned on the estimate has no C: only w = 1 is accepted.

        Raises:
            ValueError: a k < 1, a w outside [0, 1], or w < 1 for a flow without the classical estimate.
        """
        check_blend(weights)
        if not self.conditioned_on_estimate and any(float(w) != 1.0 for w in weights.values()):
            raise ValueError("a blend with the classical estimate needs a flow conditioned on it (model.estimate.use)")
        self.blend = {int(k): float(w) for k, w in sorted(weights.items(), key=lambda item: int(item[0]))}
        blended = any(w < 1.0 for w in self.blend.values())
        self.deterministic_label = "decoded mean blended with the estimate" if blended else type(self).deterministic_label

    def blend_weight(self, num_context: int) -> float:
        """w(k) of :meth:`set_blend` for k contexts (1.0, the decoded mean alone, where none is set and for the prior)."""
        return _per_k(self.blend, num_context)

    def _blend_shift(self, predictive: Predictive | FactorPredictive, query_poses: tf.Tensor,
                     estimates: Optional[tf.Tensor], num_context: int, decode_batch_size: int) -> Optional[tf.Tensor]:
        """(1 − w)(C − D) [batch, Q, H, W, 1]: what the blend adds to the decoded mean D (and to every sample) at each
        query; None where w(k) = 1."""
        weight = self.blend_weight(num_context)
        if weight == 1.0 or estimates is None:
            return None
        decoded = self._decoded_means(predictive, query_poses, estimates, decode_batch_size)
        return (1.0 - weight) * (estimates - decoded)

    def _decoded_means(self, predictive: Predictive | FactorPredictive, query_poses: tf.Tensor,
                       estimates: Optional[tf.Tensor], decode_batch_size: int) -> tf.Tensor:
        """The predictive mean latent of each query decoded with its pose (and estimate): [batch, Q, H, W, 1]."""
        batch, queries = shape_of(query_poses)[:2]
        images = self._decode_all(tf.reshape(predictive.mean, [-1, self.num_dims]),
                                  tf.reshape(tf.convert_to_tensor(query_poses, tf.float32), [-1, self.num_poses]),
                                  decode_batch_size, False, self._flat_estimates(estimates))
        return tf.reshape(images, [batch, queries, self.image_size, self.image_size, 1])

    def predictive(self, context_images: tf.Tensor, context_poses: tf.Tensor,
                   query_poses: tf.Tensor) -> Predictive | FactorPredictive:
        """The latent predictive at each query pose given the contexts (none: the prior).

        Args:
            context_images: float32 [batch, k, H, W, 1] in [0, 256); context_poses: [batch, k, N] one-hot;
            query_poses: [batch, Q, N] one-hot.

        Returns:
            :class:`~bruno.processes.Predictive` with mean and variance [batch, Q, D] (the latent factor
            process: a :class:`~bruno.processes.FactorPredictive`). The exchangeable process gives every
            query the same predictive.
        """
        batch, _ = self._check_query(context_images, context_poses, query_poses)
        if not shape_of(context_images)[1]:  # no contexts: the prior
            return self.process.predictive(tf.zeros([batch, 0, self.num_dims]), tf.argmax(context_poses, axis=-1),
                                           tf.argmax(query_poses, axis=-1))
        return self._predictive_given(context_images, context_poses, query_poses,
                                      self._query_estimates(context_images, context_poses, query_poses)[0])

    def _predictive_given(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor,
                          context_estimates: Optional[tf.Tensor]) -> Predictive | FactorPredictive:
        """:meth:`predictive` with k >= 1 contexts whose estimates (if any) are already made, scaled by τ(k)."""
        predictive = self._conditioned_predictive(tf.convert_to_tensor(context_images, tf.float32),
                                                  tf.convert_to_tensor(context_poses, tf.float32),
                                                  tf.convert_to_tensor(query_poses, tf.float32), context_estimates)
        temperature = self.temperature(shape_of(context_images)[1])
        return predictive if temperature == 1.0 else predictive.scaled(temperature)

    @tf.function(reduce_retracing=True)
    def _conditioned_predictive(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor,
                                context_estimates: Optional[tf.Tensor] = None) -> Predictive | FactorPredictive:
        """:meth:`predictive` with k >= 1 contexts, compiled (one graph for every k after the first few): the eager
        encode and predictive took 0.33 s of a 0.56 s decoded mean at IXI's size (90 poses of 32 × 32)."""
        z = self.encode(context_images, context_poses, estimates=context_estimates)[0]
        return self.process.predictive(z, tf.argmax(context_poses, axis=-1), tf.argmax(query_poses, axis=-1))

    def _predictive_and_query_estimates(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor
                                        ) -> tuple[Predictive | FactorPredictive, Optional[tf.Tensor]]:
        """The predictive and the queries' estimates, the classical estimate made once for both."""
        if not shape_of(context_images)[1]:
            return self.predictive(context_images, context_poses, query_poses), \
                self._query_estimates(context_images, context_poses, query_poses)[1]
        self._check_query(context_images, context_poses, query_poses)
        context_estimates, query_estimates = self._query_estimates(context_images, context_poses, query_poses)
        return self._predictive_given(context_images, context_poses, query_poses, context_estimates), query_estimates

    def _decode_all(self, latents: tf.Tensor, poses: tf.Tensor, batch_size: int, progress: bool,
                    estimates: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Latents [M, D] with one-hot poses [M, N] (and estimates [M, H, W, 1]) → images [M, H, W, 1] clipped to
        [0, 256], in chunks."""
        decoded = []
        total = int(latents.shape[0])
        for start in tqdm(range(0, total, batch_size), desc="sampling", unit="batch", disable=not progress):
            chunk = slice(start, start + batch_size)
            decoded.append(self._decode(latents[chunk], poses[chunk], None if estimates is None else estimates[chunk]))
        # The exact inverse of the logit step spans (−0.0013, 256.0013); data pixels lie in [0, 256).
        return tf.clip_by_value(tf.concat(decoded, axis=0), 0.0, 256.0)

    def decode_latents(self, latents: tf.Tensor, poses: tf.Tensor, decode_batch_size: int = 512) -> tf.Tensor:
        """Latents [M, D] with one-hot poses [M, N] → images [M, H, W, 1] in [0, 256], decoded in chunks."""
        return self._decode_all(tf.convert_to_tensor(latents, tf.float32), tf.convert_to_tensor(poses, tf.float32),
                                decode_batch_size, False)

    def decode_predictive_mean(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor,
                               decode_batch_size: int = 256) -> tf.Tensor:
        """The predictive mean latent of each query, decoded with its pose: float [batch, Q, H, W, 1] in [0, 256];
        blended with the classical estimate where :meth:`set_blend` gives w(k) < 1 (w·D + (1 − w)·C).

        One deterministic image per query (not the mean of the decoded samples: the flow is non-linear).
        """
        predictive, estimates = self._predictive_and_query_estimates(context_images, context_poses, query_poses)
        images = self._decoded_means(predictive, query_poses, estimates, decode_batch_size)
        weight = self.blend_weight(shape_of(context_images)[1])
        if weight == 1.0 or estimates is None:
            return images
        return tf.clip_by_value(weight * images + (1.0 - weight) * estimates, 0.0, 256.0)

    def conditional_log_prob(self, context_images: tf.Tensor, context_poses: tf.Tensor, target_images: tf.Tensor,
                             target_poses: tf.Tensor) -> tf.Tensor:
        """log p(x_q | contexts) in nats [batch, Q] of each target scored alone, as the one target of a sequence of the
        contexts and it (:meth:`log_prob` with n_c = k and one target): the flow's log|det| plus the log-density of the
        predictive that :meth:`sample` draws from, its test-time spread τ(k) included, before a blend
        (:meth:`set_blend`) moves it. The moved law's density at x is the flow's at x − (1 − w)(C − D), zero wherever that
        leaves the data range [0, 256): on the hippocampus test split, the moved law scored that way (the moved-back
        target held at the range's edge) gave 7.05 / 6.41 / 5.91 / 6.93 bits/dim at k = 1 / 3 / 5 / 9, worse than the
        classical forecasters, from the background voxels near 0 that a positive shift moves out of the support. So the
        density scored is the flow's own, and the blend is a correction of where its samples sit (RESULTS.md, issue 36).

        Args:
            context_images, context_poses: as :meth:`sample`; target_images: float32 [batch, Q, H, W, 1] in [0, 256);
            target_poses: [batch, Q, N] one-hot.
        """
        self._check_poses("target_poses", target_poses, self._check_images("target_images", target_images)[:2])
        predictive, estimates = self._predictive_and_query_estimates(context_images, context_poses, target_poses)
        z, log_det = self.encode(tf.convert_to_tensor(target_images, tf.float32),
                                 tf.convert_to_tensor(target_poses, tf.float32), estimates=estimates)
        return predictive.log_prob(z) + log_det

    def sample(
        self,
        context_images: tf.Tensor,
        context_poses: tf.Tensor,
        query_poses: tf.Tensor,
        num_samples: int,
        seed: int = 0,
        decode_batch_size: int = 256,
        progress: bool = False,
    ) -> Samples:
        """Sample the slices at ``query_poses`` of each subject given its context slices.

        Args:
            context_images: float32 [batch, k, H, W, 1], dequantised pixels in [0, 256); k = 0
                samples the prior (the learned atlas).
            context_poses: float32 [batch, k, N], one-hot.
            query_poses: float32 [batch, Q, N], one-hot.
            num_samples: S >= 1 draws per query.
            seed: seed of the latent draws (stateless: the same seed gives the same samples).
            decode_batch_size: images inverted through the flow at once.
            progress: show a progress bar over the decoding.

        Returns:
            :class:`Samples` with ``images`` [S, batch, Q, H, W, 1] and their ``mean``; where :meth:`set_blend` gives
            w(k) < 1, every sample moved by (1 − w)(C − D) (then clipped to [0, 256] again).

        Raises:
            ValueError: bad shapes, non-finite inputs or ``num_samples`` < 1.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples}, expected >= 1")
        predictive, estimates = self._predictive_and_query_estimates(context_images, context_poses, query_poses)
        batch, queries = shape_of(query_poses)[:2]
        draws = predictive.distribution().sample(num_samples, seed=tf.constant([seed, 0], tf.int32))  # [S, B, Q, D]
        poses = tf.reshape(tf.tile(tf.convert_to_tensor(query_poses, tf.float32)[None], [num_samples, 1, 1, 1]),
                           [-1, self.num_poses])
        shift = self._blend_shift(predictive, query_poses, estimates, shape_of(context_images)[1], decode_batch_size)
        if estimates is not None:
            estimates = tf.tile(estimates[None], [num_samples, 1, 1, 1, 1, 1])
        images = self._decode_all(tf.reshape(draws, [-1, self.num_dims]), poses, decode_batch_size, progress,
                                  self._flat_estimates(estimates))
        size = self.image_size
        images = tf.reshape(images, [num_samples, batch, queries, size, size, 1])
        if shift is not None:
            images = tf.clip_by_value(images + shift[None], 0.0, 256.0)
        return Samples(images, tf.reduce_mean(images, axis=0))
