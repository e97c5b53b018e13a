"""The interface every model of (slice, pose) sequences shares: BRUNO, the GQN and the C-VAE (SPEC §5.1, §5.5).

:class:`SequenceModel` checks its inputs and declares what training, reconstruction and evaluation
call: ``log_prob`` (a lower bound for the baselines), ``sample`` and ``decode_predictive_mean``, on the
[0, 256) intensity scale. A subclass also says how it is shown (``display_name``), what its one
deterministic image is (``deterministic_label``) and whether it is a baseline to beat (``is_baseline``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from bruno.config import Config, ModelConfig
from bruno.memory import MemoryEstimate

__all__ = ["LogProb", "Samples", "SequenceModel", "shape_of", "variables_sha1"]


class LogProb(NamedTuple):
    """Scores of the targets of a batch of sequences.

    Attributes:
        log_prob: float [batch, T − n_c], log p of each target image in nats.
        bits_per_dim: float scalar, −mean(log_prob)/(D·ln 2).
    """

    log_prob: tf.Tensor
    bits_per_dim: tf.Tensor


class Samples(NamedTuple):
    """Decoded samples for the query poses.

    Attributes:
        images: float [num_samples, batch, Q, H, W, 1] on the [0, 256] intensity scale (the stored
            uint8 value plus dequantisation noise; divide by 256 for [0, 1]).
        mean: float [batch, Q, H, W, 1], the average of ``images`` over samples.
    """

    images: tf.Tensor
    mean: tf.Tensor


def variables_sha1(variables: Sequence[tf.Variable]) -> str:
    """SHA-1 of the values of ``variables`` in their order: a fingerprint of weights that a stored fit was made for."""
    digest = hashlib.sha1()
    for variable in variables:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


def shape_of(x: tf.Tensor | np.ndarray) -> tuple[Optional[int], ...]:
    return tuple(tf.TensorShape(np.shape(x) if not isinstance(x, tf.Tensor) else x.shape).as_list())


class SequenceModel(tf.Module):
    """What the training loop, reconstruction and evaluation need from a model of (slice, pose) sequences.

    Subclasses (:class:`ConditionalBruno`, the GQN and C-VAE baselines) implement ``log_prob``
    (a lower bound for the baselines), ``sample`` and ``decode_predictive_mean`` with the signatures
    of :class:`ConditionalBruno`, on the same [0, 256) intensity scale.

    Args:
        image_size: H = W of the slices.
        num_poses: N, the length of the one-hot pose.
        config: the ``model`` config section.
        name: the module name (checkpoint paths start with it).

    Attributes:
        display_name: how tables name the model (``BRUNO``, ``GQN``, ``C-VAE``).
        deterministic_label: what :meth:`decode_predictive_mean` gives, in a row label.
        is_baseline: whether evaluation pairs our models against it (GQN, C-VAE) or it is ours (BRUNO).
    Capabilities (what callers ask instead of the kind):
        exact_log_prob: :meth:`log_prob` is the exact log-density (BRUNO) rather than a lower bound.
        supports_mixed_precision: its networks may run in float16/bfloat16 (``train.mixed_precision``).
        has_process: it has a latent process whose gradients ``train.process_grad_schedule`` scales, and whose
            figures training logs; its latents can be encoded (:class:`~bruno.models.encoder.SliceEncoder`).
        uses_subjects: training passes each sequence's training subject to :meth:`log_prob` (``subjects=``).
        conditioned_on_estimate: its flow sees each slice's classical estimate (``estimates=``, SPEC §9.5; BRUNO with
            ``model.estimate.use``); :meth:`log_prob_inputs` makes it.
        :meth:`memory_estimate`: a lower bound of the memory it needs, or None where there is none.
        :meth:`has_test_time_state`: its best checkpoint is completed by a state made once training ends (a population
            process's bank and c: :mod:`bruno.runs.population_state`).
    """

    display_name, deterministic_label, is_baseline = "model", "deterministic image", True
    exact_log_prob = False
    supports_mixed_precision = False
    has_process = False
    uses_subjects = False
    conditioned_on_estimate = False

    def __init__(self, image_size: int, num_poses: int, config: ModelConfig, name: str = "sequence_model") -> None:
        super().__init__(name=name)
        if num_poses < 1:
            raise ValueError(f"num_poses={num_poses}, expected >= 1")
        self.image_size, self.num_poses, self.config = image_size, num_poses, config
        self.num_dims = image_size * image_size

    @classmethod
    def memory_estimate(cls, config: Config, images: int = 0) -> Optional[MemoryEstimate]:
        """Bytes of the weights (``images`` > 0: with their training state and the feature maps of that many
        images at once); None: no estimate (the default)."""
        return None

    @classmethod
    def has_test_time_state(cls, config: Config) -> bool:
        """Whether the model ``config`` builds has a test-time state (none by default)."""
        return False

    @classmethod
    def from_config(cls, config: Config) -> SequenceModel:
        """The model for an experiment: sizes from ``config.data``, architecture from ``config.model``."""
        return cls(config.data.image_size, config.data.num_poses, config.model)

    def build(self) -> None:
        """Create every variable with a dummy pass (weights are then initialised or restored)."""
        size, poses = self.image_size, self.num_poses
        self.log_prob(tf.fill([1, 2, size, size, 1], 128.0), tf.one_hot([[0, 1 % poses]], poses), 1)

    def initialize(self, images: tf.Tensor, poses: tf.Tensor, estimates: Optional[tf.Tensor] = None) -> None:
        """The step-0 pass on the first batch (BRUNO's data-dependent init; nothing to do by default)."""

    def log_prob_inputs(self, images: np.ndarray, poses: np.ndarray, num_context: int,
                        subjects: Optional[np.ndarray] = None) -> dict[str, tf.Tensor]:
        """The further keywords of :meth:`log_prob` for a batch: ``subjects`` (each sequence's train row; None: new
        subjects) where the model :attr:`uses_subjects`; none by default."""
        return {"subjects": tf.constant(subjects)} if self.uses_subjects and subjects is not None else {}

    def set_step(self, step: int) -> None:
        """Tell the model the training step before it is taken (schedules that live in the model)."""

    def summary(self) -> dict[str, float]:
        """Scalars worth logging during training (none by default)."""
        return {}

    def weights_sha1(self) -> str:
        """SHA-1 of every variable in the model's own order (the flow, the process, a population's bank and c): what
        a test-time state or search stored in the run directory was made for."""
        return variables_sha1(self.variables)

    @property
    def process_variables(self) -> tuple[tf.Variable, ...]:
        """The variables training schedules apart (``train.process_grad_schedule``): BRUNO's process; none by default."""
        return ()

    def log_prob(self, images: tf.Tensor, poses: tf.Tensor, num_context: int) -> LogProb:
        raise NotImplementedError

    def sample(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor, num_samples: int,
               seed: int = 0, decode_batch_size: int = 256, progress: bool = False) -> Samples:
        raise NotImplementedError

    def decode_predictive_mean(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor,
                               decode_batch_size: int = 256) -> tf.Tensor:
        raise NotImplementedError

    def conditional_log_prob(self, context_images: tf.Tensor, context_poses: tf.Tensor, target_images: tf.Tensor,
                             target_poses: tf.Tensor) -> tf.Tensor:
        """log p(x_q | contexts) in nats [batch, Q], each target scored alone; only where :attr:`exact_log_prob`."""
        raise NotImplementedError

    def _check_num_context(self, num_context: int, length: Optional[int]) -> None:
        if not isinstance(num_context, (int, np.integer)) or num_context < 0 or (length is not None and num_context >= length):
            raise ValueError(f"num_context={num_context!r}, expected an integer in [0, T) with T={length}")

    # --------------------------------------------------------------------------------- checks
    def _check_images(self, name: str, images: tf.Tensor | np.ndarray) -> tuple[Optional[int], ...]:
        shape = shape_of(images)
        size = self.image_size
        if len(shape) != 5 or tuple(shape[2:]) != (size, size, 1):
            raise ValueError(f"{name}: shape {shape}, expected [batch, num_slices, {size}, {size}, 1]")
        self._check_finite(name, images)
        return shape

    def _check_poses(self, name: str, poses: tf.Tensor | np.ndarray, leading: tuple[Optional[int], ...]) -> None:
        shape = shape_of(poses)
        if len(shape) != 3 or shape[-1] != self.num_poses or (None not in leading and tuple(shape[:2]) != leading):
            raise ValueError(f"{name}: shape {shape}, expected [{leading[0]}, {leading[1]}, {self.num_poses}] (one-hot poses)")
        self._check_finite(name, poses)

    @staticmethod
    def _check_finite(name: str, values: tf.Tensor | np.ndarray) -> None:
        if tf.executing_eagerly() and not np.all(np.isfinite(np.asarray(values))):
            raise ValueError(f"{name}: contains NaN or Inf, expected finite values")

    def _check_query(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor) -> tuple[int, int]:
        shape = self._check_images("context_images", context_images)
        self._check_poses("context_poses", context_poses, shape[:2])
        query_shape = shape_of(query_poses)
        self._check_poses("query_poses", query_poses, (shape[0], query_shape[1] if len(query_shape) == 3 else None))
        if query_shape[0] is None or query_shape[1] is None:
            raise ValueError(f"query_poses: shape {query_shape}, expected a known batch size and number of queries")
        return query_shape[0], query_shape[1]
