"""NIfTI input: finding the user's files, loading them safely, reorienting to RAS+.

Every volume enters the pipeline as a :class:`Volume`: a float32 array in the closest canonical
RAS+ orientation (axis 0: left→right, axis 1: posterior→anterior, axis 2: inferior→superior, so
axial slices lie along the last axis) together with the voxel-to-world affine of that array.
Anything unusable raises :class:`~bruno.errors.VolumeError` naming the file and the reason.
"""
from __future__ import annotations

import glob
import os
import re
from typing import NamedTuple, Optional

import nibabel as nib
import numpy as np

from bruno.errors import VolumeError
from bruno.files import NIFTI_EXTENSIONS

__all__ = ["Volume", "affine_spacing", "find_inputs", "load_nifti", "subject_id", "to_canonical"]



class Volume(NamedTuple):
    """One 3D scan in canonical orientation.

    Attributes:
        source: where it came from (a file path, or ``phantom://...`` for built-in data).
        subject: subject id; all volumes of a subject go to one split.
        data: float32 [X, Y, Z], RAS+ voxel order, axial slices along Z.
        affine: float64 [4, 4], voxel index → world (mm, RAS+) of ``data``.
        original_shape: the shape as stored in the source, before reorientation.
    """

    source: str
    subject: str
    data: np.ndarray
    affine: np.ndarray
    original_shape: tuple[int, ...]

    @property
    def spacing(self) -> np.ndarray:
        """float64 [3]: voxel size in mm along the three array axes."""
        return np.asarray(affine_spacing(self.affine))


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along the three array axes of a voxel → world affine (for a slice stack: W, H, N)."""
    sx, sy, sz = (float(v) for v in nib.affines.voxel_sizes(np.asarray(affine, np.float64)))
    return sx, sy, sz


def find_inputs(pattern: str) -> list[str]:
    """Expand a folder, a glob pattern or a single file into a sorted list of paths.

    A folder yields its ``.nii``/``.nii.gz`` files (not recursive). A glob yields every match, so
    a non-NIfTI file matched by the pattern is reported when it is loaded.

    Raises:
        VolumeError: nothing matches.
    """
    if os.path.isdir(pattern):
        paths = [
            os.path.join(pattern, name)
            for name in os.listdir(pattern)
            if name.endswith(NIFTI_EXTENSIONS) and os.path.isfile(os.path.join(pattern, name))
        ]
        if not paths:
            raise VolumeError(f"{pattern}: folder contains no .nii or .nii.gz files")
        return sorted(paths)
    if os.path.isfile(pattern):
        return [pattern]
    paths = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    if not paths:
        raise VolumeError(f"{pattern}: no files match this path or pattern")
    return sorted(paths)


def subject_id(path: str, pattern: Optional[str] = None) -> str:
    """Subject id of a file: the name without ``.nii``/``.nii.gz``, or what ``pattern`` finds in it.

    Example: ``subject_id("IXI012-HH-1211_T1.nii.gz", r"^(IXI\\d+)")`` is ``"IXI012"``.

    Raises:
        VolumeError: ``pattern`` does not match the file name.
    """
    name = os.path.basename(path)
    for suffix in NIFTI_EXTENSIONS[::-1]:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if pattern is None:
        return name
    match = re.search(pattern, name)
    if match is None:
        raise VolumeError(f"{path}: file name does not match data.subject_pattern {pattern!r}")
    return match.group(1) if match.groups() else match.group(0)


def to_canonical(image: nib.spatialimages.SpatialImage, source: str, subject: str, sparse: bool = False) -> Volume:
    """Validate a loaded image and reorient it to the closest canonical RAS+.

    A 4D image with a single volume (X, Y, Z, 1) is accepted as 3D. With ``sparse`` (a stack of
    acquired slices), one slice is enough and a constant file is allowed (the contrast is checked
    over every acquired slice together).

    Raises:
        VolumeError: not 3D, non-finite voxels, or constant intensity.
    """
    original_shape = tuple(int(s) for s in image.shape)
    if len(original_shape) == 4 and original_shape[3] == 1:
        image = image.slicer[..., 0]
    if len(image.shape) != 3:
        raise VolumeError(f"{source}: expected a 3D volume, got shape {original_shape}")
    if np.issubdtype(image.get_data_dtype(), np.complexfloating):
        raise VolumeError(f"{source}: complex-valued data ({image.get_data_dtype()}), expected real intensities "
                          "(save the magnitude image)")
    if not sparse and min(image.shape) < 2:
        raise VolumeError(f"{source}: expected at least 2 voxels along each axis, got shape {original_shape}")
    try:
        canonical = nib.as_closest_canonical(image)
        data = np.asarray(canonical.get_fdata(dtype=np.float32))
    except Exception as err:  # truncated or corrupt payloads surface here, with many error types
        raise VolumeError(f"{source}: cannot read the image data ({type(err).__name__}: {err})") from None
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise VolumeError(f"{source}: {bad} voxels are NaN or Inf, expected finite intensities")
    if not sparse and float(data.max()) == float(data.min()):
        raise VolumeError(f"{source}: constant volume (every voxel is {float(data.min())}), nothing to normalise")
    return Volume(source, subject, data, np.asarray(canonical.affine, dtype=np.float64), original_shape)


def load_nifti(path: str, subject_pattern: Optional[str] = None, sparse: bool = False) -> Volume:
    """Load one NIfTI file as a canonical :class:`Volume` (``sparse``: see :func:`to_canonical`).

    Raises:
        VolumeError: the file is missing, not NIfTI, truncated, or fails :func:`to_canonical`.
    """
    if not os.path.isfile(path):
        raise VolumeError(f"{path}: no such file")
    subject = subject_id(path, subject_pattern)
    try:
        image = nib.load(path)
    except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, ValueError, ...
        raise VolumeError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(f"{path}: expected a NIfTI image, got {type(image).__name__}")
    return to_canonical(image, path, subject, sparse)
