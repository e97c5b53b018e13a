"""Choosing and storing the classical baselines' hyper-parameters (SPEC §9), on the validation split only.

The search (:func:`search`) fits the Gaussian volume model once on the train split, then scores every
setting of a small grid on the val split's volumes with the evaluation protocol (k evenly spread
slices for each k in ``ks``; mean SSIM over slices, volumes and k) and keeps the best, **one setting
for all k**:

1. ``pca``: rank r × noise σ² (:data:`RANKS` × :data:`NOISE_VARIANCES`);
2. ``atlas_gp`` and ``pca_gp``: length ℓ × ρ (:data:`LENGTHS` × :data:`RHOS`); ``pca_gp`` uses the
   Gaussian model chosen in step 1.

The choice, the grid's scores and the train split's subjects are stored as JSON beside the slice
table (:func:`settings_path`), so every later evaluation and reconstruction uses the same numbers
(:func:`load_methods`); a table re-made with other train subjects is refused.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from bruno.baselines.classical import Atlas, ClassicalMethod, GaussianConditional, LinearInterpolation, ResidualInterpolation
from bruno.baselines.gaussian import GaussianVolumeModel, read_split
from bruno.baselines.simple import population_mean
from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.files import write_text_files
from bruno.metrics import slice_scores
from bruno.reconstruction import evenly_spread

__all__ = ["LENGTHS", "NOISE_VARIANCES", "RANKS", "RHOS", "can_search", "fit_methods", "load_methods", "search", "settings_path",
           "val_score"]

logger = logging.getLogger(__name__)

FORMAT = 1
RANKS = (8, 16, 32, 64, None)  # None: every direction the train split gives (V − 1)
NOISE_VARIANCES = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)  # grey levels²
LENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # poses
RHOS = (0.0, 0.25, 0.5, 0.75)
SEARCH_KS = (1, 3, 5, 9)


def settings_path(table: SliceTable) -> str:
    """``data/ixi.h5`` → ``data/ixi.baselines.json``."""
    return os.path.splitext(table.path)[0] + ".baselines.json"


def _train_fingerprint(table: SliceTable) -> str:
    subjects = [table.info(int(v)).subject for v in table.volumes_in("train")]
    return hashlib.sha1("\n".join(subjects).encode()).hexdigest()


def can_search(table: SliceTable) -> bool:
    """Whether the table has what a search needs: >= 2 train volumes and >= 1 val volume."""
    return len(table.volumes_in("train")) >= 2 and len(table.volumes_in("val")) > 0


def val_score(method: ClassicalMethod, subjects: Sequence[np.ndarray], ks: Sequence[int]) -> float:
    """Mean SSIM of ``method``'s volumes over subjects [N, H, W] and k evenly spread acquired slices."""
    scores = [slice_scores(method.estimate(images, evenly_spread(k, len(images)), with_std=False).mean, images).ssim.mean()
              for images in subjects for k in ks]
    return float(np.mean(scores))


def search(table: SliceTable, ks: Sequence[int] = SEARCH_KS, progress: bool = True) -> dict[str, Any]:
    """Grid-search the baselines on the val split (module docstring); returns the JSON-able settings.

    Raises:
        DataFileError: fewer than two train volumes or no val volume.
    """
    if not can_search(table):
        raise DataFileError(f"{table.path}: the baselines need >= 2 train volumes and >= 1 val volume to choose their settings")
    ks = [k for k in ks if k <= table.num_poses]
    base = GaussianVolumeModel.fit(read_split(table, "train"))
    val = read_split(table, "val")
    ranks = sorted({base.max_rank if r is None else min(r, base.max_rank) for r in RANKS})
    pca_grid = [{"rank": r, "noise_variance": s} for r, s in itertools.product(ranks, NOISE_VARIANCES)]
    gp_grid = [{"length": ell, "rho": rho} for ell, rho in itertools.product(LENGTHS, RHOS)]
    total = len(pca_grid) + 2 * len(gp_grid)
    bar = tqdm(total=total, desc="baseline search (val)", unit="setting", disable=not progress)
    scored: dict[str, list[dict[str, Any]]] = {"pca": [], "atlas_gp": [], "pca_gp": []}
    for setting in pca_grid:
        scored["pca"].append({**setting, "val_ssim": val_score(GaussianConditional(base.with_settings(**setting)), val, ks)})
        bar.update()
    best_pca = max(scored["pca"], key=lambda s: s["val_ssim"])
    model = base.with_settings(best_pca["rank"], best_pca["noise_variance"])
    for prior in ("atlas", "pca"):
        for setting in gp_grid:
            score = val_score(ResidualInterpolation(model, prior, **setting), val, ks)
            scored[f"{prior}_gp"].append({**setting, "val_ssim": score})
            bar.update()
    bar.close()
    chosen = {key: max(rows, key=lambda s: s["val_ssim"]) for key, rows in scored.items()}
    return {"format": FORMAT, "table": table.path, "train_subjects_sha1": _train_fingerprint(table),
            "num_train": len(table.volumes_in("train")), "num_val": len(val), "ks": list(ks),
            "criterion": "mean val SSIM over slices, volumes and k (one setting for all k)",
            "chosen": chosen, "grid": scored}


def fit_methods(table: SliceTable, settings: dict[str, Any]) -> dict[str, ClassicalMethod]:
    """Every classical method, fitted on the train split with the stored ``settings``, by key (table order)."""
    chosen = settings["chosen"]
    model = GaussianVolumeModel.fit(read_split(table, "train"), chosen["pca"]["rank"], chosen["pca"]["noise_variance"])
    methods: list[ClassicalMethod] = [
        LinearInterpolation(), Atlas(model.mean), GaussianConditional(model),
        ResidualInterpolation(model, "atlas", chosen["atlas_gp"]["length"], chosen["atlas_gp"]["rho"]),
        ResidualInterpolation(model, "pca", chosen["pca_gp"]["length"], chosen["pca_gp"]["rho"]),
    ]
    return {m.key: m for m in methods}


def _read_settings(path: str, table: SliceTable) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            settings = json.load(f)
        chosen = settings["chosen"]
        checks = (settings["format"] == FORMAT, int(chosen["pca"]["rank"]) >= 1, float(chosen["pca"]["noise_variance"]) > 0,
                  all(float(chosen[k]["length"]) > 0 and 0 <= float(chosen[k]["rho"]) < 1 for k in ("atlas_gp", "pca_gp")))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataFileError(f"{path}: not a readable baseline settings file ({type(err).__name__}: {err}); "
                            "delete it to search again") from None
    if not all(checks):
        raise DataFileError(f"{path}: a setting is out of range or of another format; delete it to search again")
    if settings.get("train_subjects_sha1") != _train_fingerprint(table):
        raise DataFileError(f"{path}: chosen for other train subjects than {table.path} has now; delete it to search again")
    return settings


def load_methods(table: SliceTable, progress: bool = True, required: bool = True) -> tuple[dict[str, ClassicalMethod], dict[str, Any]]:
    """The classical methods with their stored settings; on first use, search them and store the result.

    Args:
        required: False: a table without a val volume (or with < 2 train volumes) gives only linear
            interpolation and the atlas, with a warning, instead of an error.

    Returns:
        (methods by key, the settings as stored; empty settings in the fallback case).

    Raises:
        DataFileError: a stored file is corrupt or belongs to another train split; or the settings
            cannot be chosen and ``required`` is true.
    """
    path = settings_path(table)
    if not required and not os.path.exists(path) and not can_search(table):
        logger.warning("%s: no val volume (or < 2 train volumes) to choose the Gaussian model and GP settings on; "
                       "scoring linear interpolation and the atlas only", table.path)
        return {"linear": LinearInterpolation(), "population_mean": Atlas(population_mean(table, "train"))}, {"chosen": {}}
    if os.path.exists(path):
        settings = _read_settings(path, table)
    else:
        logger.info("no baseline settings at %s: choosing them on the val split (once)", path)
        settings = search(table, progress=progress)
        write_text_files(os.path.dirname(os.path.abspath(path)), {os.path.basename(path): json.dumps(settings, indent=1)})
        logger.info("baseline settings %s stored in %s", json.dumps(settings["chosen"]), path)
    return fit_methods(table, settings), settings
