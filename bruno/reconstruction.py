"""Dense volumes from k slices (SPEC §3 "dense-volume generation", §5.3).

Given the pose-ordered slices of one subject (preprocessed exactly as the training data) and the
indices of the k acquired ones, the model is conditioned on those k slices (their pose is their
index), every pose 0..N−1 is queried, S independent samples are drawn per pose, and the mean and
per-voxel standard deviation are taken over samples. k = 0 samples the prior: the learned
population "mental map" (atlas).

The decoded predictive mean (one deterministic image per pose, ``mode``) is returned beside the
mean of samples. With ``keep_contexts`` (default: the model's ``model.keep_contexts``), the acquired
slices are returned unchanged at their own poses (zero spread there).

Intensities: the model samples dequantised pixels x̃ = x + u on [0, 256); reconstructions are
reported on the 0..255 scale of the stored slices as clip(x̃ − ½, 0, 255) (the mean of u is ½).
:func:`write_volume` maps them back to the input's units with the volume's intensity mapping and
writes NIfTI in world coordinates with the slab's affine.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Optional

import nibabel as nib
import numpy as np
import tensorflow as tf

from bruno.data.slices import slices_to_volume
from bruno.errors import ConfigError
from bruno.files import atomic_output
from bruno.model import SequenceModel

__all__ = ["FAST_SAMPLES", "FETAL_CONTEXTS", "Reconstruction", "check_contexts", "evenly_spread", "reconstruct",
           "save_nifti", "write_reconstruction", "write_volume"]

# Table 4a of the paper (fetal, N = 80): hard-coded context slices per k (SPEC §5.3).
FETAL_CONTEXTS = {1: (40,), 3: (20, 40, 60), 4: (10, 30, 50, 70), 7: (10, 20, 30, 40, 50, 60, 70)}


# The cheapest number of samples whose mean image scores within 0.005 SSIM of the 100-sample mean
# (measured with the sample-count study on IXI validation brains; RESULTS.md).
FAST_SAMPLES = 20


def evenly_spread(k: int, num_poses: int) -> list[int]:
    """k context poses spread over the stack: idx_i = round((i+1)·N/(k+1)), i = 0..k−1 (SPEC §5.3).

    Where that rule would repeat a pose (k close to N), k distinct poses evenly spaced from 0 to N−1.

    Raises:
        ConfigError: k < 0 or k > N.
    """
    if not 0 <= k <= num_poses:
        raise ConfigError(f"k={k}, expected 0 <= k <= N = {num_poses}")
    indices = [min(int(np.floor((i + 1) * num_poses / (k + 1) + 0.5)), num_poses - 1) for i in range(k)]
    if len(set(indices)) < k:  # k close to N: the rule repeats poses, so spread over the whole stack instead
        indices = np.round(np.linspace(0, num_poses - 1, k)).astype(int).tolist()
    return indices


def fetal_contexts(k: int, num_poses: int) -> list[int]:
    """The paper's fetal context table (N = 80, k ∈ {1, 3, 4, 7})."""
    if num_poses != 80 or k not in FETAL_CONTEXTS:
        raise ConfigError(f"the fetal context table needs N = 80 and k in {sorted(FETAL_CONTEXTS)}, got N = {num_poses}, k = {k}")
    return list(FETAL_CONTEXTS[k])


def check_contexts(contexts: Sequence[int], num_poses: int, label: Optional[str] = None) -> list[int]:
    """The context poses as a list of ints, checked: in [0, N), no repeats (empty: the prior).

    Raises:
        ConfigError: starting with ``label`` (default: ``contexts [...]``), naming the bad value.
    """
    values = [int(c) for c in contexts]
    label = label or f"contexts {values}"
    bad = [v for v in values if not 0 <= v < num_poses]
    if bad:
        raise ConfigError(f"{label}: {bad[0]} is out of range, expected indices in [0, {num_poses})")
    if len(set(values)) != len(values):
        raise ConfigError(f"{label}: repeated slice index")
    return values


class Reconstruction(NamedTuple):
    """A reconstructed volume on the 0..255 scale, pose-ordered like the slice table.

    Attributes:
        mean: float32 [N, H, W], the average over samples (the paper's mean image).
        std: float32 [N, H, W], the per-voxel standard deviation over samples.
        samples: float32 [S, N, H, W].
        contexts: the context poses used.
        mode: float32 [N, H, W], the decoded predictive mean latent of each pose.
    """

    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray
    contexts: list[int]
    mode: np.ndarray


def reconstruct(model: SequenceModel, images: np.ndarray, contexts: Sequence[int], num_samples: int,
                seed: int = 0, progress: bool = True, decode_batch_size: int = 512,
                keep_contexts: Optional[bool] = None) -> Reconstruction:
    """Condition on ``images[contexts]`` and sample every pose.

    Args:
        model: a trained model.
        images: uint8 or float [N, H, W], the subject's slices (only the contexts are read).
        contexts: context poses (empty: the prior).
        num_samples: S >= 1 samples per pose.
        seed: seed of the context dequantisation noise and the latent draws.
        progress: progress bar over the decoding.
        decode_batch_size: images decoded at once.
        keep_contexts: return ``images[contexts]`` unchanged at the context poses (None: the model's
            ``model.keep_contexts`` setting).

    Raises:
        ConfigError: ``num_samples`` < 1, or contexts out of range / repeated.
    """
    num_poses = model.num_poses
    if num_samples < 1:
        raise ConfigError(f"num_samples={num_samples}: expected >= 1")
    contexts = check_contexts(contexts, num_poses)
    rng = np.random.default_rng(seed)
    size = model.image_size
    context_images = np.asarray(images, np.float32)[contexts] + rng.random((len(contexts), size, size), dtype=np.float32)
    one_hot = np.eye(num_poses, dtype=np.float32)
    arguments = (tf.constant(context_images[None, ..., None]), tf.constant(one_hot[contexts][None]), tf.constant(one_hot[None]))
    result = model.sample(*arguments, num_samples, seed=seed, decode_batch_size=decode_batch_size, progress=progress)
    samples = np.clip(result.images.numpy()[:, 0, ..., 0] - 0.5, 0.0, 255.0)  # [S, N, H, W]
    mode = np.clip(model.decode_predictive_mean(*arguments, decode_batch_size).numpy()[0, ..., 0] - 0.5, 0.0, 255.0)
    if model.config.keep_contexts if keep_contexts is None else keep_contexts:
        acquired = np.asarray(images, np.float32)[contexts]
        samples[:, contexts] = acquired
        mode[contexts] = acquired
    return Reconstruction(samples.mean(0), samples.std(0), samples, list(contexts), mode)


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
    if stack.ndim == 4:
        array = np.stack([slices_to_volume(s) for s in stack], axis=-1)
    else:
        array = slices_to_volume(stack)
    if intensity is not None:
        low, high = intensity
        array = array * np.float32((high - low) / 255.0) + np.float32(low if offset else 0.0)
    save_nifti(path, array, affine, overwrite)


def write_reconstruction(paths: Mapping[str, Optional[str]], arrays: Mapping[str, Optional[np.ndarray]],
                         affine: np.ndarray, intensity: Optional[tuple[float, float]], overwrite: bool = False) -> list[str]:
    """Write each of ``arrays`` (``mean``, ``mode``, ``std``, ``samples``) whose path is given and that
    was computed, with :func:`write_volume` (``std`` as a spread: scaled, not offset); the paths written."""
    written = []
    for kind, path in paths.items():
        array = arrays[kind]
        if path is None or array is None:
            continue
        write_volume(path, array, affine, intensity, overwrite, offset=kind != "std")
        written.append(path)
    return written


def save_nifti(path: str, array: np.ndarray, affine: np.ndarray, overwrite: bool = False) -> None:
    """Write a float32 NIfTI array with ``affine`` as both sform and qform (code 1), atomically."""
    image = nib.Nifti1Image(np.asarray(array, np.float32), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    with atomic_output(path, overwrite) as tmp:
        nib.save(image, tmp)
