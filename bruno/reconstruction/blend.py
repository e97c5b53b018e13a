"""The first step of a BRUNO run's test-time state with ``train.choose_blend``: how much of its mean image is its own.

A flow conditioned on the classical estimate (``model.estimate.use``) decodes a mean image D that follows the
acquired slices' edges better than the PCA + GP estimate C it was given, but neither is best alone: on IXI's val split
at k = 1 the decoded mean beat C's SSIM by +.0015 ± .0023 and their average w·D + (1 − w)·C with w = .5 by
+.0081 ± .0014 (issue 36; the errors of the two are far from perfectly correlated). So once training ends, each k of
:data:`~bruno.reconstruction.tuning.SEARCH_KS` gets the weight w of :data:`BLEND_WEIGHTS` whose blended mean image
scores the highest mean SSIM on the val subjects (k evenly spread; every slice, the acquired ones kept), the flow's
own mean (w = 1) winning ties. The samples move with the mean (:meth:`~bruno.models.ConditionalBruno.set_blend`), and
the spread τ(k) is chosen after it, for the blended samples (:mod:`bruno.reconstruction.spread`). The choice is stored in
``<run>/blend.json`` with what it was fitted to (the subjects, the checkpoint, the SHA-1 of the weights) and set on the
model by :func:`~bruno.runs.restore_model` (:mod:`bruno.runs.spread`).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

import numpy as np

from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.metrics import slice_scores
from bruno.models import SequenceModel
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.sampling import decoded_mean
from bruno.reconstruction.tuning import SEARCH_KS, can_search, grid_search_per_k, split_fingerprint
from bruno.runs import RunDir, blend_search, restore_model

__all__ = ["BLEND_WEIGHTS", "fit_blend", "val_mean_scores"]

logger = logging.getLogger(__name__)

BLEND_WEIGHTS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)  # the flow's own mean first: it wins ties


def val_mean_scores(model: SequenceModel, val: list[np.ndarray], k: int) -> dict[str, float]:
    """Mean over ``val`` subjects [N, H, W] and their slices of the SSIM and CC of ``model``'s decoded mean image given
    k evenly spread slices (subject i's contexts dequantised with seed i)."""
    ssim, cc = [], []
    for i, images in enumerate(val):
        scores = slice_scores(decoded_mean(model, images, evenly_spread(k, len(images)), seed=i), images)
        ssim.append(scores.ssim.mean())
        cc.append(scores.cc.mean())
    return {"val_ssim": float(np.mean(ssim)), "val_cc": float(np.mean(cc))}


def fit_blend(run_dir: str, table: SliceTable, progress: bool = True) -> Optional[dict[str, Any]]:
    """Choose and store ``run_dir``'s w(k) for its best checkpoint, unless a choice for it is stored already.

    Returns:
        The search (per k: every w with its val SSIM and CC, and the choice), or None where there was nothing to do:
        not a BRUNO run conditioned on the classical estimate, no best checkpoint, a choice for these weights stored,
        or no val split (warned).
    """
    run = RunDir(run_dir)
    if not run.config().model.estimate.use:
        logger.warning("%s: train.choose_blend, but the flow is not conditioned on the classical estimate "
                       "(model.estimate.use): nothing to blend", run_dir)
        return None
    if run.latest_checkpoint("best") is None:
        return None
    if not can_search(table):
        logger.warning("%s: no val split to choose the blend on: the decoded mean alone (w = 1)", table.path)
        return None
    model, _, step = restore_model(run, "best", blend=False)
    stored = blend_search(run, model, step, **split_fingerprint(table))
    try:
        if stored.load() is not None:
            return None
    except DataFileError as err:
        logger.warning("%s; choosing it again", err)
    start = time.time()
    val = list(read_split(table, "val"))
    ks = [k for k in SEARCH_KS if k < table.num_poses]

    def scores_at(k: int, weight: float) -> dict[str, float]:
        model.set_blend({k: weight})  # type: ignore[attr-defined]
        return val_mean_scores(model, val, k)

    chosen: dict[str, float] = {}
    grid: dict[str, list[dict[str, Any]]] = {}
    for k, value, rows, scores in grid_search_per_k(ks, "weight", BLEND_WEIGHTS, scores_at, "blend w, k = {k} (val SSIM)",
                                                     progress):
        chosen[str(k)], grid[str(k)], picked = value, rows, scores[value]
        logger.info("blend of step %d, k = %d: w = %g (val SSIM %.4f, CC %.4f; the decoded mean alone %.4f, the estimate "
                    "alone %.4f)", step, k, value, picked["val_ssim"], picked["val_cc"], scores[1.0]["val_ssim"],
                    scores[0.0]["val_ssim"])
    return stored.store(chosen, grid, ks=ks, table=table.path, num_val=len(val), seconds=round(time.time() - start, 1),
                        criterion="mean val SSIM of the mean image over slices and subjects, per k")
