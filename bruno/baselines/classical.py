"""Classical reconstructions from the acquired slices, behind one interface (SPEC §9).

Every method maps (a subject's pose-ordered slices [N, H, W] on the 0..255 scale, the acquired poses)
to an :class:`Estimate`: the reconstructed volume, and a per-voxel standard deviation where the method
has one. Only ``images[contexts]`` is read, and the acquired slices come back unchanged (except from the atlas).

* :class:`LinearInterpolation` (``linear``): between the two nearest acquired slices, constant beyond;
* :class:`Atlas` (``population_mean``): the per-pose mean of the training volumes; it ignores the slices
  (the acquired ones are not put back either, so its row is the same at every k, as in the paper);
* :class:`GaussianConditional` (``pca``): the Gaussian volume model's conditional mean and spread
  (:mod:`bruno.baselines.gaussian`), with samples;
* :class:`ResidualInterpolation` (``atlas_gp``, ``pca_gp``): a prior volume P (the atlas, or the
  Gaussian model's projection) plus kernel interpolation of the residuals at the acquired poses (§9.2):
  x̂_q = P_q + Σ_c w_qc (x_c − P_c), w = K_qC K_CC⁻¹, K(q, q') = ρ + (1 − ρ)·κ(|q − q'|/ℓ), κ Matérn-3/2.
  With distinct poses K_CC is positive definite and w reproduces each acquired slice at its own pose.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np

from bruno.baselines.gaussian import GaussianVolumeModel
from bruno.baselines.simple import linear_interpolation

__all__ = ["Atlas", "ClassicalMethod", "Estimate", "GaussianConditional", "LinearInterpolation", "ResidualInterpolation",
           "matern32", "residual_weights"]


class Estimate(NamedTuple):
    """A classical reconstruction: ``mean`` float64 [N, H, W], ``std`` the same shape or None."""

    mean: np.ndarray
    std: Optional[np.ndarray]


class ClassicalMethod(ABC):
    """A reconstruction that needs no training beyond the statistics of the training volumes.

    Attributes:
        key: the method's key in tables and on the command line (``--method``).
        label: its row label (with its settings); short: a few words for it.
        has_uncertainty: whether :meth:`estimate` returns a standard deviation.
        min_contexts: the fewest acquired slices it accepts.
    """

    key: str
    label: str
    short: str
    has_uncertainty = False
    min_contexts = 0

    @abstractmethod
    def estimate(self, images: np.ndarray, contexts: Sequence[int], with_std: bool = True) -> Estimate:
        """Reconstruct every pose from ``images[contexts]`` (``with_std`` False: skip the spread)."""

    def sample(self, images: np.ndarray, contexts: Sequence[int], num_samples: int, seed: int = 0) -> Optional[np.ndarray]:
        """[S, N, H, W] draws from the method's conditional law, or None where it has none."""
        return None


class LinearInterpolation(ClassicalMethod):
    key, label, short, min_contexts = "linear", "linear interpolation", "linear", 1

    def estimate(self, images: np.ndarray, contexts: Sequence[int], with_std: bool = True) -> Estimate:
        return Estimate(linear_interpolation(images, contexts), None)


class Atlas(ClassicalMethod):
    """The population-mean volume, whatever was acquired."""

    key, label, short = "population_mean", "population mean (atlas)", "atlas"

    def __init__(self, mean: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float64)

    def estimate(self, images: np.ndarray, contexts: Sequence[int], with_std: bool = True) -> Estimate:
        return Estimate(self.mean, None)


class GaussianConditional(ClassicalMethod):
    """The conditional mean of the Gaussian volume model, with its per-voxel standard deviation."""

    key, short, has_uncertainty = "pca", "PCA", True

    def __init__(self, model: GaussianVolumeModel) -> None:
        self.model = model
        self.label = f"Gaussian volume model (PCA, r = {model.rank}, σ² = {model.noise_variance:g})"

    def estimate(self, images: np.ndarray, contexts: Sequence[int], with_std: bool = True) -> Estimate:
        posterior = self.model.condition(images, contexts, variance=with_std)
        return Estimate(posterior.mean, np.sqrt(posterior.variance) if with_std else None)

    def sample(self, images: np.ndarray, contexts: Sequence[int], num_samples: int, seed: int = 0) -> np.ndarray:
        return self.model.sample(images, contexts, num_samples, seed)


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

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return rho + (1.0 - rho) * matern32((a[:, None] - b[None, :]) / length)

    return np.linalg.solve(kernel(known, known), kernel(known, poses)).T


class ResidualInterpolation(ClassicalMethod):
    """A prior volume plus GP interpolation of its residuals at the acquired poses (module docstring).

    Args:
        model: the Gaussian volume model (its mean is the atlas; its projection the ``pca`` prior).
        prior: ``atlas`` or ``pca``.
        length: ℓ in poses; rho: ρ, the pose-independent part of the kernel.
    """

    def __init__(self, model: GaussianVolumeModel, prior: str, length: float, rho: float) -> None:
        if prior not in ("atlas", "pca"):
            raise ValueError(f"prior={prior!r}: expected 'atlas' or 'pca'")
        self.model, self.prior, self.length, self.rho = model, prior, float(length), float(rho)
        self.key, self.short = f"{prior}_gp", f"{'atlas' if prior == 'atlas' else 'PCA'} + GP"
        name = "atlas" if prior == "atlas" else "Gaussian volume model"
        self.label = f"{name} + GP residual (ℓ = {length:g}, ρ = {rho:g})"

    def estimate(self, images: np.ndarray, contexts: Sequence[int], with_std: bool = True) -> Estimate:
        contexts = sorted(set(int(c) for c in contexts))
        prior = self.model.mean if self.prior == "atlas" else self.model.condition(images, contexts, variance=False).projection
        if not contexts:
            return Estimate(prior, None)
        residual = np.asarray(images, np.float64)[contexts] - prior[contexts]
        weights = residual_weights(len(prior), contexts, self.length, self.rho)
        return Estimate(_put_back(prior + np.tensordot(weights, residual, axes=1), images, contexts), None)


def _put_back(volume: np.ndarray, images: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
    out = np.array(volume, np.float64)
    contexts = list(contexts)
    out[contexts] = np.asarray(images, np.float64)[contexts]
    return out
