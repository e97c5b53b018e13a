"""Kernel interpolation of residuals along the pose (SPEC §9.2), for image volumes and latent volumes alike.

A prior volume P (the atlas, a Gaussian model's projection, a latent model's projection) is corrected
at every pose q by the residuals it leaves at the acquired poses C:

    x̂_q = P_q + Σ_c w_qc (x_c − P_c),   w = K_qC K_CC⁻¹,   K(q, q') = ρ + (1 − ρ)·κ(|q − q'|/ℓ),

κ Matérn-3/2. With distinct poses K_CC is positive definite and w reproduces each acquired value at its
own pose. numpy only: the pose-kernel process computes its kernels in TensorFlow with TFP's
``psd_kernels`` (:mod:`bruno.processes.pose_kernel`); this module must not import TensorFlow.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["gp_residual", "matern32", "pose_kernel", "residual_weights"]


def matern32(distance: np.ndarray) -> np.ndarray:
    """κ(r) = (1 + √3 r)·exp(−√3 r), r ≥ 0."""
    scaled = np.sqrt(3.0) * np.abs(distance)
    return (1.0 + scaled) * np.exp(-scaled)


def residual_weights(num_poses: int, contexts: Sequence[int], length: float, rho: float) -> np.ndarray:
    """w = K_qC K_CC⁻¹ for every pose q = 0..N−1: float64 [N, k] (no nugget: row c is the unit vector of context c).

    Raises:
        ValueError: ``length`` ≤ 0, ``rho`` outside [0, 1), or repeated contexts.
    """
    if not length > 0 or not 0.0 <= rho < 1.0:
        raise ValueError(f"length={length}, rho={rho}: expected length > 0 and 0 <= rho < 1")
    known = np.asarray(list(contexts), np.float64)
    if len(set(known.tolist())) != len(known):
        raise ValueError(f"contexts {list(contexts)}: repeated pose")
    poses = np.arange(num_poses, dtype=np.float64)
    return np.linalg.solve(pose_kernel(known, known, length, rho), pose_kernel(known, poses, length, rho)).T


def pose_kernel(a: np.ndarray, b: np.ndarray, length: float, rho: float) -> np.ndarray:
    """K(a_i, b_j) = ρ + (1 − ρ)·κ(|a_i − b_j|/ℓ) for poses ``a`` [m] and ``b`` [n]: float64 [m, n]."""
    return rho + (1.0 - rho) * matern32((np.asarray(a, np.float64)[:, None] - np.asarray(b, np.float64)[None, :]) / length)


def gp_residual(prior: np.ndarray, observed: np.ndarray, contexts: Sequence[int], length: float, rho: float) -> np.ndarray:
    """P + w·(observed − P_C) for a prior [N, ...] and the observed values [k, ...] at the sorted, distinct ``contexts``
    (none: the prior itself)."""
    contexts = list(contexts)
    if not contexts:
        return prior
    weights = residual_weights(len(prior), contexts, length, rho)
    return prior + np.tensordot(weights, np.asarray(observed, np.float64) - prior[contexts], axes=1)
