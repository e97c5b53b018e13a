"""The last step of a BRUNO run with ``train.choose_spread``: the temperature τ(k) of its predictive, chosen on val.

Training fits the latent process by likelihood on sequences of ``train.seq_len`` slices; a reconstruction is judged
as a forecast of every other slice (CRPS, interval coverage), and the two need not agree on the spread. On IXI the
flow conditioned on the classical estimate, sampled with its trained predictive (τ = 1), covered .44 of the head
voxels with its 50 % intervals at k = 1 and .53 at k = 9 (RESULTS.md). So once training ends, each k of
:data:`~bruno.reconstruction.tuning.SEARCH_KS` gets a τ of :data:`TEMPERATURES`, scored on the val subjects (k evenly
spread; the head voxels of the non-acquired slices; :data:`SPREAD_SAMPLES` samples, the same latent draws for every τ,
so that the settings are compared on the same noise) in the order of :func:`spread_order`: the lowest mean CRPS among
the τ whose 50 % and 90 % intervals both cover within a band about their level, or, where none does, the τ nearest
that band. The band is the goal's, ±:data:`COVERAGE_GOAL`, less :data:`VAL_OPTIMISM` below: val chose the checkpoint,
the estimate's settings and the blend, so its errors are smaller than a new subject's and its intervals cover more
(at 20 samples, by .011 – .016 at both levels in the two cells compared with the test splits, IXI at k = 5 and the
hippocampus at k = 9). CRPS alone chose τ whose 90 % intervals covered .854 – .868 on the test splits; a proper
score rewards sharpness as much as calibration, and on val the CRPS of neighbouring τ differed by ≤ 0.2 %.

The coverage is counted from the truth's rank among :data:`SPREAD_SAMPLES` = ``FAST_SAMPLES`` samples, the count the
evaluation and ``--samples fast`` use: where the forecast is not calibrated the rank's estimate depends on the count
(on IXI's val split at k = 5, 4 samples gave a 90 % cover of .894 and 20 gave .870 for the same τ). The search
descends the grid from τ = 1 (:func:`~bruno.reconstruction.tuning.descend_grid`; CRPS is unimodal in τ and each
coverage rises with it), so it scores 3–6 τ per k, not all 17.

τ multiplies every deviation of the latent predictive from its mean, so the decoded mean does not move, and
the samples, the std map and the conditional NLL all come from the one scaled law. Where the run's mean image is
blended with the classical estimate (:mod:`bruno.reconstruction.blend`, chosen first), τ is chosen for the blended
samples, and a new blend makes the stored τ stale. The choice is stored in
``<run>/spread.json`` with what it was fitted to (the subjects, the checkpoint, the SHA-1 of the weights, the rule)
and set on the model by :func:`~bruno.runs.restore_model` (:mod:`bruno.runs.spread`).
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
from bruno.reconstruction.contexts import FAST_SAMPLES, evenly_spread
from bruno.reconstruction.sampling import draw_samples
from bruno.reconstruction.tuning import SEARCH_KS, can_search, grid_search_per_k, split_fingerprint
from bruno.runs import RunDir, checkpoint_step, restore_model, spread_search

__all__ = ["COVERAGE_GOAL", "SPREAD_RULE", "SPREAD_SAMPLES", "TEMPERATURES", "VAL_OPTIMISM", "fit_spread", "spread_order",
           "val_forecast_scores"]

logger = logging.getLogger(__name__)

TEMPERATURES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0)
SPREAD_SAMPLES = FAST_SAMPLES
COVERAGE_GOAL = 0.03  # the intervals of a reconstruction should cover within ±.03 of their level on a new subject
VAL_OPTIMISM = 0.02  # what val's coverage may overstate a new subject's by (val chose the checkpoint, estimate and blend)
SPREAD_RULE = (f"the lowest mean val CRPS of {SPREAD_SAMPLES} samples over the head voxels of the non-acquired slices among "
               f"the τ whose 50 % and 90 % intervals cover within -{COVERAGE_GOAL - VAL_OPTIMISM:g} / +{COVERAGE_GOAL:g} of "
               "their level (else the nearest), per k")


def spread_order(scores: dict[str, float]) -> tuple[float, float]:
    """The sort key of a τ's val scores, lowest best: (how far its worse coverage lies outside the band from
    level − (:data:`COVERAGE_GOAL` − :data:`VAL_OPTIMISM`) to level + :data:`COVERAGE_GOAL`, at 50 % and 90 %, its CRPS)."""
    outside = max(max(level - scores[key] - (COVERAGE_GOAL - VAL_OPTIMISM), scores[key] - level - COVERAGE_GOAL)
                  for level, key in ((0.5, "cover_50"), (0.9, "cover_90")))
    return max(0.0, outside), scores["val_crps"]


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
    stored = spread_search(run, model, checkpoint_step(best), rule=SPREAD_RULE, **split_fingerprint(table))
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
    for k, value, rows, scores in grid_search_per_k(ks, "temperature", TEMPERATURES, scores_at, "spread τ, k = {k} (val)",
                                                     progress, order=spread_order, start=1.0):
        chosen[str(k)], grid[str(k)], picked = value, rows, scores[value]
        logger.info("spread of step %d, k = %d: τ = %g (val CRPS %.3f, 50 %% / 90 %% cover %.3f / %.3f; τ = 1: %.3f)",
                    step, k, value, picked["val_crps"], picked["cover_50"], picked["cover_90"],
                    scores[1.0]["val_crps"])
    return stored.store(chosen, grid, ks=ks, table=table.path, num_val=len(val), samples=SPREAD_SAMPLES,
                        criterion=SPREAD_RULE, seconds=round(time.time() - start, 1))
