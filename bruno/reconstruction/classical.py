"""The classical reconstructions, as methods (SPEC §9): no training beyond the statistics of the train split.

* :class:`LinearInterpolation` (``linear``): between the two nearest acquired slices, constant beyond;
* :class:`Atlas` (``population_mean``): the per-pose mean of the training volumes; it ignores the slices
  (the acquired ones are not put back either, so its row is the same at every k, as in the paper);
* :class:`GaussianConditional` (``pca``): the Gaussian volume model's conditional mean and spread
  (:mod:`bruno.baselines.gaussian`), with samples;
* :class:`ResidualInterpolation` (:class:`AtlasGP`, ``atlas_gp``; :class:`PCAGP`, ``pca_gp``): a prior volume (the atlas, or the Gaussian
  model's projection) plus GP interpolation of its residuals at the acquired poses (:mod:`bruno.baselines.kernels`).

Only ``images[contexts]`` is read, and the acquired slices come back unchanged (except from the atlas).
Their settings are chosen once on the val split, one setting for all k:

1. ``pca``: rank r × noise σ² (:data:`RANKS` × :data:`NOISE_VARIANCES`);
2. ``atlas_gp`` and ``pca_gp``: length ℓ × ρ (:data:`LENGTHS` × :data:`RHOS`); ``pca_gp`` uses the
   Gaussian model chosen in step 1;

and stored beside the table (:func:`settings_path`) with a fingerprint of the train and val subjects
(:class:`~bruno.files.StoredSearch`); a table re-made with other subjects is refused.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from bruno.baselines import GaussianVolumeModel, gp_residual, linear_interpolation, population_mean
from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.files import StoredSearch
from bruno.reconstruction.method import Method, Result, Source, dequantised
from bruno.reconstruction.tuning import SEARCH_KS, can_search, grid_search, split_fingerprint, val_score
from bruno.units import bits_per_dim

__all__ = ["LENGTHS", "NOISE_VARIANCES", "PCAGP", "RANKS", "RHOS", "Atlas", "AtlasGP", "GaussianConditional",
           "LinearInterpolation", "ResidualInterpolation", "classical_methods", "search", "settings_path", "stored_search"]

logger = logging.getLogger(__name__)

RANKS = (8, 16, 32, 64, None)  # None: every direction the train split gives (V − 1)
NOISE_VARIANCES = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)  # grey levels²
LENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # poses
RHOS = (0.0, 0.25, 0.5, 0.75)


def _put_back(volume: np.ndarray, images: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
    out = np.array(volume, np.float64)
    contexts = list(contexts)
    out[contexts] = np.asarray(images, np.float64)[contexts]
    return out


class _Classical(Method):
    """A classical method: built from the source's shared fit (:func:`classical_methods`), by its key."""

    @classmethod
    def build(cls, source: Source) -> Method:
        if "classical" not in source.cache:
            source.cache["classical"] = classical_methods(source.table, source.progress, source.required)
        methods = source.cache["classical"][0]
        if cls.key not in methods:
            raise DataFileError(f"{source.table.path}: the {cls.key} method needs >= 2 train volumes and >= 1 val volume")
        return methods[cls.key]


class LinearInterpolation(_Classical):
    key, label, short, min_contexts = "linear", "linear interpolation", "linear", 1

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        return Result(linear_interpolation(images, contexts), None, None, list(contexts))


class Atlas(_Classical):
    """The population-mean volume, whatever was acquired."""

    key, label, short = "population_mean", "population mean (atlas)", "atlas"

    def __init__(self, mean: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float64)

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        return Result(self.mean, None, None, list(contexts))


class GaussianConditional(_Classical):
    """The conditional mean of the Gaussian volume model, with its per-voxel standard deviation and samples."""

    key, short, has_distribution = "pca", "PCA", True

    def __init__(self, model: GaussianVolumeModel) -> None:
        self.model = model
        self.label = f"Gaussian volume model (PCA, r = {model.rank}, σ² = {model.noise_variance:g})"

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        posterior = self.model.condition(images, contexts, variance=with_std)
        samples = self.model.sample(images, contexts, num_samples, seed) if num_samples else None
        return Result(posterior.mean, np.sqrt(posterior.variance) if with_std else None, samples, list(contexts))

    def conditional_nll(self, images: np.ndarray, contexts: Sequence[int], seed: int = 0) -> np.ndarray:
        noisy = dequantised(images, seed)
        return -bits_per_dim(self.model.slice_log_density(noisy, contexts), noisy[0].size)


class ResidualInterpolation(_Classical):
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

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        contexts = sorted(set(int(c) for c in contexts))
        prior = self.model.mean if self.prior == "atlas" else self.model.condition(images, contexts, variance=False).projection
        volume = gp_residual(prior, np.asarray(images, np.float64)[contexts], contexts, self.length, self.rho)
        return Result(_put_back(volume, images, contexts), None, None, contexts)


class AtlasGP(ResidualInterpolation):
    key = "atlas_gp"

    def __init__(self, model: GaussianVolumeModel, length: float, rho: float) -> None:
        super().__init__(model, "atlas", length, rho)


class PCAGP(ResidualInterpolation):
    key = "pca_gp"

    def __init__(self, model: GaussianVolumeModel, length: float, rho: float) -> None:
        super().__init__(model, "pca", length, rho)


def settings_path(table: SliceTable) -> str:
    """``data/ixi.h5`` → ``data/ixi.baselines.json``."""
    return os.path.splitext(table.path)[0] + ".baselines.json"


def search(table: SliceTable, ks: Sequence[int] = SEARCH_KS,
           progress: bool = True) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Grid-search the classical methods on the val split (module docstring).

    Returns:
        (the chosen setting of each method, every setting scored, details), as :meth:`StoredSearch.store` takes them.

    Raises:
        DataFileError: fewer than two train volumes or no val volume.
    """
    if not can_search(table):
        raise DataFileError(f"{table.path}: the baselines need >= 2 train volumes and >= 1 val volume to choose their settings")
    ks = [k for k in ks if k <= table.num_poses]
    base = GaussianVolumeModel.fit(read_split(table, "train"))
    val = read_split(table, "val")
    ranks = sorted({base.max_rank if r is None else min(r, base.max_rank) for r in RANKS})
    chosen, scored = {}, {}
    chosen["pca"], scored["pca"] = grid_search(
        [{"rank": r, "noise_variance": s} for r, s in itertools.product(ranks, NOISE_VARIANCES)],
        lambda **setting: val_score(GaussianConditional(base.with_settings(**setting)), val, ks),
        "baseline search: pca (val)", progress)
    model = base.with_settings(chosen["pca"]["rank"], chosen["pca"]["noise_variance"])
    for prior in ("atlas", "pca"):
        chosen[f"{prior}_gp"], scored[f"{prior}_gp"] = grid_search(
            [{"length": ell, "rho": rho} for ell, rho in itertools.product(LENGTHS, RHOS)],
            lambda prior=prior, **setting: val_score(ResidualInterpolation(model, prior, **setting), val, ks),
            f"baseline search: {prior}_gp (val)", progress)
    return chosen, scored, {"table": table.path, "num_train": len(table.volumes_in("train")), "num_val": len(val),
                            "ks": list(ks), "criterion": "mean val SSIM over slices, volumes and k (one setting for all k)"}


def _check_chosen(chosen: dict[str, Any]) -> None:
    """Refuse a stored choice that no search makes (a hand-edited file): a rank that is not an integer >= 1, a σ² or ℓ
    that is not a finite number > 0 (JSON's Infinity and 1e309 read as inf), ρ outside [0, 1)."""
    rank = chosen["pca"]["rank"]
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"pca rank {rank!r}: expected an integer >= 1")
    for key, name, value in [("pca", "noise_variance", chosen["pca"]["noise_variance"])] + [
            (key, name, chosen[key][name]) for key in ("atlas_gp", "pca_gp") for name in ("length", "rho")]:
        low_ok = float(value) >= 0 if name == "rho" else float(value) > 0
        if not (low_ok and float(value) < (1 if name == "rho" else math.inf)):
            raise ValueError(f"{key} {name} {value!r}: expected {'a number in [0, 1)' if name == 'rho' else 'a finite number > 0'}")


def stored_search(table: SliceTable) -> StoredSearch:
    """Where the classical settings of ``table`` are stored (beside it), and what they must have been chosen on."""
    return StoredSearch(settings_path(table), "baseline settings", split_fingerprint(table), _check_chosen,
                        legacy=lambda record: {"train_subjects_sha1": record["train_subjects_sha1"]})


def estimate_settings(table: SliceTable, progress: bool = True) -> dict[str, Any]:
    """The PCA + GP mean image's settings chosen on ``table``'s val split (searched and stored on first use) as
    ``model.estimate`` names them: rank, noise_variance (the PCA's), length, rho (the residual GP's).

    Raises:
        DataFileError: as :func:`classical_methods`, or no val split to choose them on.
    """
    if not os.path.exists(settings_path(table)) and not can_search(table):
        raise DataFileError(f"{table.path}: no val volume (or < 2 train volumes) to choose model.estimate's settings "
                            "on; give rank, noise_variance, length and rho in the config")
    chosen = stored_search(table).load_or_search(lambda: search(table, progress=progress))["chosen"]
    return {"rank": chosen["pca"]["rank"], "noise_variance": chosen["pca"]["noise_variance"],
            "length": chosen["pca_gp"]["length"], "rho": chosen["pca_gp"]["rho"]}


def classical_methods(table: SliceTable, progress: bool = True, required: bool = True) -> tuple[dict[str, Method], dict[str, Any]]:
    """Every classical method, fitted on the train split with its stored settings (searched and stored on first use).

    Args:
        required: False: a table without a val volume (or with < 2 train volumes) gives only linear
            interpolation and the atlas, with a warning, instead of an error.

    Returns:
        (methods by key in table order, the settings as stored; empty settings in the fallback case).

    Raises:
        DataFileError: a stored file is corrupt or belongs to another train split; or the settings
            cannot be chosen and ``required`` is true.
    """
    path = settings_path(table)
    if not required and not os.path.exists(path) and not can_search(table):
        logger.warning("%s: no val volume (or < 2 train volumes) to choose the Gaussian model and GP settings on; "
                       "scoring linear interpolation and the atlas only", table.path)
        return {"linear": LinearInterpolation(), "population_mean": Atlas(population_mean(read_split(table, "train")))}, {"chosen": {}}
    settings = stored_search(table).load_or_search(lambda: search(table, progress=progress))
    chosen = settings["chosen"]
    model = GaussianVolumeModel.fit(read_split(table, "train"), chosen["pca"]["rank"], chosen["pca"]["noise_variance"])
    methods: list[Method] = [
        LinearInterpolation(), Atlas(model.mean), GaussianConditional(model),
        AtlasGP(model, chosen["atlas_gp"]["length"], chosen["atlas_gp"]["rho"]),
        PCAGP(model, chosen["pca_gp"]["length"], chosen["pca_gp"]["rho"]),
    ]
    return {m.key: m for m in methods}, settings
