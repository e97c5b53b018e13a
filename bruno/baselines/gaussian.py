"""A Gaussian model of whole volumes: probabilistic PCA conditioned on the acquired slices (SPEC §9.1).

#### Mathematical details
A volume is a vector x ∈ R^n, n = N·H·W, on the 0..255 scale of the slice table. From the V training
volumes X [V, n]: μ = the column mean, the eigen-decomposition of the Gram matrix (X−μ)(X−μ)ᵀ gives
the principal directions v_i and variances λ_i = s_i²/(V−1). Keeping r ≤ V−1 of them and an isotropic
noise σ², the model is

    x ~ N(μ, C),   C = W Wᵀ + σ² I,   W = [v_1 … v_r] · diag(√max(λ_i − σ², 0))   [n, r].

Given the voxels O of the acquired slices, with M = W_Oᵀ W_O + σ² I_r (r × r),

    E[x | x_O]      = μ + W M⁻¹ W_Oᵀ (x_O − μ_O)              (on every voxel: the "projection" P)
    Var[x_u | x_O]  = σ² + σ² Σ_j (W M⁻¹)_uj W_uj               (per voxel u outside O)

since C_UO C_OO⁻¹ = W_U M⁻¹ W_Oᵀ and I − W_Oᵀ C_OO⁻¹ W_O = σ² M⁻¹. No n × n matrix is ever formed.
Each non-acquired slice q on its own (conditional NLL, SPEC §10): x_q | x_O ~ N(μ_q + W_q ẑ, σ²(I + A_q A_qᵀ)),
A_q = W_q L⁻ᵀ with M = L Lᵀ; with G_q = I_r + A_qᵀ A_q, the determinant lemma gives log|Cov| = H·W log σ² + log|G_q|
and Woodbury the quadratic form (dᵀd − dᵀA_q G_q⁻¹ A_qᵀ d)/σ² (never an H·W × H·W matrix).
Samples: x_U = μ_U + W_U ẑ + σ ε with ẑ ~ N(M⁻¹ W_Oᵀ (x_O − μ_O), σ² M⁻¹), ε ~ N(0, I). With no
slices the mean is μ (the atlas) and the variance the model's prior variance. The acquired slices
themselves are returned unchanged (their conditional variance is 0).

Memory: fitting holds the training volumes (V × n float64, 77 MB for IXI at 32×32, 0.4 GB at 64×64 with
N = 120) and the r × n components; nothing larger.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

__all__ = ["GaussianVolumeModel", "Posterior"]


class Posterior(NamedTuple):
    """The conditional law of one volume: ``mean`` and ``variance`` float64 [N, H, W] (variance None where
    not asked for), and the PCA ``projection`` P (the conditional mean before the acquired slices are put back)."""

    mean: np.ndarray
    variance: Optional[np.ndarray]
    projection: np.ndarray


class GaussianVolumeModel:
    """Probabilistic PCA of whole volumes; see the module docstring for the maths.

    Build with :meth:`fit`; :meth:`with_settings` gives the same fit with another rank r or noise σ²
    (the decomposition is shared, so a hyper-parameter search costs one fit).

    Args:
        mean: μ, [N, H, W].
        directions: the principal directions, [R, n] with orthonormal rows (R ≥ rank).
        variances: their variances λ, [R], descending.
        rank: r, how many directions to use (1..R).
        noise_variance: σ² > 0 (grey levels²).
    """

    def __init__(self, mean: np.ndarray, directions: np.ndarray, variances: np.ndarray, rank: int, noise_variance: float) -> None:
        if not 1 <= rank <= len(variances):
            raise ValueError(f"rank={rank}: expected 1 <= rank <= {len(variances)} (the training volumes give no more)")
        if not noise_variance > 0:
            raise ValueError(f"noise_variance={noise_variance}: expected > 0")
        self.mean, self.rank, self.noise_variance = np.asarray(mean, np.float64), int(rank), float(noise_variance)
        self._directions, self._variances = directions, variances
        scales = np.sqrt(np.maximum(variances[:rank] - noise_variance, 0.0))
        self.loadings = (directions[:rank] * scales[:, None]).T  # W [n, r]
        self._pose_grams: Optional[np.ndarray] = None  # W_pᵀW_p of each pose p [N, r, r], made on first use

    @classmethod
    def fit(cls, volumes: np.ndarray, rank: Optional[int] = None, noise_variance: float = 1000.0) -> GaussianVolumeModel:
        """Fit to training volumes [V, N, H, W] (V ≥ 2; ``rank`` None: all V − 1 directions).

        Raises:
            ValueError: fewer than two volumes, or a bad rank / noise.
        """
        volumes = np.asarray(volumes, np.float64)
        count = len(volumes)
        if count < 2:
            raise ValueError(f"{count} training volume(s): a Gaussian volume model needs at least 2")
        mean = volumes.mean(axis=0)
        centred = volumes.reshape(count, -1) - mean.reshape(1, -1)
        eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)  # Gram matrix [V, V], ascending
        order = np.argsort(eigenvalues)[::-1][: count - 1]
        singular = np.sqrt(np.maximum(eigenvalues[order], 0.0))
        keep = singular > singular[0] * 1e-10
        directions = (vectors[:, order[keep]].T @ centred) / singular[keep, None]  # [R, n], orthonormal rows
        variances = singular[keep] ** 2 / (count - 1)
        return cls(mean, directions, variances, len(variances) if rank is None else min(rank, len(variances)), noise_variance)

    def with_settings(self, rank: Optional[int] = None, noise_variance: Optional[float] = None) -> GaussianVolumeModel:
        """The same decomposition with another rank (capped at the available directions) or noise σ²."""
        rank = self.rank if rank is None else min(int(rank), len(self._variances))
        return GaussianVolumeModel(self.mean, self._directions, self._variances, rank,
                                   self.noise_variance if noise_variance is None else noise_variance)

    @property
    def directions(self) -> np.ndarray:
        """The principal directions [R, n] (orthonormal rows), all R the fit found."""
        return self._directions

    @property
    def variances(self) -> np.ndarray:
        """Their variances λ [R], descending."""
        return self._variances

    @property
    def max_rank(self) -> int:
        return len(self._variances)

    def _solve(self, images: np.ndarray, contexts: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(M's Cholesky factor L, the code mean ẑ = M⁻¹W_Oᵀ(x_O − μ_O), the loadings [N, H·W, r])."""
        shape = self.mean.shape
        loadings = self.loadings.reshape(shape[0], shape[1] * shape[2], self.rank)
        contexts = list(contexts)
        if self._pose_grams is None:  # W_OᵀW_O is the sum of its poses' blocks: O(k·r²) a call, not O(k·H·W·r²)
            self._pose_grams = np.einsum("npr,nps->nrs", loadings, loadings)
        residual = (np.asarray(images, np.float64)[contexts] - self.mean[contexts]).reshape(len(contexts), loadings.shape[1])
        chol = np.linalg.cholesky(self._pose_grams[contexts].sum(axis=0) + self.noise_variance * np.eye(self.rank))
        code = cho_solve((chol, True), np.einsum("kpr,kp->r", loadings[contexts], residual))
        return chol, code, loadings

    def condition(self, images: np.ndarray, contexts: Sequence[int], variance: bool = True) -> Posterior:
        """The conditional mean and per-voxel variance given ``images[contexts]`` (images [N, H, W]; others unread).

        With ``variance`` False the variance is not computed (None): the mean alone costs O(k·H·W·r + n·r).
        """
        contexts = sorted(set(int(c) for c in contexts))
        chol, code, loadings = self._solve(images, contexts)
        flat = loadings.reshape(-1, self.rank)
        projection = self.mean + (flat @ code).reshape(self.mean.shape)
        mean = projection.copy()
        mean[contexts] = np.asarray(images, np.float64)[contexts]
        if not variance:
            return Posterior(mean, None, projection)
        # diag(W M⁻¹ Wᵀ) = the squared column norms of L⁻¹ Wᵀ, with M = L Lᵀ.
        whitened = solve_triangular(chol, flat.T, lower=True)
        spread = (self.noise_variance * (1.0 + np.sum(whitened ** 2, axis=0))).reshape(self.mean.shape)
        spread[contexts] = 0.0
        return Posterior(mean, spread, projection)

    def slice_log_density(self, images: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
        """float64 [N − k]: log p(images[q] | images[contexts]) in nats for each other pose q, in pose order, each
        slice under its own conditional (module docstring); ``images`` float [N, H, W], e.g. dequantised."""
        contexts = sorted(set(int(c) for c in contexts))
        chol, code, loadings = self._solve(images, contexts)
        images = np.asarray(images, np.float64).reshape(loadings.shape[:2])
        mean = self.mean.reshape(loadings.shape[:2]) + loadings @ code
        dims, variance = loadings.shape[1], self.noise_variance
        result = []
        for q in (q for q in range(len(images)) if q not in contexts):
            spread = solve_triangular(chol, loadings[q].T, lower=True)  # A_qᵀ [r, H·W]
            gram_chol = np.linalg.cholesky(np.eye(self.rank) + spread @ spread.T)  # G_q = C Cᵀ
            residual = images[q] - mean[q]
            projected = solve_triangular(gram_chol, spread @ residual, lower=True)  # C⁻¹ A_qᵀ d
            quadratic = (residual @ residual - projected @ projected) / variance
            log_det = dims * np.log(variance) + 2.0 * np.sum(np.log(np.diag(gram_chol)))
            result.append(-0.5 * (dims * np.log(2.0 * np.pi) + log_det + quadratic))
        return np.array(result)

    def sample(self, images: np.ndarray, contexts: Sequence[int], num_samples: int, seed: int = 0) -> np.ndarray:
        """float64 [S, N, H, W] draws from the conditional law (acquired slices unchanged)."""
        contexts = sorted(set(int(c) for c in contexts))
        rng = np.random.default_rng(seed)
        chol, code, loadings = self._solve(images, contexts)
        sigma = np.sqrt(self.noise_variance)
        # ẑ = code + σ L⁻ᵀ ξ has covariance σ² (L Lᵀ)⁻¹ = σ² M⁻¹.
        codes = code[None] + sigma * solve_triangular(chol.T, rng.standard_normal((self.rank, num_samples)), lower=False).T
        flat = loadings.reshape(-1, self.rank)
        samples = self.mean[None] + (codes @ flat.T).reshape((num_samples,) + self.mean.shape)
        samples += sigma * rng.standard_normal(samples.shape)
        samples[:, contexts] = np.asarray(images, np.float64)[contexts]
        return samples

