"""The last step of a population run: its test-time bank and shrinkage c (stored by :mod:`bruno.runs.population_state`),
made by :func:`fit_population_state`, which the train command (:mod:`bruno.commands.train`) calls once training ends.

Measured on IXI (RESULTS.md): the bank a run ends with is stale (31 % of its norm moves when the train split
is encoded again with the best flow) and maximum likelihood drives c to ~0.08, which switches the subject
code nearly off; on the val split a fresh bank and c = 1 raise the decoded mean's SSIM at k = 1 from .770 to
.820 and bring the 50 % / 90 % intervals from .42 / .84 to .48 / .89. So once training ends, the best flow
encodes the train split (pixels at x + ½) into the bank, and c is chosen from :data:`SHRINKAGES` and the
learned value by the decoded mean's SSIM on the val split (k ∈ {1, 3, 5, 9} evenly spread, as the other tuned
methods, :func:`~bruno.reconstruction.tuning.grid_search`); both are stored in the run directory, the search in
``population.json`` with what it was fitted to (the subjects, the checkpoint and its flow's weights).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Optional

import numpy as np

from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import RunDirError
from bruno.files import StoredSearch
from bruno.metrics import slice_scores
from bruno.models import MODEL_KINDS
from bruno.models.encoder import SliceEncoder
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.sampling import decoded_mean
from bruno.reconstruction.tuning import SEARCH_KS, can_search, grid_search, split_fingerprint
from bruno.runs import RunDir, checkpoint_step, read_population_state, restore_model, write_population_state

__all__ = ["SHRINKAGES", "fit_population_state"]

logger = logging.getLogger(__name__)

SHRINKAGES = (0.25, 0.5, 1.0, 2.0, 4.0)


def _check_chosen(chosen: dict[str, Any]) -> None:
    if not 0 < float(chosen["shrinkage"]) < math.inf:
        raise ValueError(f"shrinkage {chosen['shrinkage']!r} out of range")


def fit_population_state(run_dir: str, table: SliceTable, progress: bool = True) -> Optional[dict[str, Any]]:
    """Make ``run_dir``'s test-time population state for its best checkpoint, unless it is there already.

    Returns:
        The search (grid of c with val SSIM, the choice), or None where there was nothing to do: not a population
        run, no best checkpoint, a state of this checkpoint stored, or no val split to choose on (warned).
    """
    run = RunDir(run_dir)
    best, config = run.latest_checkpoint("best"), run.config()
    if best is None or not MODEL_KINDS[config.model.kind].has_test_time_state(config):
        return None
    step = checkpoint_step(best)
    try:
        stored = read_population_state(run)
    except RunDirError as err:
        logger.warning("%s; making it again", err)
        stored = None
    if stored is not None and stored.checkpoint_step == step:
        return None
    if not can_search(table):
        logger.warning("%s: no val split to choose c on: the population state keeps the training bank and c", table.path)
        return None
    start = time.time()
    model, _, _ = restore_model(run, "best", population_state=False)
    weights = model.weights_sha1()  # before the bank is refilled: the model as the best checkpoint holds it
    process = model.process  # type: ignore[attr-defined]
    encoder = SliceEncoder(model)  # type: ignore[arg-type]
    bank = encoder.volumes(read_split(table, "train"), progress)
    process.fill(bank)
    learned = float(process.shrinkage.numpy())
    val, ks = read_split(table, "val"), [k for k in SEARCH_KS if k <= table.num_poses]

    def score(shrinkage: float) -> float:
        process.set_shrinkage(shrinkage)
        return float(np.mean([slice_scores(decoded_mean(model, images, evenly_spread(k, len(images))), images).ssim.mean()
                              for images in val for k in ks]))

    chosen, grid = grid_search([{"shrinkage": c} for c in sorted({learned, *SHRINKAGES})], score, "population c (val)", progress)
    fitted_to = {**split_fingerprint(table), "checkpoint_step": step, "flow_weights_sha1": encoder.fingerprint()}
    search = StoredSearch(run.file(RunDir.POPULATION_SEARCH), "population shrinkage", fitted_to, _check_chosen).store(
        chosen, grid, learned_shrinkage=learned, ks=ks, table=table.path, seconds=round(time.time() - start, 1))
    write_population_state(run, bank, chosen["shrinkage"], step, weights)
    logger.info("population state of step %d: bank of %d train volumes encoded again, c = %g chosen on val "
                "(SSIM %.4f; learned c = %.3f: %.4f), %.0f s", step, len(bank), chosen["shrinkage"], chosen["val_ssim"],
                learned, next(g["val_ssim"] for g in grid if g["shrinkage"] == learned), search["seconds"])
    return search
