"""The data-dependent init of a latent factor process (SPEC §9.3): PCA of the training latents.

W = c · (the top r principal directions of the whole-volume latents, each scaled by √λ_i), with the
shrinkage c ∈ :data:`FACTOR_SCALES` that gives the lowest validation loss: 105 volumes estimate
directions in N·D dimensions poorly, and the full √λ_i makes the model over-confident (ixi.yaml, val
bits/dim at n_c = 8 / 1: c = 0 2.943 / 3.038, .25 2.936 / 3.028, .75 2.937 / 3.036, and 3.12 / 3.19 with
the variance left to the pose kernel reduced by what the directions explain). With ``reset_kernel`` (a
fresh flow), μ(q) = the mean latent per pose and v_d = the variance the directions leave per dimension
(averaged over poses); without it (a trained flow and process, ``train.init_from``) both are kept.
Directions beyond V − 1 (fewer training volumes than factors) stay 0.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Optional, Protocol

import numpy as np

from bruno.baselines.gaussian import GaussianVolumeModel

__all__ = ["FACTOR_SCALES", "FactorLoadings", "initialize_latent_factors"]

logger = logging.getLogger(__name__)

FACTOR_SCALES = (0.25, 0.5, 1.0)  # shrinkage of the PCA loadings tried


class FactorLoadings(Protocol):
    """What the init sets: a process with r = ``num_factors`` loadings (:class:`~bruno.processes.LatentFactorProcess`,
    which calls this init; named by what it needs so that the two modules do not import each other)."""

    num_factors: int

    def set_from_pca(self, loadings: np.ndarray, mean: Optional[np.ndarray] = None,
                     residual_variance: Optional[np.ndarray] = None) -> None: ...


def initialize_latent_factors(process: FactorLoadings, latents: np.ndarray, val_loss: Callable[[], float],
                              reset_kernel: bool = True) -> dict[str, Any]:
    """Set ``process`` from the train split's latents [V, N, D] (V ≥ 2; module docstring).

    The latents should be dequantised by uniform noise as in training: with x + ½ the dimensions that
    carry the noise are near-constant (measured on ixi.yaml: 10 % of v_d < 0.015 and 21 bits/dim on
    val, against 2.94).

    Returns:
        {"scale": c, "explained": share of the train latents' variance the r directions hold, "val_loss": {c: loss}}.
    """
    pca = GaussianVolumeModel.fit(latents[..., None], rank=process.num_factors)
    total = latents.var(axis=0, ddof=1)  # [N, D]
    directions = np.zeros(total.shape + (process.num_factors,))
    directions[..., :pca.rank] = pca.with_settings(noise_variance=1e-12).loadings.reshape(total.shape + (pca.rank,))
    if pca.rank < process.num_factors:
        logger.warning("%d train volumes give only %d of latent_factors=%d directions; the rest start (and stay) 0",
                       len(latents), pca.rank, process.num_factors)
    residual = np.maximum((total - np.sum(directions ** 2, axis=-1)).mean(axis=0), 1e-4)  # v_d [D]
    if reset_kernel:
        process.set_from_pca(np.zeros_like(directions), pca.mean[..., 0], residual)
    losses = {}
    for scale in FACTOR_SCALES:
        process.set_from_pca(scale * directions)
        losses[scale] = val_loss()
    best = min(losses, key=lambda c: losses[c])
    process.set_from_pca(best * directions)
    explained = float(1.0 - residual.sum() / total.mean(axis=0).sum())
    logger.info("latent factor init: %d directions hold %.1f %% of the train latents' variance; shrinkage %g "
                "(val loss %s)", pca.rank, 100 * explained, best, {c: round(v, 1) for c, v in losses.items()})
    return {"scale": best, "explained": explained, "val_loss": losses}
