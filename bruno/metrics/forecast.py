"""A reconstruction scored as a forecast of every voxel it did not see (SPEC §10); numpy (and scoringrules) only.

Where: the voxels of the non-acquired slices inside the head, truth y > 10 on 0..255 (:func:`head_mask`).

* **Calibration by the PIT.** With S samples x_i, the truth's randomised rank
  u = (#{x_i < y} + U·(1 + #{x_i = y})) / (S + 1), U ~ U(0, 1), is uniform on (0, 1) for a calibrated forecast
  whatever S; for a Gaussian forecast u = Φ((y − m)/s). The central p-interval covers y when |u − ½| ≤ p/2.
  For samples we report the expectation over U of that indicator (u is uniform on [#{x_i < y}, #{x_i ≤ y} + 1]/(S + 1),
  so the expectation is the share of that segment inside [½ − p/2, ½ + p/2]): the same estimator without the
  noise of U, and the same for every run. For a forecast that is not calibrated the share depends on S (the rank
  smooths the PIT's histogram over ~1/S): compare coverages at one S (IXI, val, k = 5: a 90 % cover of .894 from 4
  samples was .870 from 20).
* **CRPS** (grey levels, lower is better): the unbiased ("fair") ensemble form
  (1/S)Σ|x_i − y| − 1/(2S(S−1)) Σ_{i≠j}|x_i − x_j| (scoringrules' ``pwm`` estimator, equal to it), or the Gaussian
  closed form s·[z(2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − m)/s.

The truth is an integer grey level and the forecasts are continuous (BRUNO's samples are x̃ − ½ of dequantised
x̃ = x + u); for spreads of several grey levels the difference is negligible.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scoringrules
from scipy.stats import norm

__all__ = ["HEAD_THRESHOLD", "LEVELS", "crps_gaussian", "crps_samples", "head_mask", "pit_coverage_gaussian",
           "pit_coverage_samples"]

HEAD_THRESHOLD = 10.0  # grey levels on 0..255: a voxel is inside the head when the truth exceeds it
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # nominal central-interval coverages of the reliability curve


def head_mask(truth: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
    """bool [N, H, W]: voxels of the slices not in ``contexts`` whose truth exceeds :data:`HEAD_THRESHOLD`."""
    mask = np.asarray(truth) > HEAD_THRESHOLD
    mask[list(contexts)] = False
    return mask


def _check(forecast_shape: tuple[int, ...], truth: np.ndarray, levels: Sequence[float] = (0.5,)) -> None:
    if forecast_shape != np.shape(truth):
        raise ValueError(f"forecast {forecast_shape} and truth {np.shape(truth)}: expected the same shape")
    if not all(0.0 < p < 1.0 for p in levels):
        raise ValueError(f"levels {tuple(levels)}: expected nominal coverages in (0, 1)")


def pit_coverage_samples(samples: np.ndarray, truth: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """float [L]: the share of ``truth`` values [M] inside the central p-interval of their ``samples`` [S, M], per p,
    from the randomised rank (expected over its tie-breaking U)."""
    samples, truth = np.asarray(samples, np.float64), np.asarray(truth, np.float64)
    _check(samples.shape[1:], truth, levels)
    if len(samples) < 1 or truth.size == 0:
        raise ValueError(f"samples {samples.shape}: expected at least one sample of at least one value")
    count = len(samples) + 1
    low = np.sum(samples < truth, axis=0) / count
    high = (np.sum(samples <= truth, axis=0) + 1) / count
    covered = [np.clip(np.minimum(high, 0.5 + p / 2) - np.maximum(low, 0.5 - p / 2), 0.0, None) / (high - low) for p in levels]
    return np.array([float(np.mean(c)) for c in covered])


def pit_coverage_gaussian(mean: np.ndarray, std: np.ndarray, truth: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """float [L]: the share of ``truth`` values inside the central p-interval of N(mean, std²), per p (std > 0)."""
    mean, std, truth = (np.asarray(a, np.float64) for a in (mean, std, truth))
    _check(mean.shape, truth, levels)
    if std.shape != truth.shape or not np.all(std > 0):
        raise ValueError(f"std {std.shape}: expected values > 0 of the truth's shape {truth.shape}")
    distance = np.abs(norm.cdf((truth - mean) / std) - 0.5)
    return np.array([float(np.mean(distance <= p / 2)) for p in levels])


def crps_samples(samples: np.ndarray, truth: np.ndarray) -> float:
    """Mean CRPS (the fair ensemble form) of ``samples`` [S ≥ 2, M] against ``truth`` [M]."""
    samples, truth = np.asarray(samples, np.float64), np.asarray(truth, np.float64)
    _check(samples.shape[1:], truth)
    if len(samples) < 2:
        raise ValueError(f"samples {samples.shape}: the fair CRPS needs at least 2 samples")
    return float(np.mean(scoringrules.crps_ensemble(truth, samples, m_axis=0, estimator="pwm")))


def crps_gaussian(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> float:
    """Mean CRPS of N(mean, std²) forecasts against ``truth`` (closed form)."""
    mean, std, truth = (np.asarray(a, np.float64) for a in (mean, std, truth))
    _check(mean.shape, truth)
    if std.shape != truth.shape or not np.all(std > 0):
        raise ValueError(f"std {std.shape}: expected values > 0 of the truth's shape {truth.shape}")
    return float(np.mean(scoringrules.crps_normal(truth, mean, std)))
