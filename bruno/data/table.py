"""The HDF5 slice-pose table: layout, writing, reading, and the subject-level split.

Layout (``FORMAT_VERSION`` 1; S slices, V volumes, N poses, H = W = image size)::

    /images                     uint8   [S, H, W]   one chunk per slice, gzip
    /volume                     int32   [S]         row of the volume table
    /pose                       int32   [S]         0 .. N-1
    /volumes/source             str     [V]         file path (or phantom://seed/index)
    /volumes/subject            str     [V]         subject id
    /volumes/split              str     [V]         "train" | "val" | "test"
    /volumes/original_shape     int32   [V, 3]      shape as stored in the source file
    /volumes/spacing            float64 [V, 3]      voxel size (mm) of the canonical volume
    /volumes/affine             float64 [V, 4, 4]   voxel → world (RAS+, mm) of the slab array [W, H, N]
    /volumes/slab               int32   [V, 2]      [start, stop) slice range in the canonical volume
    /volumes/intensity          float64 [V, 2]      input intensities mapped to 0 and 255
    /skipped/source, /reason    str     [K]         files skipped with --skip-bad
    attrs: format_version, num_poses, image_size, slab_fraction, data (the resolved data: section, YAML)

Only what describes the data is stored, and read leniently (keys this version does not know are
ignored), so renaming a model or train key never makes a table unreadable. Version 1 files (which
stored the whole config as ``config``) still open: only their data section is read.

Slices are stored volume by volume in pose order, so the rows of volume v are
``v*N .. v*N + N - 1``. See :mod:`bruno.data.slices` for the image orientation.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Optional

import h5py
import numpy as np
import yaml

from bruno.config import Config, DataConfig, SplitConfig, data_to_yaml, parse_data_section
from bruno.data.nifti import Volume
from bruno.data.slices import SlabSlices
from bruno.errors import DataFileError, DiskFullError, OutputPathError
from bruno.files import atomic_output, room_to_write

__all__ = ["FORMAT_VERSION", "SPLITS", "SliceTable", "SliceTableWriter", "assign_splits"]

FORMAT_VERSION = 2
HDF5_MARGIN_BYTES = 1 << 20  # room kept for HDF5's metadata and the close (SliceTableWriter._reserve)
_READABLE_VERSIONS = (1, 2)  # 1: the whole config in attrs['config']
SPLITS = ("train", "val", "test")
_STR = h5py.string_dtype("utf-8")
_NUMERIC_COLUMNS: dict[str, tuple[type, tuple[int, ...]]] = {
    "original_shape": (np.int32, (3,)),
    "spacing": (np.float64, (3,)),
    "affine": (np.float64, (4, 4)),
    "slab": (np.int32, (2,)),
    "intensity": (np.float64, (2,)),
}


def assign_splits(subjects: Sequence[str], split: SplitConfig) -> list[str]:
    """Assign each entry of ``subjects`` (one per volume) to a split, by subject.

    Unique subjects are sorted, shuffled with ``split.seed`` and cut by the fractions (rounded;
    a split with a positive fraction gets at least one subject when there are enough subjects),
    so no subject is in two splits.

    Returns:
        The split name of each volume, in the order of ``subjects``.
    """
    unique = sorted(set(subjects))
    order = np.random.default_rng(split.seed).permutation(len(unique))
    counts = {name: int(round(getattr(split, name) * len(unique))) for name in ("val", "test")}
    for name in ("val", "test"):
        if getattr(split, name) > 0 and counts[name] == 0 and len(unique) - sum(counts.values()) > 1:
            counts[name] = 1
    while sum(counts.values()) >= len(unique) and sum(counts.values()) > 0:  # keep one training subject
        largest = max(counts, key=counts.__getitem__)
        counts[largest] -= 1
    labels = ["test"] * counts["test"] + ["val"] * counts["val"]
    labels += ["train"] * (len(unique) - len(labels))
    by_subject = {unique[i]: labels[rank] for rank, i in enumerate(order)}
    return [by_subject[s] for s in subjects]


class SliceTableWriter:
    """Write a slice table atomically: to a temporary file beside ``path``, renamed on success.

    Use as a context manager; if the block raises, the temporary file is removed and ``path`` is
    untouched.
    """

    def __init__(self, path: str, config: Config, overwrite: bool = False) -> None:
        self.path, self.config = path, config
        self._cleanup = contextlib.ExitStack()
        tmp = self._cleanup.enter_context(atomic_output(path, overwrite))
        try:
            self._file = h5py.File(tmp, "w-")
        except OSError as err:
            self._cleanup.close()
            raise OutputPathError(f"{path}: cannot write ({err})") from None
        self._tmp = tmp
        self._rows: dict[str, list[Any]] = {k: [] for k in ("source", "subject", *_NUMERIC_COLUMNS)}
        self._skipped: list[tuple[str, str]] = []
        size, poses = config.data.image_size, config.data.num_poses
        self._images = self._file.create_dataset(
            "images", shape=(0, size, size), maxshape=(None, size, size), dtype=np.uint8,
            chunks=(1, size, size), compression="gzip", compression_opts=4,
        )
        self._poses = poses

    def __enter__(self) -> SliceTableWriter:
        return self

    def add(self, volume: Volume, slices: SlabSlices) -> None:
        """Append the N slices of one volume; only its metadata is kept in memory."""
        self._reserve(slices.images.nbytes)
        start = self._images.shape[0]
        self._images.resize(start + len(slices.images), axis=0)
        self._images[start:] = slices.images
        row = {
            "source": volume.source if volume.source.startswith("phantom://") else os.path.abspath(volume.source),
            "subject": volume.subject,
            "original_shape": volume.original_shape[:3],
            "spacing": volume.spacing,
            "affine": slices.affine,
            "slab": (slices.slab_start, slices.slab_stop),
            "intensity": (slices.intensity_low, slices.intensity_high),
        }
        for key, value in row.items():
            self._rows[key].append(value)

    def skip(self, source: str, reason: str) -> None:
        """Record a file that was skipped, with the reason."""
        self._skipped.append((source, reason))

    @property
    def num_volumes(self) -> int:
        return len(self._rows["source"])

    def _reserve(self, nbytes: int) -> None:
        """Refuse to write ``nbytes`` more (uncompressed) unless the disk and the file-size limit leave room for them,
        for HDF5's metadata and for closing the file: HDF5 does not survive a failed write (a segmentation fault in
        its clean-up), so a full disk is found before it is hit.

        Raises:
            DiskFullError: naming the table; the temporary file is removed by the caller's exit.
        """
        written = self._images.shape[0] * self._images.shape[1] * self._images.shape[2]
        needed = nbytes + HDF5_MARGIN_BYTES + written // 50
        room = room_to_write(self._tmp)
        if room < needed:
            raise DiskFullError(f"{self.path}: no space to write the table ({room / 2**20:.2f} MiB left on the disk or under "
                                f"the file-size limit, {needed / 2**20:.2f} MiB needed for the next volume); "
                                f"{'the table there before is kept' if os.path.exists(self.path) else 'nothing was written'}")

    def _finish(self) -> None:
        f, data = self._file, self.config.data
        rows = self._rows
        count = len(rows["source"])
        self._reserve(count * 1024)  # the per-volume rows and their index
        f["volume"] = np.repeat(np.arange(count, dtype=np.int32), self._poses)
        f["pose"] = np.tile(np.arange(self._poses, dtype=np.int32), count)
        table = f.create_group("volumes")
        rows["split"] = assign_splits(rows["subject"], data.split)
        for key in ("source", "subject", "split"):
            table[key] = np.array(rows[key], dtype=object).astype(_STR)
        for key, (dtype, shape) in _NUMERIC_COLUMNS.items():
            table[key] = np.array(rows[key], dtype=dtype).reshape((count,) + shape)
        skipped = f.create_group("skipped")
        skipped["source"] = np.array([s for s, _ in self._skipped], dtype=object).astype(_STR)
        skipped["reason"] = np.array([r for _, r in self._skipped], dtype=object).astype(_STR)
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["num_poses"] = data.num_poses
        f.attrs["image_size"] = data.image_size
        f.attrs["slab_fraction"] = data.slab_fraction
        f.attrs["data"] = data_to_yaml(data)

    def __exit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        except BaseException as err:  # a failure while finishing must not publish the file either
            exc_type, exc, tb = type(err), err, err.__traceback__
            raise
        finally:
            self._file.close()
            self._cleanup.__exit__(exc_type, exc, tb)


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in dataset[()]]


@dataclass(frozen=True)
class VolumeInfo:
    """One row of the per-volume table (see the module docstring for units)."""

    index: int
    source: str
    subject: str
    split: str
    original_shape: tuple[int, int, int]
    spacing: np.ndarray
    affine: np.ndarray
    slab: tuple[int, int]
    intensity: tuple[float, float]


class SliceTable:
    """Read access to a slice table; images are read on demand, never all at once.

    Args:
        path: the HDF5 file.

    Raises:
        DataFileError: missing, unreadable, or not of this layout.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.isfile(path):
            raise DataFileError(f"{path}: no such file (run scripts/preprocess.py first)")
        try:
            with h5py.File(path, "r") as f:
                version = int(f.attrs.get("format_version", -1))
                if version not in _READABLE_VERSIONS:
                    raise DataFileError(f"{path}: format_version={version}, expected one of {_READABLE_VERSIONS}")
                self.num_poses = int(f.attrs["num_poses"])
                self.image_size = int(f.attrs["image_size"])
                if version == 1:
                    section = (yaml.safe_load(f.attrs["config"]) or {}).get("data", {})
                else:
                    section = yaml.safe_load(f.attrs["data"])
                self.data: DataConfig = parse_data_section(section, f"{path}:data")
                volume_column, pose_column = f["volume"][()], f["pose"][()]
                num_slices, num_poses_listed = volume_column.shape[0], pose_column.shape[0]
                table = f["volumes"]
                self.splits = np.array(_strings(table["split"]))
                self._table = {
                    "source": _strings(table["source"]),
                    "subject": _strings(table["subject"]),
                    "original_shape": table["original_shape"][()],
                    "spacing": table["spacing"][()],
                    "affine": table["affine"][()],
                    "slab": table["slab"][()],
                    "intensity": table["intensity"][()],
                }
                self.skipped = list(zip(_strings(f["skipped/source"]), _strings(f["skipped/reason"])))
                images = f["images"]
                shape, dtype = images.shape, images.dtype
        except DataFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, yaml.YAMLError) as err:
            raise DataFileError(f"{path}: not a readable slice table ({type(err).__name__}: {err})") from None
        expected = (num_slices, self.image_size, self.image_size)
        if shape != expected or dtype != np.uint8 or num_poses_listed != num_slices:
            raise DataFileError(f"{path}: images {shape} {dtype}, expected uint8 {expected}")
        if num_slices != len(self.splits) * self.num_poses:
            raise DataFileError(f"{path}: {num_slices} slices for {len(self.splits)} volumes of {self.num_poses} poses")
        self._check_columns(volume_column, pose_column)

    def _check_columns(self, volume: np.ndarray, pose: np.ndarray) -> None:
        """The slice columns must say what the layout does (the rows of volume v are v·N .. v·N + N − 1, in pose
        order: reading relies on it), each split one of :data:`SPLITS`, each per-volume column one row a volume."""
        layout = {"volume": (volume, np.repeat(np.arange(self.num_volumes), self.num_poses)),
                  "pose": (pose, np.tile(np.arange(self.num_poses), self.num_volumes))}
        for name, (column, expected) in layout.items():
            bad = np.flatnonzero(column != expected)
            if bad.size:
                raise DataFileError(f"{self.path}: /{name}[{bad[0]}] = {column[bad[0]]}, expected {expected[bad[0]]} "
                                    f"(slices stored volume by volume in pose order 0..{self.num_poses - 1})")
        unknown = sorted(set(self.splits.tolist()) - set(SPLITS))
        if unknown:
            raise DataFileError(f"{self.path}: /volumes/split holds {unknown[0]!r}, expected one of {', '.join(SPLITS)}")
        for name, values in self._table.items():
            expected_shape = (self.num_volumes,) + _NUMERIC_COLUMNS.get(name, (np.float64, ()))[1]
            if np.shape(values) != expected_shape:
                raise DataFileError(f"{self.path}: /volumes/{name} has shape {np.shape(values)}, expected {expected_shape}")

    @property
    def num_volumes(self) -> int:
        return len(self.splits)

    def volumes_in(self, split: str) -> np.ndarray:
        """int64 [V_split]: indices of the volumes of one split."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}, expected one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.splits == split)

    def info(self, index: int) -> VolumeInfo:
        """The per-volume table row ``index``."""
        t = self._table
        shape = t["original_shape"][index]
        return VolumeInfo(
            index, t["source"][index], t["subject"][index], str(self.splits[index]),
            (int(shape[0]), int(shape[1]), int(shape[2])), t["spacing"][index], t["affine"][index],
            (int(t["slab"][index][0]), int(t["slab"][index][1])),
            (float(t["intensity"][index][0]), float(t["intensity"][index][1])),
        )

    def rows_of(self, index: int) -> np.ndarray:
        """int64 [N]: the slice rows of volume ``index`` in pose order."""
        return np.arange(index * self.num_poses, (index + 1) * self.num_poses)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
        """Keep the file open for many reads: ``with table.reader() as read: images = read(rows)``.

        Raises:
            DataFileError: the file cannot be opened any more, or a chunk of it is corrupt.
        """
        try:
            f = h5py.File(self.path, "r")
        except OSError as err:
            raise DataFileError(f"{self.path}: cannot open the slice table ({err})") from None
        with f:
            images = f["images"]

            def read(rows: np.ndarray) -> np.ndarray:
                unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
                try:
                    return images[unique][inverse.reshape(np.shape(rows))]
                except OSError as err:  # e.g. a chunk that no longer decompresses
                    raise DataFileError(f"{self.path}: corrupt image data in slice rows {unique[0]}..{unique[-1]} ({err}); "
                                        f"preprocess the data again") from None

            yield read

    def read(self, rows: np.ndarray) -> np.ndarray:
        """uint8 [*rows.shape, H, W]: the images at ``rows`` (any order, repeats allowed)."""
        with self.reader() as read:
            return read(rows)

    def __repr__(self) -> str:
        counts = {s: int((self.splits == s).sum()) for s in SPLITS}
        return (
            f"SliceTable({self.path!r}: {self.num_volumes} volumes {counts}, "
            f"{self.num_poses} poses of {self.image_size}x{self.image_size})"
        )
