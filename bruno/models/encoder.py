"""A trained flow's latents of slices with their poses, one slice or whole volumes at a time.

Used by the latent volume model (:mod:`bruno.reconstruction.latent`) and the latent factor process's
init (:mod:`bruno.processes.latent_factor_init`, called by training).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from bruno.models.bruno import ConditionalBruno
from bruno.models.sequence_model import variables_sha1

__all__ = ["SliceEncoder"]


class SliceEncoder:
    """(images [n, H, W] on 0..255, poses) → latents [n, D] of a trained flow.

    Pixels are dequantised by their mean (x + ½), so the same slice always gives the same latent.
    """

    def __init__(self, model: ConditionalBruno) -> None:
        self.model = model
        self.eye = np.eye(model.num_poses, dtype=np.float32)
        self._encode = tf.function(lambda x, p: model.encode(x, p)[0], reduce_retracing=True)  # k varies per call

    def __call__(self, images: np.ndarray, poses: Sequence[int], rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """Latents [n, D]; with ``rng``, pixels are dequantised by uniform noise instead (as in training)."""
        images = np.asarray(images, np.float32)
        offset = 0.5 if rng is None else rng.uniform(0.0, 1.0, images.shape).astype(np.float32)
        x = tf.constant((images + offset)[None, ..., None])
        return self._encode(x, tf.constant(self.eye[list(poses)][None]))[0].numpy()

    def fingerprint(self) -> str:
        """SHA-1 of the weights the latents depend on (pose embedding and flow): what a fit to them was fitted to."""
        return variables_sha1([*self.model.embedding.variables, *self.model.flow.variables])

    def volumes(self, volumes: np.ndarray, progress: bool = True, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """[V, N, D] latents of whole volumes [V, N, H, W] (``rng``: dequantised by uniform noise)."""
        poses = range(self.model.num_poses)
        return np.stack([self(v, poses, rng) for v in tqdm(volumes, desc="encode", disable=not progress)])
