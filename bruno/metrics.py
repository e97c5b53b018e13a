"""Scores: the test NLL of sequences (SPEC §4) and per-slice SSIM / CC of reconstructions (SPEC §5.3).

SSIM is scikit-image's ``structural_similarity`` on 2D slices scaled to [0, 1] with
``data_range=1.0`` (its default 7×7 window; Wang et al., 2004). CC is the Pearson correlation of
pixel intensities, Σ(a−ā)(b−b̄)/√(Σ(a−ā)²·Σ(b−b̄)²); it is undefined (NaN) where either slice is
constant, and such slices are left out of means, never counted as 0. PSNR is per volume on the 0..255
scale, 10·log10(255² / MSE) with the MSE over all its voxels (:func:`psnr`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from skimage.metrics import structural_similarity
from tqdm import tqdm

from bruno.data.sampler import SequenceSampler
from bruno.data.table import SliceTable
from bruno.model import SequenceModel, bits_per_dim

__all__ = ["NLL", "SliceScores", "cross_correlation", "psnr", "sequence_nll", "slice_scores", "ssim"]


class NLL(NamedTuple):
    """Mean negative log-likelihood of target slices: nats per image and bits per dimension."""

    nats_per_image: float
    bits_per_dim: float
    num_sequences: int


def sequence_nll(model: SequenceModel, table: SliceTable, split: str, seq_len: int, num_context: int,
                 num_sequences: int, batch_size: int = 8, seed: int = 317070, progress: bool = True) -> NLL:
    """−mean log p of the targets of random sequences of one split (same n_c/T semantics as training).

    Args:
        model: a trained model.
        table: the slice table.
        split: ``train``, ``val`` or ``test``.
        seq_len: T; num_context: n_c (0 <= n_c < T).
        num_sequences: how many random sequences (rounded up to whole batches).
        batch_size: sequences per forward pass.
        seed: seed of the sequences and their dequantisation noise (upstream test seed 317070).
    """
    sampler = SequenceSampler(table, split, batch_size, seq_len, seed)
    batches = math.ceil(num_sequences / batch_size)
    score = tf.function(lambda images, poses: model.log_prob(images, poses, num_context).log_prob)
    values = [score(tf.constant(b["images"]), tf.constant(b["poses"])).numpy()
              for b in tqdm(sampler.batches(batches), total=batches, desc=f"NLL {split}", disable=not progress)]
    nats = -float(np.mean(values))
    return NLL(nats, float(bits_per_dim(nats, model.num_dims)), batches * batch_size)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 2D slices on the [0, 1] scale (``data_range=1.0``)."""
    return float(structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=1.0))


def cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two slices' pixels; NaN when either slice is constant."""
    x = np.asarray(a, np.float64).ravel() - np.mean(a)
    y = np.asarray(b, np.float64).ravel() - np.mean(b)
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / denominator) if denominator > 0 else math.nan


class SliceScores(NamedTuple):
    """Per-slice scores of a volume: ``ssim``, ``cc`` (NaN where undefined) and the mean squared error
    ``mse`` on the 0..255 scale, each float [N]."""

    ssim: np.ndarray
    cc: np.ndarray
    mse: np.ndarray


def psnr(mse: np.ndarray) -> float:
    """PSNR in dB of a volume from its per-slice MSEs (0..255 scale): 10·log10(255² / mean MSE); inf if exact."""
    error = float(np.mean(mse))
    return 10.0 * math.log10(255.0 ** 2 / error) if error > 0 else math.inf


def slice_scores(prediction: np.ndarray, truth: np.ndarray) -> SliceScores:
    """Score every slice of [N, H, W] volumes given on the 0..255 intensity scale.

    Raises:
        ValueError: the shapes differ.
    """
    if np.shape(prediction) != np.shape(truth) or np.ndim(truth) != 3:
        raise ValueError(f"prediction {np.shape(prediction)} and truth {np.shape(truth)}: expected equal [N, H, W] shapes")
    p, t = np.asarray(prediction, np.float64) / 255.0, np.asarray(truth, np.float64) / 255.0
    return SliceScores(np.array([ssim(a, b) for a, b in zip(p, t)]), np.array([cross_correlation(a, b) for a, b in zip(p, t)]),
                       np.mean((p - t) ** 2, axis=(1, 2)) * 255.0 ** 2)
