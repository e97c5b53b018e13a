"""A population process's test-time state, kept in its run directory beside the best checkpoint.

In training the bank holds latents written by many past versions of the flow (on IXI 31 % of its norm
moved by the best step), and the shrinkage c is whatever maximum likelihood drove it to (0.08 on IXI:
the code switched nearly off). For reconstruction both are replaced once training ends
(:func:`bruno.reconstruction.population_state.fit_population_state`, which the train command calls): the bank by the train split encoded with the best flow
(pixels at x + ½), c by the value whose decoded mean scores best on the val split. They are stored in
``<run>/population.npz`` (arrays ``bank`` [V, N, D], ``shrinkage``, ``checkpoint_step``; loaded without
pickle, each member CRC-checked) with the search in ``<run>/population.json``, and restored with the
best checkpoint by :func:`apply_population_state`, which refuses a file of another checkpoint or shape.
"""
from __future__ import annotations

import logging
import os
import zipfile
from typing import Optional

import numpy as np

from bruno.errors import RunDirError
from bruno.files import atomic_output
from bruno.processes.population import PopulationProcess
from bruno.runs.run_dir import RunDir

__all__ = ["apply_population_state", "read_population_state", "write_population_state"]

logger = logging.getLogger(__name__)


def write_population_state(run_dir: RunDir, bank: np.ndarray, shrinkage: float, checkpoint_step: int) -> str:
    """Store (atomically, replacing an older one) the bank and c chosen for the best checkpoint ``checkpoint_step``."""
    path = run_dir.file(RunDir.POPULATION_STATE)
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        np.savez(f, bank=np.asarray(bank, np.float32), shrinkage=np.float64(shrinkage), checkpoint_step=np.int64(checkpoint_step))
    return path


def read_population_state(run_dir: RunDir) -> Optional[tuple[np.ndarray, float, int]]:
    """(bank, c, checkpoint step) stored in ``run_dir``, or None where there is none.

    Raises:
        RunDirError: the file is unreadable, truncated or corrupt, or holds other arrays.
    """
    path = run_dir.file(RunDir.POPULATION_STATE)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            bank, shrinkage, step = stored["bank"], stored["shrinkage"], stored["checkpoint_step"]
        if bank.ndim != 3 or shrinkage.shape or step.shape or not (np.all(np.isfinite(bank)) and float(shrinkage) > 0):
            raise ValueError(f"bank {bank.shape}, shrinkage {shrinkage}, checkpoint_step {step}: expected a finite "
                             "[V, N, D] bank, a scalar c > 0 and a scalar step")
        return bank, float(shrinkage), int(step)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise RunDirError(f"{path}: not a readable population state ({type(err).__name__}: {err}); delete it and run "
                          "`scripts/train.py CONFIG --run-dir RUN --resume` to make it again") from None


def apply_population_state(process: PopulationProcess, run_dir: RunDir, checkpoint_step: int) -> None:
    """Put the stored test-time bank and c into ``process`` (restored from the best checkpoint ``checkpoint_step``);
    where the run has none yet, leave the trained ones (with a warning).

    Raises:
        RunDirError: as :func:`read_population_state`, or the file belongs to another checkpoint or model.
    """
    state = read_population_state(run_dir)
    if state is None:
        logger.warning("%s: no %s: the bank holds the training latents and c the learned %.3f; "
                       "`scripts/train.py CONFIG --run-dir %s --resume` makes the test-time state",
                       run_dir.path, RunDir.POPULATION_STATE, float(process.shrinkage.numpy()), run_dir.path)
        return
    bank, shrinkage, step = state
    path = run_dir.file(RunDir.POPULATION_STATE)
    if step != checkpoint_step:
        raise RunDirError(f"{path}: made for the best checkpoint of step {step}, but the best checkpoint is step "
                          f"{checkpoint_step}; delete it and run `scripts/train.py CONFIG --run-dir RUN --resume`")
    expected = tuple(process.population_bank.value().shape)
    if bank.shape != expected:
        raise RunDirError(f"{path}: bank of shape {bank.shape}, the checkpoint's is {expected}")
    process.population_bank.assign(bank)
    process.set_shrinkage(shrinkage)
