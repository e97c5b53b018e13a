"""Reconstructions as NIfTI files: volumes on the 0..255 scale mapped back to the input's intensities and
written in world coordinates with the slab's affine (sform and qform), atomically."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import nibabel as nib
import numpy as np

from bruno.data.slices import slices_to_volume
from bruno.errors import NonFiniteOutput
from bruno.files import atomic_output, check_room
from bruno.reconstruction.method import Result

__all__ = ["check_output", "save_nifti", "write_reconstruction", "write_volume"]

NIFTI_HEADER_BYTES = 4096  # a NIfTI-1 header and its extensions, generously


def check_output(array: np.ndarray, what: str, spread: bool = False) -> None:
    """Refuse an output that no valid input gives: NaN or Inf anywhere, or a spread of zero everywhere (identical
    samples), so that nothing broken is written as if it were a result.

    Raises:
        NonFiniteOutput: naming ``what`` and how many values are bad.
    """
    array = np.asarray(array)
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise NonFiniteOutput(f"{what}: {bad} of {array.size} values are NaN or Inf; nothing was written (the model's "
                              "weights or the inputs are broken: restore another checkpoint, or check the input)")
    if spread and array.size and not np.any(array):
        raise NonFiniteOutput(f"{what}: zero everywhere (every sample is the same); nothing was written")


def write_volume(path: str, stack: np.ndarray, affine: np.ndarray, intensity: Optional[tuple[float, float]],
                 overwrite: bool = False, offset: bool = True) -> None:
    """Write [N, H, W] (or [S, N, H, W] as a 4D series) on the 0..255 scale as NIfTI in world coordinates.

    Args:
        path: ``.nii`` or ``.nii.gz`` file, written atomically.
        stack: pose-ordered slices, or samples of them.
        affine: the slab's voxel → world affine (from the slice table or :func:`extract_slices`).
        intensity: (low, high) input intensities that map to 0 and 255, or None to keep 0..255.
        overwrite: replace an existing file.
        offset: False for a spread (standard deviation): scale without adding ``low``.
    """
    stack = np.asarray(stack, np.float32)
    check_output(stack, path, spread=not offset)
    if stack.ndim == 4:
        array = np.stack([slices_to_volume(s) for s in stack], axis=-1)
    else:
        array = slices_to_volume(stack)
    if intensity is not None:
        low, high = intensity
        array = array * np.float32((high - low) / 255.0) + np.float32(low if offset else 0.0)
    save_nifti(path, array, affine, overwrite)


def write_reconstruction(paths: Mapping[str, Optional[str]], result: Result, affine: np.ndarray,
                         intensity: Optional[tuple[float, float]], overwrite: bool = False) -> list[str]:
    """Write each array of ``result`` (``mean``, ``decoded_mean``, ``std``, ``samples``) whose path is given and
    that was computed, with :func:`write_volume` (``std`` as a spread: scaled, not offset); the paths written."""
    chosen = {path: getattr(result, kind) for kind, path in paths.items() if path is not None and getattr(result, kind) is not None}
    for output, path in paths.items():
        if path in chosen:
            check_output(chosen[path], f"{path} ({output})", spread=output == "std")
    check_room({path: array.size * 4 + NIFTI_HEADER_BYTES for path, array in chosen.items()})  # float32, before compression
    for kind, path in paths.items():
        if path in chosen:
            write_volume(path, chosen[path], affine, intensity, overwrite, offset=kind != "std")
    return list(chosen)


def save_nifti(path: str, array: np.ndarray, affine: np.ndarray, overwrite: bool = False) -> None:
    """Write a float32 NIfTI array with ``affine`` as both sform and qform (code 1), atomically."""
    image = nib.Nifti1Image(np.asarray(array, np.float32), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    with atomic_output(path, overwrite) as tmp:
        nib.save(image, tmp)
