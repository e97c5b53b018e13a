"""The classical estimate of a slice, cross-fitted (SPEC §9.5): what BRUNO may be conditioned on.

The estimate e_q of pose q from the acquired slices x_C is the PCA + GP mean of SPEC §9.2 (:class:`GaussianVolumeModel`'s
projection from x_C plus GP interpolation of its residuals at C; at a context pose it is the slice itself, since
the GP reproduces every residual there; with no slices the atlas). A model trained on estimates must see them as
good as they will be on a new patient, so a training subject's estimate comes from a PCA fitted **without it**:
the train subjects are dealt into K folds (:data:`FOLDS`, seeded), fold j's subjects use the PCA of the other
K − 1 folds, and a new patient uses the PCA of every train subject. K folds rather than leave-one-out: one PCA per
subject would hold V models of V × n values each (5 GB for IXI at 32 × 32), K hold K; the price is a PCA from
(K − 1)/K of the subjects in training, which makes the training estimate slightly worse than the test-time one,
never better. numpy only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from bruno.baselines.gaussian import GaussianVolumeModel
from bruno.baselines.kernels import gp_residual

__all__ = ["FOLDS", "ClassicalEstimate", "CrossFittedEstimate"]

FOLDS = 5


class ClassicalEstimate:
    """The PCA + GP mean of every pose from some acquired slices (module docstring), with one PCA.

    Args:
        model: the Gaussian volume model; length, rho: the residual GP's ℓ and ρ.
    """

    def __init__(self, model: GaussianVolumeModel, length: float, rho: float) -> None:
        self.model, self.length, self.rho = model, float(length), float(rho)

    def for_subject(self, subject: Optional[int]) -> ClassicalEstimate:
        """Itself, whoever the subject (one PCA: a new patient's), as :meth:`CrossFittedEstimate.for_subject` asks."""
        return self

    def __call__(self, images: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
        """e [N, H, W]: the estimate at every pose from ``images[contexts]`` (others unread; none: the atlas)."""
        contexts = sorted(set(int(c) for c in contexts))
        if not contexts:
            return self.model.mean.copy()
        projection = self.model.condition(images, contexts, variance=False).projection
        return gp_residual(projection, np.asarray(images, np.float64)[contexts], contexts, self.length, self.rho)


class CrossFittedEstimate:
    """PCA + GP estimates of whole volumes, cross-fitted over the train subjects.

    Args:
        volumes: the train volumes [V, N, H, W] (0..255), in table order; V >= 2 · ``folds``.
        rank, noise_variance: the PCA's r and σ² (as chosen for the mean image); length, rho: the GP's ℓ and ρ.
        folds: K; seed: how the subjects are dealt into folds.
    """

    def __init__(self, volumes: np.ndarray, rank: int, noise_variance: float, length: float, rho: float,
                 folds: int = FOLDS, seed: int = 0) -> None:
        volumes = np.asarray(volumes, np.float64)
        if folds < 2 or len(volumes) < 2 * folds:
            raise ValueError(f"{len(volumes)} train volumes in {folds} folds: expected folds >= 2 and >= 2 volumes per fold")
        self.fold_of = np.random.default_rng(seed).permutation(np.arange(len(volumes)) % folds)  # subject → its fold
        self.full = ClassicalEstimate(GaussianVolumeModel.fit(volumes, rank, noise_variance), length, rho)
        self.held_out = [ClassicalEstimate(GaussianVolumeModel.fit(volumes[self.fold_of != j], rank, noise_variance),
                                           length, rho) for j in range(folds)]

    def for_subject(self, subject: Optional[int]) -> ClassicalEstimate:
        """The estimate whose PCA did not see train ``subject`` (its index in ``volumes``); None: a new patient's."""
        return self.full if subject is None else self.held_out[int(self.fold_of[subject])]

    def estimate(self, images: np.ndarray, contexts: Sequence[int], subject: Optional[int] = None) -> np.ndarray:
        """e [N, H, W] from ``images[contexts]`` with :meth:`for_subject`'s PCA."""
        return self.for_subject(subject)(images, contexts)
