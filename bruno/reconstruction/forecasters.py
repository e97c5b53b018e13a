"""The classical forecasters (SPEC §10.1): the classical means with a spread chosen on val by CRPS, per k.

The classical methods of :mod:`.classical` are tuned for the mean image (SSIM); a forecast is judged by its whole law,
so each forecaster here is a Gaussian N(m, s²) per voxel whose spread is chosen on the val split by the mean CRPS
over the head voxels of the non-acquired slices (:func:`~bruno.metrics.head_mask`), separately for each k of
:data:`~bruno.reconstruction.tuning.SEARCH_KS` (a k in between takes the nearest one's setting):

* ``pca_forecast`` (:class:`PCAForecast`): the Gaussian volume model's own conditional law (SPEC §9.1) with its
  noise σ² chosen from :data:`NOISE_VARIANCES` (the rank stays the one chosen for SSIM);
* ``pca_gp_forecast`` / ``atlas_gp_forecast`` (:class:`GPForecast`): the PCA + GP / atlas + GP mean (SPEC §9.2,
  with its ℓ and ρ as chosen for SSIM), and s² = α²·b² + 1/12, where the base spread b is either the PCA
  posterior std (``variance: pca``) or √(a(u)·v_GP(q)) (``variance: gp``): v_GP(q) = 1 − K_qC K_CC⁻¹ K_Cq, the
  GP posterior variance at pose q, which grows with the distance to the nearest acquired slice, times a(u), the
  per-voxel variance of the train volumes about the atlas, for both priors (tried first for the PCA prior: the
  variance about each train volume's own PCA projection, which is ~0 once the rank reaches V − 1 and otherwise
  underestimates the residual of a projection from k slices: α hit the top of the grid); both kinds × α ∈
  :data:`ALPHAS` are tried. The 1/12 is the variance of the dequantisation
  noise: no density of x + U(0, 1) is narrower, and it keeps s > 0 at voxels every train volume leaves empty.

Their conditional NLL (SPEC §10): the slice block of the PCA law for ``pca_forecast``, the diagonal Gaussian of each
non-acquired slice for the GP forecasters. The choices are stored beside the table (``<table>.forecasters.json``)
with the fingerprint of the subjects and of the mean-image settings they build on.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np

from bruno.baselines import GaussianVolumeModel, gp_residual
from bruno.baselines.kernels import pose_kernel, residual_weights
from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.files import StoredSearch
from bruno.metrics import crps_gaussian, head_mask
from bruno.reconstruction.classical import GaussianConditional, classical_methods
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.method import Method, Result, Source, dequantised
from bruno.reconstruction.tuning import SEARCH_KS, can_search, grid_search, split_fingerprint
from bruno.units import bits_per_dim

__all__ = ["ALPHAS", "FORECASTERS", "NOISE_VARIANCES", "AtlasGPForecast", "GPForecast", "PCAForecast", "PCAGPForecast",
           "classical_forecasters", "forecast_settings_path"]

NOISE_VARIANCES = (100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0, 3000.0)  # grey levels²
ALPHAS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 4.0)
DEQUANTISATION_VARIANCE = 1.0 / 12.0
FORECASTERS = ("pca_forecast", "atlas_gp_forecast", "pca_gp_forecast")


def _nearest(by_k: dict[str, Any], k: int) -> Any:
    """The setting searched for the k nearest to ``k`` (the smaller one on a tie)."""
    return by_k[min(by_k, key=lambda searched: (abs(int(searched) - k), int(searched)))]


class _Forecaster(Method):
    """A classical forecaster: built from the source's shared classical fit and the stored forecast search."""

    has_distribution = True

    @classmethod
    def build(cls, source: Source) -> Method:
        if "forecasters" not in source.cache:
            if "classical" not in source.cache:
                source.cache["classical"] = classical_methods(source.table, source.progress, source.required)
            source.cache["forecasters"] = classical_forecasters(source.table, *source.cache["classical"], source.progress)
        return source.cache["forecasters"][cls.key]


class PCAForecast(_Forecaster):
    """The Gaussian volume model's conditional law with σ² chosen by val CRPS per k (``settings``: k → σ²)."""

    key, short = "pca_forecast", "PCA (CRPS)"

    def __init__(self, model: GaussianVolumeModel, settings: dict[str, float]) -> None:
        self.model, self.settings = model, {str(k): float(v) for k, v in settings.items()}
        chosen = ", ".join(f"{v:g}" for v in self.settings.values())
        self.label = f"Gaussian volume model (PCA, r = {model.rank}, σ² by val CRPS per k: {chosen})"

    def _at(self, k: int) -> GaussianConditional:
        return GaussianConditional(self.model.with_settings(noise_variance=_nearest(self.settings, k)))

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        return self._at(len(set(contexts))).reconstruct(images, contexts, num_samples, seed, with_std)

    def conditional_nll(self, images: np.ndarray, contexts: Sequence[int], seed: int = 0) -> np.ndarray:
        return self._at(len(set(contexts))).conditional_nll(images, contexts, seed)


class GPForecast(_Forecaster):
    """A prior + GP residual mean with a Gaussian spread chosen by val CRPS per k (module docstring).

    Args:
        model: the Gaussian volume model (the atlas is its mean; the ``pca`` prior its projection).
        prior: ``atlas`` or ``pca``; length, rho: the residual kernel (as chosen for SSIM).
        amplitude: a(u) [N, H, W], the train volumes' per-voxel variance about the atlas.
        settings: k → {"variance": "pca" | "gp", "alpha": α} (None: not chosen yet; only :meth:`mean_and_base` works).
    """

    def __init__(self, model: GaussianVolumeModel, prior: str, length: float, rho: float, amplitude: np.ndarray,
                 settings: Optional[dict[str, dict[str, Any]]] = None) -> None:
        self.model, self.prior, self.length, self.rho = model, prior, float(length), float(rho)
        self.amplitude = np.asarray(amplitude, np.float64)
        self.settings = {str(k): dict(v) for k, v in (settings or {}).items()}
        self.key = f"{prior}_gp_forecast"
        self.short = f"{'atlas' if prior == 'atlas' else 'PCA'} + GP (CRPS)"
        chosen = ", ".join(f"{v['variance']} × {v['alpha']:g}" for v in self.settings.values())
        name = "atlas" if prior == "atlas" else "Gaussian volume model"
        self.label = f"{name} + GP residual, spread by val CRPS per k ({chosen})"

    def mean_and_base(self, images: np.ndarray, contexts: Sequence[int], variance: str) -> tuple[np.ndarray, np.ndarray]:
        """The mean volume (acquired slices put back) and the base spread b [N, H, W] of ``variance``'s kind."""
        contexts = sorted(set(int(c) for c in contexts))
        posterior = self.model.condition(images, contexts, variance=variance == "pca")
        prior = self.model.mean if self.prior == "atlas" else posterior.projection
        mean = gp_residual(prior, np.asarray(images, np.float64)[contexts], contexts, self.length, self.rho)
        mean[contexts] = np.asarray(images, np.float64)[contexts]
        if variance == "pca":
            return mean, np.sqrt(posterior.variance)
        return mean, np.sqrt(self.amplitude * self.gp_variance(len(mean), contexts)[:, None, None])

    def gp_variance(self, num_poses: int, contexts: Sequence[int]) -> np.ndarray:
        """v_GP(q) = 1 − K_qC K_CC⁻¹ K_Cq for q = 0..N−1 (1 − 0 with no contexts; 0 at a context)."""
        contexts = sorted(set(int(c) for c in contexts))
        if not contexts:
            return np.ones(num_poses)
        weights = residual_weights(num_poses, contexts, self.length, self.rho)  # K_qC K_CC⁻¹ [N, k]
        cross = pose_kernel(np.arange(num_poses), np.asarray(contexts), self.length, self.rho)  # K_qC
        return np.clip(1.0 - np.sum(weights * cross, axis=1), 0.0, 1.0)

    def law(self, images: np.ndarray, contexts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(m, s) [N, H, W] at k = len(contexts)'s setting."""
        setting = _nearest(self.settings, len(set(contexts)))
        mean, base = self.mean_and_base(images, contexts, setting["variance"])
        return mean, _spread(setting["alpha"], base)

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        mean, std = self.law(images, contexts)
        samples = None
        if num_samples:
            samples = mean + std * np.random.default_rng(seed).standard_normal((num_samples,) + mean.shape)
        return Result(mean, std if with_std else None, samples, sorted(set(int(c) for c in contexts)))

    def conditional_nll(self, images: np.ndarray, contexts: Sequence[int], seed: int = 0) -> np.ndarray:
        mean, std = self.law(images, contexts)
        noisy = dequantised(images, seed)
        others = [q for q in range(len(images)) if q not in set(int(c) for c in contexts)]
        z = (noisy[others] - mean[others]) / std[others]
        log_density = -0.5 * np.sum(z ** 2 + np.log(2.0 * np.pi * std[others] ** 2), axis=(1, 2))
        return -bits_per_dim(log_density, noisy[0].size)


class AtlasGPForecast(GPForecast):
    key = "atlas_gp_forecast"

    def __init__(self, model: GaussianVolumeModel, length: float, rho: float, amplitude: np.ndarray,
                 settings: Optional[dict[str, dict[str, Any]]] = None) -> None:
        super().__init__(model, "atlas", length, rho, amplitude, settings)


class PCAGPForecast(GPForecast):
    key = "pca_gp_forecast"

    def __init__(self, model: GaussianVolumeModel, length: float, rho: float, amplitude: np.ndarray,
                 settings: Optional[dict[str, dict[str, Any]]] = None) -> None:
        super().__init__(model, "pca", length, rho, amplitude, settings)


GP_FORECASTS = {"atlas": AtlasGPForecast, "pca": PCAGPForecast}


def forecast_settings_path(table: SliceTable) -> str:
    """``data/ixi.h5`` → ``data/ixi.forecasters.json``."""
    return os.path.splitext(table.path)[0] + ".forecasters.json"


Law = Callable[[np.ndarray, list[int]], tuple[np.ndarray, np.ndarray]]


def _val_crps(law: Law, val: Sequence[np.ndarray], k: int) -> float:
    """Mean over val subjects of the CRPS of ``law(images, contexts)`` → (m, s) over the head voxels of the others."""
    scores = []
    for images in val:
        contexts = evenly_spread(k, len(images))
        mean, std = law(images, contexts)
        mask = head_mask(images, contexts)
        scores.append(crps_gaussian(mean[mask], std[mask], np.asarray(images, np.float64)[mask]))
    return float(np.mean(scores))


def _spread(alpha: float, base: np.ndarray) -> np.ndarray:
    return np.sqrt(alpha ** 2 * base ** 2 + DEQUANTISATION_VARIANCE)


def _search(table: SliceTable, model: GaussianVolumeModel, gps: dict[str, GPForecast],
            progress: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Per k: σ² of ``pca_forecast``, then (variance kind, α) of each GP forecaster, by mean val CRPS."""
    val = list(read_split(table, "val"))  # a list: each subject keeps its identity for the cache below
    ks = [k for k in SEARCH_KS if k <= table.num_poses]
    chosen: dict[str, Any] = {key: {} for key in FORECASTERS}
    scored: dict[str, Any] = {key: {} for key in FORECASTERS}
    for k in ks:
        def pca_crps(noise_variance: float) -> float:
            conditional = model.with_settings(noise_variance=noise_variance)

            def law(images: np.ndarray, contexts: list[int]) -> tuple[np.ndarray, np.ndarray]:
                posterior = conditional.condition(images, contexts)
                return posterior.mean, np.sqrt(np.maximum(posterior.variance, DEQUANTISATION_VARIANCE))
            return _val_crps(law, val, k)

        chosen["pca_forecast"][str(k)], scored["pca_forecast"][str(k)] = grid_search(
            [{"noise_variance": v} for v in NOISE_VARIANCES], pca_crps, f"pca forecast σ², k = {k} (val CRPS)", progress,
            criterion="val_crps", lower_is_better=True)
        for key, method in gps.items():
            bases = {kind: {id(x): method.mean_and_base(x, evenly_spread(k, len(x)), kind) for x in val}
                     for kind in ("pca", "gp")}  # the mean and base spread do not depend on α

            def gp_crps(variance: str, alpha: float) -> float:
                def law(images: np.ndarray, contexts: list[int]) -> tuple[np.ndarray, np.ndarray]:
                    mean, base = bases[variance][id(images)]
                    return mean, _spread(alpha, base)
                return _val_crps(law, val, k)

            chosen[key][str(k)], scored[key][str(k)] = grid_search(
                [{"variance": kind, "alpha": a} for kind in ("pca", "gp") for a in ALPHAS], gp_crps,
                f"{key} spread, k = {k} (val CRPS)", progress, criterion="val_crps", lower_is_better=True)
    return chosen, scored, {"table": table.path, "ks": ks, "num_val": len(val),
                            "criterion": "mean val CRPS over the head voxels of the non-acquired slices, per k"}


def _check_chosen(chosen: dict[str, Any]) -> None:
    for key in FORECASTERS:
        for setting in chosen[key].values():
            if key == "pca_forecast" and not 0 < float(setting["noise_variance"]) < math.inf:
                raise ValueError(f"{key}: σ² out of range")
            if key != "pca_forecast" and (setting["variance"] not in ("pca", "gp") or not 0 < float(setting["alpha"]) < math.inf):
                raise ValueError(f"{key}: spread out of range")


def classical_forecasters(table: SliceTable, methods: dict[str, Method], settings: dict[str, Any],
                          progress: bool = True) -> dict[str, Method]:
    """The forecasters of :data:`FORECASTERS` over the fitted classical ``methods`` (:func:`classical_methods`) with
    their spreads searched on val by CRPS once and stored (none where the classical settings could not be chosen).

    Raises:
        DataFileError: the stored search is unreadable or was made for other subjects or mean-image settings.
    """
    if "pca" not in methods or not can_search(table):
        return {}
    model = methods["pca"].model  # type: ignore[attr-defined]
    train = read_split(table, "train")
    amplitude = np.var(train, axis=0, ddof=1)  # a(u): the train volumes' spread about the atlas
    means = settings["chosen"]
    gps = {cls.key: cls(model, means[f"{prior}_gp"]["length"], means[f"{prior}_gp"]["rho"], amplitude)
           for prior, cls in GP_FORECASTS.items()}
    fitted_to = {**split_fingerprint(table),
                 "mean_settings_sha1": hashlib.sha1(json.dumps(means, sort_keys=True).encode()).hexdigest()}
    stored = StoredSearch(forecast_settings_path(table), "forecaster settings", fitted_to, _check_chosen)
    chosen = stored.load_or_search(lambda: _search(table, model, gps, progress))["chosen"]
    forecasters: dict[str, Method] = {"pca_forecast": PCAForecast(model, {k: v["noise_variance"]
                                                                          for k, v in chosen["pca_forecast"].items()})}
    for key, gp in gps.items():
        forecasters[key] = type(gp)(model, gp.length, gp.rho, gp.amplitude, chosen[key])
    return forecasters
