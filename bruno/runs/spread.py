"""A run's test-time mean and spread: the blend w(k) of its decoded mean with the classical estimate, stored in
``<run>/blend.json``, and the temperature τ(k) of its predictive, stored in ``<run>/spread.json``.

The searches that choose them (on the val split, once training ends: w by the mean image's SSIM, then τ by the CRPS
of the samples) are :func:`bruno.reconstruction.blend.fit_blend` and :func:`bruno.reconstruction.spread.fit_spread`;
this module only ties each stored choice to the model it was chosen for (the checkpoint step and the SHA-1 of every
weight, a population's bank and c included; τ also to the blend it was chosen with) and sets it on a restored model
(:func:`apply_blend`, :func:`apply_spread`, called by :func:`~bruno.runs.restore_model`). A choice made for other
weights is refused.
"""
from __future__ import annotations

from bruno.errors import DataFileError
from bruno.files import StoredSearch
from bruno.models import SequenceModel
from bruno.models.bruno import check_blend, check_temperatures
from bruno.runs.run_dir import RunDir

__all__ = ["BLEND_WHAT", "SPREAD_WHAT", "apply_blend", "apply_spread", "blend_search", "spread_search"]

BLEND_WHAT, SPREAD_WHAT = "test-time blend", "test-time spread"


def blend_search(run: RunDir, model: SequenceModel, checkpoint_step: int, **fitted_to: str) -> StoredSearch:
    """The stored search of ``run``'s blend w(k), as it must be for ``model`` restored from ``checkpoint_step``."""
    return StoredSearch(run.file(RunDir.BLEND), BLEND_WHAT, {**fitted_to, "checkpoint_step": checkpoint_step,
                                                             "model_weights_sha1": model.weights_sha1()}, check_blend)


def spread_search(run: RunDir, model: SequenceModel, checkpoint_step: int, **fitted_to: str) -> StoredSearch:
    """The stored search of ``run``'s spread, as it must be for ``model`` restored from ``checkpoint_step`` with the
    blend it has now (a spread chosen under another blend is refused)."""
    blend = {str(k): w for k, w in getattr(model, "blend", {}).items()}
    return StoredSearch(run.file(RunDir.SPREAD), SPREAD_WHAT, {**fitted_to, "checkpoint_step": checkpoint_step, "blend": blend,
                                                               "model_weights_sha1": model.weights_sha1()}, check_temperatures)


def apply_blend(model: SequenceModel, run: RunDir, checkpoint_step: int) -> None:
    """Set the stored w(k) on ``model`` (restored from the best checkpoint ``checkpoint_step``, its test-time population
    state applied); nothing where the run has none (w = 1: the decoded mean alone).

    Raises:
        DataFileError: unreadable, out of range, chosen for another checkpoint or other weights, or a blend for a flow
            that is not conditioned on the classical estimate.
    """
    search = blend_search(run, model, checkpoint_step)
    record = search.load()
    if record is not None:
        try:
            model.set_blend({int(k): float(w) for k, w in record["chosen"].items()})  # type: ignore[attr-defined]
        except ValueError as err:
            raise DataFileError(f"{search.path}: {err}; delete it to search again") from None


def apply_spread(model: SequenceModel, run: RunDir, checkpoint_step: int) -> None:
    """Set the stored τ(k) on ``model`` (restored from the best checkpoint ``checkpoint_step``, its test-time population
    state and blend applied); nothing where the run has none (τ = 1).

    Raises:
        DataFileError: unreadable, out of range, or chosen for another checkpoint, other weights or another blend.
    """
    record = spread_search(run, model, checkpoint_step).load()
    if record is not None:
        model.set_temperatures({int(k): float(tau) for k, tau in record["chosen"].items()})  # type: ignore[attr-defined]
