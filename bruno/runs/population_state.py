"""A population process's test-time state, kept in its run directory beside the best checkpoint.

In training the bank holds latents written by many past versions of the flow (on IXI 31 % of its norm
moved by the best step), and the shrinkage c is whatever maximum likelihood drove it to (0.08 on IXI:
the code switched nearly off). For reconstruction both are replaced once training ends
(:func:`bruno.reconstruction.population_state.fit_population_state`, which the train command calls): the bank by the train split encoded with the best flow
(pixels at x + ½), c by the value whose decoded mean scores best on the val split. They are stored in
``<run>/population.npz`` (arrays ``bank`` [V, N, D], ``shrinkage``, ``checkpoint_step``, ``model_weights_sha1``;
loaded without pickle, each member CRC-checked) with the search in ``<run>/population.json``, and restored with the
best checkpoint by :func:`apply_population_state`, which refuses a file made for another checkpoint (by its step and
by the SHA-1 of the weights it was made for: a step number alone lets another run's file in) or shape.
"""
from __future__ import annotations

import logging
import os
import re
import zipfile
from typing import NamedTuple, Optional

import numpy as np

from bruno.errors import RunDirError
from bruno.files import atomic_output
from bruno.processes.population import PopulationProcess
from bruno.runs.run_dir import RunDir

__all__ = ["MAX_SHRINKAGE", "PopulationState", "apply_population_state", "read_population_state", "write_population_state"]

MAX_SHRINKAGE = 1e6  # c is chosen from a handful of values around 1 (bruno.reconstruction.population_state.SHRINKAGES)

logger = logging.getLogger(__name__)


MEMBERS = ("bank", "shrinkage", "checkpoint_step", "model_weights_sha1")


def write_population_state(run_dir: RunDir, bank: np.ndarray, shrinkage: float, checkpoint_step: int, weights_sha1: str) -> str:
    """Store (atomically, replacing an older one) the bank and c chosen for the best checkpoint ``checkpoint_step``,
    whose model as restored (its training bank and c) has the fingerprint ``weights_sha1``."""
    path = run_dir.file(RunDir.POPULATION_STATE)
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        np.savez(f, bank=np.asarray(bank, np.float32), shrinkage=np.float64(shrinkage), checkpoint_step=np.int64(checkpoint_step),
                 model_weights_sha1=np.str_(weights_sha1))
    return path


class PopulationState(NamedTuple):
    """A stored test-time state: the bank [V, N, D] (float32), c, and what it was made for (``weights_sha1`` is None
    in files written before it was stored)."""

    bank: np.ndarray
    shrinkage: float
    checkpoint_step: int
    weights_sha1: Optional[str]


def read_population_state(run_dir: RunDir) -> Optional[PopulationState]:
    """The state stored in ``run_dir``, or None where there is none.

    Raises:
        RunDirError: the file is unreadable, truncated or corrupt, or holds other members, types or values than
            :func:`write_population_state` writes (a real float bank finite as float32, 0 < c < 10⁶, an integer step,
            a 40-digit hex fingerprint).
    """
    path = run_dir.file(RunDir.POPULATION_STATE)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            members = set(stored.files)
            if not {"bank", "shrinkage", "checkpoint_step"} <= members <= set(MEMBERS):
                raise ValueError(f"members {sorted(members)}, expected {', '.join(MEMBERS)}")
            bank, shrinkage, step = stored["bank"], stored["shrinkage"], stored["checkpoint_step"]
            sha1 = str(stored["model_weights_sha1"]) if "model_weights_sha1" in members else None
        if bank.dtype.kind != "f" or bank.ndim != 3 or not np.all(np.abs(bank) <= np.finfo(np.float32).max):  # NaN too
            raise ValueError(f"bank {bank.dtype} {bank.shape}: expected real floats [V, N, D], finite as float32")
        if shrinkage.shape or shrinkage.dtype.kind != "f" or not 0 < float(shrinkage) < MAX_SHRINKAGE:
            raise ValueError(f"shrinkage {shrinkage}: expected one real number in (0, {MAX_SHRINKAGE:g})")
        if step.shape or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(f"checkpoint_step {step}: expected one integer >= 0")
        if sha1 is not None and not re.fullmatch(r"[0-9a-f]{40}", sha1):
            raise ValueError(f"model_weights_sha1 {sha1[:50]!r}: expected 40 hex digits")
        return PopulationState(bank.astype(np.float32), float(shrinkage), int(step), sha1)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise RunDirError(f"{path}: not a readable population state ({type(err).__name__}: {err})") from None


def apply_population_state(process: PopulationProcess, run_dir: RunDir, checkpoint_step: int, weights_sha1: str) -> None:
    """Put the stored test-time bank and c into ``process`` (restored from the best checkpoint ``checkpoint_step``, its
    model's fingerprint ``weights_sha1``: :meth:`~bruno.models.SequenceModel.weights_sha1`); where the run has none
    yet, leave the trained ones (with a warning).

    Raises:
        RunDirError: as :func:`read_population_state`, or the file belongs to another checkpoint or model.
    """
    again = "delete it and run `scripts/train.py CONFIG --run-dir RUN --resume` to make it again"
    try:
        state = read_population_state(run_dir)
    except RunDirError as err:
        raise RunDirError(f"{err}; {again}") from None
    if state is None:
        logger.warning("%s: no %s: the bank holds the training latents and c the learned %.3f; "
                       "`scripts/train.py CONFIG --run-dir %s --resume` makes the test-time state",
                       run_dir.path, RunDir.POPULATION_STATE, float(process.shrinkage.numpy()), run_dir.path)
        return
    bank, shrinkage, step, sha1 = state
    path = run_dir.file(RunDir.POPULATION_STATE)
    if step != checkpoint_step:
        raise RunDirError(f"{path}: made for the best checkpoint of step {step}, but the best checkpoint is step "
                          f"{checkpoint_step}; {again}")
    if sha1 is not None and sha1 != weights_sha1:
        raise RunDirError(f"{path}: made for other weights than this run's best checkpoint (another run's file?); {again}")
    expected = tuple(process.population_bank.value().shape)
    if bank.shape != expected:
        raise RunDirError(f"{path}: bank of shape {bank.shape}, the checkpoint's is {expected}")
    process.population_bank.assign(bank)
    process.set_shrinkage(shrinkage)
