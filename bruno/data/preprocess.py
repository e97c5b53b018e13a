"""Preprocessing: volumes (NIfTI files or the phantom population) → one HDF5 slice-pose table."""
from __future__ import annotations

import logging
import os
from functools import partial
from typing import Callable

from tqdm import tqdm

from bruno.config import Config
from bruno.data.nifti import Volume, find_inputs, load_nifti
from bruno.data.phantom import phantom_subject
from bruno.data.slices import extract_slices
from bruno.data.table import SliceTable, SliceTableWriter
from bruno.errors import ConfigError, DataFileError, VolumeError
from bruno.files import check_output_path

__all__ = ["build_slice_table", "load_slice_table"]

logger = logging.getLogger(__name__)


def _volume_loaders(config: Config) -> list[tuple[str, Callable[[], Volume]]]:
    """(name, loader) per input volume; loading is deferred so one bad file can be skipped."""
    data = config.data
    if data.source == "phantom":
        return [(f"phantom subject {i}", partial(phantom_subject, i, data.phantom)) for i in range(data.phantom.num_subjects)]
    if data.input is None:
        raise ConfigError("data.input is not set: give the config an input folder or glob, or pass --input")
    return [(path, partial(load_nifti, path, data.subject_pattern)) for path in find_inputs(data.input)]


def build_slice_table(
    config: Config, overwrite: bool = False, skip_bad: bool = False, progress: bool = True
) -> SliceTable:
    """Convert every input volume of ``config.data`` and write ``config.data.output``.

    Each volume is loaded, reoriented to RAS+, cut to the middle slab, resampled to N poses,
    resized and mapped to uint8 (:func:`bruno.data.slices.extract_slices`); volumes are then
    split by subject. The file appears only when complete.

    Args:
        config: the experiment config; its ``data`` section says what to read and where to write.
        overwrite: replace an existing output file.
        skip_bad: skip unusable volumes with a warning (recorded in ``/skipped``) instead of stopping.
        progress: show a progress bar over volumes.

    Returns:
        The written table, opened for reading.

    Raises:
        ConfigError: no input is configured.
        VolumeError: no input matches, or an input is unusable (and ``skip_bad`` is false), or
            every input was skipped.
        OutputPathError: the output cannot be written, or exists and ``overwrite`` is false.
    """
    output = config.data.output
    check_output_path(output, overwrite)
    loaders = _volume_loaders(config)
    with SliceTableWriter(output, config, overwrite=overwrite) as writer:
        for name, load in tqdm(loaders, desc="volumes", unit="vol", disable=not progress):
            try:
                volume = load()
                writer.add(volume, extract_slices(volume, config.data))
            except VolumeError as err:
                if not skip_bad:
                    raise
                logger.warning("skipping %s", err)
                writer.skip(name, str(err))
        if writer.num_volumes == 0:
            raise VolumeError(f"{config.data.input}: all {len(loaders)} input files were unusable, nothing to write")
    return SliceTable(output)


def load_slice_table(config: Config, progress: bool = True, build: bool = True) -> SliceTable:
    """Open the experiment's HDF5 table; build it first if it is the (missing) phantom table and ``build`` (inference
    passes False: it never writes a table).

    Raises:
        DataFileError: the file is missing (for user data, or without ``build``) or does not match the config.
    """
    data = config.data
    if not os.path.exists(data.output):
        if not build:
            raise DataFileError(f"{data.output}: no such file (the run's training table; a reconstruction reads tables, "
                                "it never makes one: train or preprocess first, or run from the folder the run was trained in)")
        if data.source != "phantom":
            raise DataFileError(f"{data.output}: no such file; preprocess the data first "
                                f"(python scripts/preprocess.py <config> --input <your NIfTI folder>)")
        logger.info("%s is missing: generating the phantom population", data.output)
        return build_slice_table(config, progress=progress)
    table = SliceTable(data.output)
    if (table.image_size, table.num_poses) != (data.image_size, data.num_poses):
        raise DataFileError(
            f"{data.output}: holds {table.num_poses} poses of {table.image_size}x{table.image_size}, but the config asks "
            f"for {data.num_poses} of {data.image_size}x{data.image_size} (preprocess again with --overwrite)")
    stored = table.data
    for key in _DESCRIBING_KEYS + (("phantom",) if data.source == "phantom" else ()):
        if getattr(stored, key) != getattr(data, key):
            raise DataFileError(f"{data.output}: was made with data.{key}={getattr(stored, key)!r}, but the config has "
                                f"{getattr(data, key)!r} (preprocess again into another data.output, or fix the config)")
    return table


# what a table's slices are: a config whose data section differs in one of these describes other data
_DESCRIBING_KEYS = ("source", "slab_fraction", "slab_reference", "intensity", "intensity_range")

