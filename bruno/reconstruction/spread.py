"""The last step of a BRUNO run with ``train.choose_spread``: the temperature τ(k) of its predictive, chosen on val.

Training fits the latent process by likelihood on sequences of ``train.seq_len`` slices; a reconstruction is judged
as a forecast of every other slice (CRPS, interval coverage), and the two need not agree on the spread. On IXI the
flow conditioned on the classical estimate, sampled with its trained predictive (τ = 1), covered .44 of the head
voxels with its 50 % intervals at k = 1 and .53 at k = 9 (RESULTS.md). So once training ends, each k of
:data:`~bruno.reconstruction.tuning.SEARCH_KS` gets the τ of :data:`TEMPERATURES` whose samples score the lowest mean
CRPS on the val subjects (k evenly spread; the head voxels of the non-acquired slices; the fair ensemble CRPS of
:data:`SPREAD_SAMPLES` samples, the same latent draws for every τ, so that the settings are compared on the same
noise). τ multiplies every deviation of the latent predictive from its mean, so the decoded mean does not move, and
the samples, the std map and the conditional NLL all come from the one scaled law. Where the run's mean image is
blended with the classical estimate (:mod:`bruno.reconstruction.blend`, chosen first), τ is chosen for the blended
samples, and a new blend makes the stored τ stale. The choice is stored in
``<run>/spread.json`` with what it was fitted to (the subjects, the checkpoint, the SHA-1 of the weights) and set on
the model by :func:`~bruno.runs.restore_model` (:mod:`bruno.runs.spread`).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

import numpy as np

from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.metrics import crps_samples, head_mask, pit_coverage_samples
from bruno.models import MODEL_KINDS, SequenceModel
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.sampling import draw_samples
from bruno.reconstruction.tuning import SEARCH_KS, can_search, grid_search_per_k, split_fingerprint
from bruno.runs import RunDir, checkpoint_step, restore_model, spread_search

__all__ = ["SPREAD_SAMPLES", "TEMPERATURES", "fit_spread", "val_forecast_scores"]

logger = logging.getLogger(__name__)

TEMPERATURES = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5)
SPREAD_SAMPLES = 4


def val_forecast_scores(model: SequenceModel, val: list[np.ndarray], k: int, num_samples: int = SPREAD_SAMPLES
                        ) -> dict[str, float]:
    """Mean over ``val`` subjects [N, H, W] of the CRPS and the 50 % / 90 % coverage of ``model``'s samples given k
    evenly spread slices, over the head voxels of the others (subject i's draws from seed i)."""
    crps, cover = [], []
    for i, images in enumerate(val):
        contexts = evenly_spread(k, len(images))
        samples = draw_samples(model, images, contexts, num_samples, seed=i, progress=False)
        mask = head_mask(images, contexts)
        truth = np.asarray(images, np.float64)[mask]
        crps.append(crps_samples(samples[:, mask], truth))
        cover.append(pit_coverage_samples(samples[:, mask], truth, (0.5, 0.9)))
    coverage = np.mean(cover, axis=0)
    return {"val_crps": float(np.mean(crps)), "cover_50": float(coverage[0]), "cover_90": float(coverage[1])}


def fit_spread(run_dir: str, table: SliceTable, progress: bool = True) -> Optional[dict[str, Any]]:
    """Choose and store ``run_dir``'s τ(k) for its best checkpoint, unless a choice for it is stored already.

    Returns:
        The search (per k: every τ with its val CRPS and coverage, and the choice), or None where there was nothing
        to do: not a BRUNO run, no best checkpoint, a choice for these weights stored, or no val split (warned).
    """
    run = RunDir(run_dir)
    best, config = run.latest_checkpoint("best"), run.config()
    if best is None or not MODEL_KINDS[config.model.kind].has_process:
        return None
    if not can_search(table):
        logger.warning("%s: no val split to choose the spread on: τ = 1", table.path)
        return None
    model, _, step = restore_model(run, "best", spread=False)
    stored = spread_search(run, model, checkpoint_step(best), **split_fingerprint(table))
    try:
        if stored.load() is not None:
            return None
    except DataFileError as err:
        logger.warning("%s; choosing it again", err)
    start = time.time()
    val = list(read_split(table, "val"))
    ks = [k for k in SEARCH_KS if k < table.num_poses]

    def scores_at(k: int, temperature: float) -> dict[str, float]:
        model.set_temperatures({k: temperature})  # type: ignore[attr-defined]
        return val_forecast_scores(model, val, k)

    chosen: dict[str, float] = {}
    grid: dict[str, list[dict[str, Any]]] = {}
    for k, value, rows, scores in grid_search_per_k(ks, "temperature", TEMPERATURES, scores_at, "spread τ, k = {k} (val CRPS)",
                                                     progress, criterion="val_crps", lower_is_better=True):
        chosen[str(k)], grid[str(k)], picked = value, rows, scores[value]
        logger.info("spread of step %d, k = %d: τ = %g (val CRPS %.3f, 50 %% / 90 %% cover %.3f / %.3f; τ = 1: %.3f)",
                    step, k, value, picked["val_crps"], picked["cover_50"], picked["cover_90"],
                    scores[1.0]["val_crps"])
    return stored.store(chosen, grid, ks=ks, table=table.path, num_val=len(val), samples=SPREAD_SAMPLES,
                        criterion=f"mean val CRPS of {SPREAD_SAMPLES} samples over the head voxels of the non-acquired "
                                  "slices, per k", seconds=round(time.time() - start, 1))
