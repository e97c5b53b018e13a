"""Test subjects, from a split of the slice table or from NIfTI files never seen in training.

Files are preprocessed exactly as the training data (their slab and intensity window from every
slice: the paper's evaluation protocol), so both sources give the same kind of volume.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple, Optional

import numpy as np

from bruno.config import DataConfig
from bruno.data.nifti import find_inputs, load_nifti
from bruno.data.slices import extract_slices
from bruno.data.table import SliceTable, VolumeInfo
from bruno.errors import ConfigError, VolumeError

__all__ = ["Subject", "load_subjects", "pose_spacings", "read_split"]

logger = logging.getLogger(__name__)


class Subject(NamedTuple):
    """One test volume: a name, its pose-ordered slices uint8 [N, H, W], the slab's voxel → world
    affine, and where they came from (its slice-table row, or for a file a row made the same way; the
    acquired-slices protocol reads the file, the slab and the intensity window there)."""

    name: str
    images: np.ndarray
    affine: Optional[np.ndarray] = None
    info: Optional[VolumeInfo] = None


def read_split(table: SliceTable, split: str, max_volumes: Optional[int] = None) -> np.ndarray:
    """uint8 [V, N, H, W]: the first ``max_volumes`` volumes of one split (all by default), on the 0..255 scale."""
    volumes = table.volumes_in(split)[:max_volumes]
    out = np.empty((len(volumes), table.num_poses, table.image_size, table.image_size), np.uint8)
    with table.reader() as read:
        for i, v in enumerate(volumes):
            out[i] = read(table.rows_of(int(v)))
    return out


def pose_spacings(table: SliceTable, split: str = "train") -> np.ndarray:
    """The pose spacing (mm) of every volume of one split: float64 [V]."""
    return np.array([float(np.linalg.norm(table.info(int(i)).affine[:3, 2])) for i in table.volumes_in(split)])


def _check_distinct(paths: Sequence[str]) -> None:
    """Refuse two inputs that are one scan: the same file (a link to it) or byte-identical copies, each of which would
    count as a subject of its own (their paired standard errors shrink to nothing).

    Raises:
        VolumeError: naming both files.
    """
    seen: dict[tuple[str, str], str] = {}
    for path in paths:
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        keys = ("the same file", os.path.realpath(path)), ("a byte-identical copy of the scan", digest.hexdigest())
        for key in keys:
            if key in seen:
                raise VolumeError(f"{path}: {key[0]} as {seen[key]}, expected each scan once")
        seen.update((key, path) for key in keys)


def load_subjects(table: SliceTable, data: DataConfig, split: str = "test", files: Optional[str] = None,
                  max_subjects: Optional[int] = None) -> list[Subject]:
    """The first ``max_subjects`` volumes of ``split``, or of the NIfTI folder/glob/file ``files``.

    Raises:
        ConfigError: the split has no volumes, or ``max_subjects`` < 1.
        VolumeError: no file matches, or a file is unusable.
    """
    if max_subjects is not None and max_subjects < 1:
        raise ConfigError(f"--max-subjects {max_subjects}: expected an integer >= 1")
    if files is not None:
        subjects = []
        paths = find_inputs(files)[:max_subjects]
        _check_distinct(paths)
        for path in paths:
            volume = load_nifti(path, data.subject_pattern)
            slices = extract_slices(volume, data)
            info = VolumeInfo(-1, os.path.abspath(path), volume.subject, "input", volume.original_shape[:3], volume.spacing,
                              slices.affine, (slices.slab_start, slices.slab_stop), (slices.intensity_low, slices.intensity_high))
            subjects.append(Subject(volume.subject, slices.images, slices.affine, info))
        repeated = sorted({s.name for s in subjects if sum(t.name == s.name for t in subjects) > 1})
        if repeated:
            logger.warning("%s: subject(s) %s scanned more than once: their scores are not independent", files,
                           ", ".join(repeated))
        return subjects
    indices = table.volumes_in(split)[:max_subjects]
    if len(indices) == 0:
        raise ConfigError(f"{table.path}: split {split!r} has no volumes")
    infos = [table.info(int(i)) for i in indices]
    return [Subject(info.subject, images, info.affine, info) for info, images in zip(infos, read_split(table, split, max_subjects))]
