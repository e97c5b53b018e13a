"""From files to files: what a user's reconstruction runs through, in ``scripts/reconstruct.py`` and ``scripts/demo.py``.

1. the input becomes pose-ordered slices with the poses to condition on (:class:`Prepared`): either
   acquired slices placed on the model's pose grid (:func:`prepare_acquired`, what a clinician has), or
   a whole volume preprocessed like the training data with chosen poses (:func:`prepare_volume`, the
   evaluation protocol);
2. a method reconstructs every pose (:mod:`bruno.reconstruction.method`);
3. the volumes are written as NIfTI in world coordinates and the input's intensities, with a PNG
   (:func:`reconstruct_and_write`).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Optional

import numpy as np

from bruno.config import DataConfig
from bruno.data.acquisition import Acquisition, read_acquisition
from bruno.data.nifti import affine_spacing, load_nifti
from bruno.data.slices import extract_slices
from bruno.errors import ConfigError
from bruno.models import SequenceModel
from bruno.plots import save_acquisition_figure
from bruno.reconstruction.io import write_reconstruction
from bruno.reconstruction.method import Method, Result
from bruno.reconstruction.placement import place_acquisition
from bruno.runs import InferenceRecord

__all__ = ["Prepared", "check_method_outputs", "prepare_acquired", "prepare_volume", "reconstruct_and_write"]

logger = logging.getLogger(__name__)


class Prepared(NamedTuple):
    """Pose-ordered slices [N, H, W] (0..255; only ``contexts`` are read), the output's voxel → world
    ``affine``, the (low, high) input ``intensity`` window that maps to 0..255, and the acquired slices as read
    (None for a whole volume)."""

    images: np.ndarray
    contexts: list[int]
    affine: np.ndarray
    intensity: tuple[float, float]
    acquisition: Optional[Acquisition] = None


def check_method_outputs(key: str, method: type[Method], paths: Mapping[str, Optional[str]]) -> None:
    """Refuse, before any work, an output path (``std``, ``samples``, ``decoded_mean``) that method ``key`` cannot fill.

    Raises:
        ConfigError: naming the path and the method.
    """
    missing = {"std": (method.has_distribution, "has no uncertainty map (pca has one)"),
               "samples": (method.has_distribution, "draws no samples (pca does)"),
               "decoded_mean": (method.sampled, "has no decoded mean (only a trained run's model has one)")}
    for kind, (has, what) in missing.items():
        if paths.get(kind) and not has:
            raise ConfigError(f"{paths[kind]}: method {key} {what}")


def prepare_acquired(paths: Sequence[str], data: DataConfig, training: Optional[InferenceRecord], model: Optional[SequenceModel] = None,
                     slices: Optional[Sequence[int]] = None, window: Optional[tuple[float, float]] = None,
                     slab_mm: Optional[tuple[float, float]] = None, poses: Optional[Sequence[int]] = None) -> Prepared:
    """Acquired slices (one sparse stack or single-slice files; ``slices`` picks some of one file) in their own
    intensity ``window`` (default: their percentiles), placed by the slab, given poses, or by estimation
    (the model's likelihood; without one, NCC with the atlas) within the ``training`` pose spacings:
    :func:`~bruno.reconstruction.placement.place_acquisition`."""
    acquisition = read_acquisition(paths, data, slices, window)
    placement = place_acquisition(acquisition, data.num_poses, training, model, slab_mm, poses, log=True)
    logger.info("%d acquired slice(s) at %s mm along the normal -> poses %s; intensity window %.4g..%.4g",
                len(placement.poses), ", ".join(f"{z:.1f}" for z in acquisition.positions_mm), placement.poses,
                *acquisition.intensity)
    return Prepared(placement.images, placement.poses, placement.affine, acquisition.intensity, acquisition)


def prepare_volume(path: str, data: DataConfig, contexts: Sequence[int]) -> Prepared:
    """A whole volume preprocessed exactly as the training data (its slab and window from every slice), to
    be conditioned on ``contexts``."""
    slices = extract_slices(load_nifti(path), data)
    return Prepared(slices.images, list(contexts), slices.affine, (slices.intensity_low, slices.intensity_high))


def reconstruct_and_write(method: Method, prepared: Prepared, paths: Mapping[str, Optional[str]], png: Optional[str],
                          num_samples: int, seed: int = 0, overwrite: bool = False, progress: bool = True,
                          title: Optional[str] = None) -> Result:
    """Reconstruct with ``method`` and write each :class:`~bruno.reconstruction.method.Result` array whose path is
    given (``mean``, ``decoded_mean``, ``std``, ``samples``), and the figure at ``png`` (``title``: its title).

    Raises:
        ConfigError: fewer acquired slices than the method takes, or an output the method does not have.
    """
    images, contexts = prepared.images, prepared.contexts
    if len(contexts) < method.min_contexts:
        raise ConfigError(f"method {method.key}: needs at least {method.min_contexts} given slice(s), got {len(contexts)}")
    result = method.reconstruct(images, contexts, num_samples if method.sampled or paths.get("samples") else 0, seed,
                                with_std=bool(paths.get("std")), progress=progress)
    written = write_reconstruction(paths, result, prepared.affine, prepared.intensity, overwrite)
    if png:
        title = title or f"{method.key}: {len(contexts)} slice(s) at poses {contexts} of {len(images)}"
        save_acquisition_figure(images[contexts], contexts, result.mean, result.std, png, title,
                                affine_spacing(prepared.affine), overwrite)
        written.append(png)
    logger.info("conditioned on poses %s of %d; wrote %s", contexts, len(images), ", ".join(written))
    return result
