"""Step 0 of a process that starts from the train split's latents (after the flow's init or warm start).

A latent factor process (SPEC §9.3) is initialised by a PCA of them; a population process (SPEC §9.4) takes
them as its bank, whose rows are the train split's volumes in table order (:func:`bank_rows`). The latents are
dequantised by uniform noise drawn from the run's seed, as in training.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.models import SequenceModel
from bruno.models.encoder import SliceEncoder

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
    """Start ``model``'s process from the train split's latents where it asks for them (``train_latents_needed``).

    Args:
        fresh: the flow was initialised here, not copied from a trained run (the latent factor init then also
            resets the kernel).

    Raises:
        DataFileError: fewer train volumes in ``table`` than the process needs.
    """
    process = getattr(model, "process", None) if model.has_process else None
    if process is None or not process.train_latents_needed:
        return
    found = len(table.volumes_in("train"))
    if found < process.train_latents_needed:
        raise DataFileError(f"{table.path}: model.process needs >= {process.train_latents_needed} train volumes, found {found}")
    volumes = read_split(table, "train")
    latents = SliceEncoder(model).volumes(volumes, progress, np.random.default_rng(seed))  # type: ignore[arg-type]
    process.start_from_latents(latents, val_loss, fresh)
