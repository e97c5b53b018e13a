"""A trained model's reconstruction (SPEC §3 "dense-volume generation", §5.3): sample every pose.

Given the pose-ordered slices of one subject (preprocessed exactly as the training data) and the
k acquired poses, the model is conditioned on those k slices (their pose is their index), every pose
0..N−1 is queried, S independent samples are drawn per pose, and the mean and per-voxel standard
deviation are taken over samples. k = 0 samples the prior: the learned population "mental map" (atlas).

The decoded predictive mean (one deterministic image per pose) is returned beside the mean of
samples. With ``keep_contexts`` (default: the model's ``model.keep_contexts``), the acquired slices
are returned unchanged at their own poses (zero spread there).

Intensities: the model samples dequantised pixels x̃ = x + u on [0, 256); reconstructions are
reported on the 0..255 scale of the stored slices as clip(x̃ − ½, 0, 255) (the mean of u is ½).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import tensorflow as tf

from bruno.errors import ConfigError
from bruno.memory import check_fits, sample_bytes
from bruno.models import SequenceModel
from bruno.reconstruction.contexts import check_contexts
from bruno.reconstruction.method import Method, Result, Source, dequantised
from bruno.units import bits_per_dim

__all__ = ["ModelSampling", "decoded_mean", "draw_samples", "sample_volume"]


def sample_volume(model: SequenceModel, images: np.ndarray, contexts: Sequence[int], num_samples: int,
                  seed: int = 0, progress: bool = True, decode_batch_size: int = 512,
                  keep_contexts: Optional[bool] = None) -> Result:
    """Condition on ``images[contexts]`` and sample every pose.

    Args:
        model: a trained model.
        images: uint8 or float [N, H, W], the subject's slices (only the contexts are read).
        contexts: context poses (empty: the prior).
        num_samples: S >= 1 samples per pose.
        seed: seed of the context dequantisation noise and the latent draws.
        progress: progress bar over the decoding.
        decode_batch_size: images decoded at once.
        keep_contexts: return ``images[contexts]`` unchanged at the context poses (None: the model's
            ``model.keep_contexts`` setting).

    Raises:
        ConfigError: ``num_samples`` < 1, or contexts out of range / repeated.
    """
    samples = draw_samples(model, images, contexts, num_samples, seed, progress, decode_batch_size, keep_contexts)
    contexts = check_contexts(contexts, model.num_poses)
    decoded = decoded_mean(model, images, contexts, seed, decode_batch_size, keep_contexts)
    return Result(samples.mean(0), samples.std(0), samples, list(contexts), decoded)


def draw_samples(model: SequenceModel, images: np.ndarray, contexts: Sequence[int], num_samples: int,
                 seed: int = 0, progress: bool = True, decode_batch_size: int = 512,
                 keep_contexts: Optional[bool] = None) -> np.ndarray:
    """float [S, N, H, W]: the samples of :func:`sample_volume` alone (same arguments, same numbers; no decoded mean).

    Raises:
        ConfigError: as :func:`sample_volume`.
    """
    if num_samples < 1:
        raise ConfigError(f"num_samples={num_samples}: expected >= 1")
    check_fits(sample_bytes(num_samples, model.num_poses, model.num_dims, model.num_poses), f"--samples {num_samples}",
               f"sampling every pose {num_samples} times")
    contexts, arguments = _conditioning(model, images, contexts, seed)
    result = model.sample(*arguments, num_samples, seed=seed, decode_batch_size=decode_batch_size, progress=progress)
    samples = np.clip(result.images.numpy()[:, 0, ..., 0] - 0.5, 0.0, 255.0)  # [S, N, H, W]
    if model.config.keep_contexts if keep_contexts is None else keep_contexts:
        samples[:, contexts] = np.asarray(images, np.float32)[contexts]
    return samples


def decoded_mean(model: SequenceModel, images: np.ndarray, contexts: Sequence[int], seed: int = 0,
                 decode_batch_size: int = 512, keep_contexts: Optional[bool] = None) -> np.ndarray:
    """float [N, H, W]: the predictive mean latent of every pose decoded with its pose (one deterministic image per
    pose, no samples), conditioned and with the acquired slices kept as in :func:`sample_volume`."""
    contexts, arguments = _conditioning(model, images, contexts, seed)
    decoded = np.clip(model.decode_predictive_mean(*arguments, decode_batch_size).numpy()[0, ..., 0] - 0.5, 0.0, 255.0)
    if model.config.keep_contexts if keep_contexts is None else keep_contexts:
        decoded[contexts] = np.asarray(images, np.float32)[contexts]
    return decoded


def _conditioning(model: SequenceModel, images: np.ndarray, contexts: Sequence[int], seed: int) -> tuple[list[int], tuple]:
    """The checked contexts and the model's (context images, context poses, every pose) for one subject, the
    context pixels dequantised by uniform noise from ``seed``."""
    num_poses, size = model.num_poses, model.image_size
    contexts = check_contexts(contexts, num_poses)
    noise = np.random.default_rng(seed).random((len(contexts), size, size), dtype=np.float32)
    context_images = np.asarray(images, np.float32)[contexts] + noise
    one_hot = np.eye(num_poses, dtype=np.float32)
    return contexts, (tf.constant(context_images[None, ..., None]), tf.constant(one_hot[contexts][None]), tf.constant(one_hot[None]))


class ModelSampling(Method):
    """A trained run's model (BRUNO, or the paper's GQN / C-VAE baselines), sampled by :func:`sample_volume`.

    Args:
        model: the trained model; name: its key in tables (by default its kind: ``bruno``, ``gqn``, ``cvae``);
        keep_contexts: as :func:`sample_volume`.
    """

    needs_run, needs_table, has_distribution, sampled = True, False, True, True

    def __init__(self, model: SequenceModel, name: Optional[str] = None, keep_contexts: Optional[bool] = None) -> None:
        self.model = model
        self.key = name = name or model.config.kind
        self.keep_contexts = model.config.keep_contexts if keep_contexts is None else keep_contexts
        self.is_baseline = model.is_baseline
        self.short = model.display_name if name == model.config.kind else f"{model.display_name} ({name})"
        self.label = self.short
        self.deterministic_label = model.deterministic_label

    @classmethod
    def build(cls, source: Source) -> ModelSampling:
        assert source.model is not None  # the registry checks needs_run
        return cls(source.model, source.name, source.keep_contexts)

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        return sample_volume(self.model, images, contexts, num_samples, seed, progress, keep_contexts=self.keep_contexts)

    def conditional_nll(self, images: np.ndarray, contexts: Sequence[int], seed: int = 0) -> Optional[np.ndarray]:
        """Each other pose q scored as the one target of the sequence (acquired slices, q): the flow's log-det plus the
        log-density of the predictive the samples come from (None for a model whose ``log_prob`` is only a bound: the
        GQN, the C-VAE)."""
        if not self.model.exact_log_prob:
            return None
        contexts = check_contexts(contexts, self.model.num_poses)
        noisy = dequantised(images, seed).astype(np.float32)
        targets = [q for q in range(self.model.num_poses) if q not in contexts]
        if not targets:
            return np.zeros(0)
        one_hot = np.eye(self.model.num_poses, dtype=np.float32)
        nats = [self.model.conditional_log_prob(tf.constant(noisy[contexts][None, ..., None]), tf.constant(one_hot[contexts][None]),
                                                tf.constant(noisy[chunk][None, ..., None]), tf.constant(one_hot[chunk][None]))[0]
                for chunk in np.array_split(targets, -(-len(targets) // 128))]  # at most 128 targets at once
        return -bits_per_dim(np.concatenate([n.numpy() for n in nats]).astype(np.float64), self.model.num_dims)
