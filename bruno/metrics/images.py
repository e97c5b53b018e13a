"""Scores of mean images: per-slice SSIM / CC and per-volume PSNR (SPEC §5.3); numpy only.

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
from skimage.metrics import structural_similarity

__all__ = ["SliceScores", "cross_correlation", "pearson", "psnr", "slice_scores", "ssim"]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 2D slices on the [0, 1] scale (``data_range=1.0``)."""
    return float(structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=1.0))


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis of broadcastable [..., P] arrays; NaN where either row is constant."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    x, y = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    denominator = np.sqrt(np.sum(x * x, -1) * np.sum(y * y, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, np.sum(x * y, -1) / denominator, np.nan)


def cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two slices' pixels; NaN when either slice is constant."""
    return float(pearson(np.ravel(a), np.ravel(b)))


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
