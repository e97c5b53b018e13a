"""Step 0 of a process that starts from the train split's latents (after the flow's init or warm start).

A latent factor process (SPEC §9.3) is initialised by a PCA of them; a population process (SPEC §9.4) takes
them as its bank, whose rows are the train split's volumes in table order (:func:`bank_rows`). The latents are
dequantised by uniform noise drawn from the run's seed, as in training.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.models import SequenceModel
from bruno.models.encoder import SliceEncoder
from bruno.processes import LatentFactorProcess, PopulationProcess
from bruno.processes.latent_factor_init import initialize_latent_factors
from bruno.processes.population import MIN_POPULATION

__all__ = ["bank_rows", "initialize_process"]

logger = logging.getLogger(__name__)


def bank_rows(table: SliceTable) -> np.ndarray:
    """int32 [table volumes]: each volume's row in a population bank (its index in the train split), −1 outside it."""
    rows = np.full(table.num_volumes, -1, np.int32)
    train = table.volumes_in("train")
    rows[train] = np.arange(len(train))
    return rows


def initialize_process(model: SequenceModel, table: SliceTable, seed: int, val_loss: Callable[[], float],
                       fresh: bool, progress: bool) -> None:
    """Initialise ``model``'s process from the train split's latents if it is one that needs them (else nothing).

    Args:
        fresh: the flow was initialised here, not copied from a trained run (the latent factor init then also
            resets the kernel).

    Raises:
        DataFileError: too few train volumes in ``table`` (2 for latent factors, :data:`MIN_POPULATION` for a bank).
    """
    process = getattr(model, "process", None)
    if not isinstance(process, (LatentFactorProcess, PopulationProcess)):
        return
    minimum = MIN_POPULATION if isinstance(process, PopulationProcess) else 2
    found = len(table.volumes_in("train"))
    if found < minimum:
        raise DataFileError(f"{table.path}: model.process needs >= {minimum} train volumes, found {found}")
    latents = SliceEncoder(model).volumes(table, "train", progress, np.random.default_rng(seed))  # type: ignore[arg-type]
    if isinstance(process, PopulationProcess):
        process.fill(latents)
        logger.info("step 0: population bank filled with the latents of %d train volumes", found)
    else:
        initialize_latent_factors(process, latents, val_loss, fresh)
