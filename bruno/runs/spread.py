"""A run's test-time spread: the temperature τ(k) of its predictive, stored in ``<run>/spread.json``.

The search that chooses it (on the val split, by CRPS, once training ends) is
:func:`bruno.reconstruction.spread.fit_spread`; this module only ties the stored choice to the model it was chosen for
(the checkpoint step and the SHA-1 of every weight, a population's bank and c included) and sets it on a restored
model (:func:`apply_spread`, called by :func:`~bruno.runs.restore_model`). A choice made for other weights is refused.
"""
from __future__ import annotations

from bruno.files import StoredSearch
from bruno.models import SequenceModel
from bruno.models.bruno import check_temperatures
from bruno.runs.run_dir import RunDir

__all__ = ["SPREAD_WHAT", "apply_spread", "spread_search"]

SPREAD_WHAT = "test-time spread"


def spread_search(run: RunDir, model: SequenceModel, checkpoint_step: int, **fitted_to: str) -> StoredSearch:
    """The stored search of ``run``'s spread, as it must be for ``model`` restored from ``checkpoint_step``."""
    return StoredSearch(run.file(RunDir.SPREAD), SPREAD_WHAT, {**fitted_to, "checkpoint_step": checkpoint_step,
                                                               "model_weights_sha1": model.weights_sha1()}, check_temperatures)


def apply_spread(model: SequenceModel, run: RunDir, checkpoint_step: int) -> None:
    """Set the stored τ(k) on ``model`` (restored from the best checkpoint ``checkpoint_step``, its test-time population
    state applied); nothing where the run has none (τ = 1).

    Raises:
        DataFileError: unreadable, out of range, or chosen for another checkpoint or other weights.
    """
    record = spread_search(run, model, checkpoint_step).load()
    if record is not None:
        model.set_temperatures({int(k): float(tau) for k, tau in record["chosen"].items()})  # type: ignore[attr-defined]
