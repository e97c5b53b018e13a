"""A Gaussian volume model in BRUNO's latent space: the closed-form reconstruction applied to a trained flow.

A first step towards the latent factor process of SPEC §9.3, with its parameters set by PCA of the
training latents instead of joint training. Each training volume is encoded slice by slice with its
pose (pixels dequantised by their mean, x + ½): z ∈ R^{N×D}. On those V vectors,

    z = μ + W u + ε,   u ~ N(0, I_r)          (:class:`~bruno.baselines.gaussian.GaussianVolumeModel`)

gives a subject code shared by every pose and latent dimension. Given the acquired slices c, their
latents z_c; the prediction at pose q is the code's projection P_q = μ_q + W_q E[u | z_c] plus GP
interpolation along the pose of the latent residuals z_c − P_c (Matérn-3/2, ℓ, ρ; one kernel for every
latent dimension), decoded by the flow with pose q. Acquired slices are returned unchanged.

The noise σ² of the latent model and ℓ are chosen on the val split (SSIM of the decoded volume, mean
over k ∈ {1, 3, 5, 9}) and stored in the run folder (``latent_volume.json``).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from bruno.baselines.classical import ClassicalMethod, Estimate, residual_weights
from bruno.baselines.gaussian import GaussianVolumeModel, read_split
from bruno.baselines.tuning import can_search, val_score
from bruno.data.table import SliceTable
from bruno.errors import ConfigError, DataFileError
from bruno.files import write_text_files
from bruno.model import ConditionalBruno
from bruno.processes import LatentFactorProcess

__all__ = ["LENGTHS", "LatentVolumeModel", "NOISE_VARIANCES", "SliceEncoder", "initialize_latent_factors",
           "load_latent_volume_model"]

logger = logging.getLogger(__name__)

NOISE_VARIANCES = (0.3, 1.0, 3.0)  # latent units²
LENGTHS = (4.0, 8.0, 16.0)  # poses
SETTINGS_FILE = "latent_volume.json"
FACTOR_SCALES = (0.25, 0.5, 1.0)  # shrinkage of the PCA loadings tried by the latent factor init


class SliceEncoder:
    """A trained flow's latents of slices with their poses: (images [n, H, W] on 0..255, poses) → [n, D].

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

    def volumes(self, table: SliceTable, split: str, progress: bool = True,
                rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """[V, N, D] latents of every volume of one split (``rng``: dequantised by uniform noise)."""
        poses = range(table.num_poses)
        return np.stack([self(v, poses, rng) for v in tqdm(read_split(table, split), desc=f"encode {split}", disable=not progress)])


class LatentVolumeModel(ClassicalMethod):
    """The decoded latent Gaussian model + GP residual (module docstring), behind the classical interface.

    Args:
        encoder: the trained flow's :class:`SliceEncoder`.
        latent_model: the Gaussian volume model of its training latents, [N, D, 1] per volume.
        length, rho: the residual kernel's ℓ (poses) and ρ.
    """

    key, short, min_contexts = "latent_pca_gp", "latent PCA + GP", 0

    def __init__(self, encoder: SliceEncoder, latent_model: GaussianVolumeModel, length: float, rho: float = 0.0) -> None:
        self.encoder, self.latent_model, self.length, self.rho = encoder, latent_model, float(length), float(rho)
        self.label = (f"BRUNO flow + latent Gaussian volume model + GP residual (r = {latent_model.rank}, "
                      f"σ² = {latent_model.noise_variance:g}, ℓ = {length:g})")

    def latent_estimate(self, images: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
        """The predicted latent volume [N, D] from ``images[contexts]``."""
        contexts = sorted(set(int(c) for c in contexts))
        latents = np.zeros(self.latent_model.mean.shape)
        if contexts:
            latents[contexts] = self.encoder(np.asarray(images)[contexts], contexts)[..., None]
        prior = self.latent_model.condition(latents, contexts, variance=False).projection
        if contexts:
            weights = residual_weights(len(prior), contexts, self.length, self.rho)
            prior = prior + np.tensordot(weights, latents[contexts] - prior[contexts], axes=1)
        return prior[..., 0]

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        images = self.encoder.model.decode_latents(latents, self.encoder.eye)
        return np.clip(images.numpy()[..., 0] - 0.5, 0.0, 255.0)

    def estimate(self, images: np.ndarray, contexts: Sequence[int], with_std: bool = True) -> Estimate:
        contexts = sorted(set(int(c) for c in contexts))
        volume = self._decode(self.latent_estimate(images, contexts))
        volume[contexts] = np.asarray(images, np.float64)[contexts]
        return Estimate(volume.astype(np.float64), None)


def load_latent_volume_model(model: ConditionalBruno, table: SliceTable, run_dir: str,
                             ks: Sequence[int] = (1, 3, 5, 9), progress: bool = True) -> tuple[LatentVolumeModel, dict[str, Any]]:
    """Fit the latent Gaussian model on the train split's latents; choose (σ², ℓ) on val once and store them.

    Raises:
        ConfigError: ``model`` is not a BRUNO model.
        DataFileError: the table has < 2 train or no val volumes, or the stored file is unreadable.
    """
    if not isinstance(model, ConditionalBruno):
        raise ConfigError(f"{run_dir}: the latent volume model needs a BRUNO run (model.kind: bruno), not {model.config.kind}")
    if not can_search(table):
        raise DataFileError(f"{table.path}: the latent volume model needs >= 2 train volumes and >= 1 val volume")
    encoder = SliceEncoder(model)
    base = GaussianVolumeModel.fit(encoder.volumes(table, "train", progress)[..., None])  # [V, N, D, 1]
    path = os.path.join(run_dir, SETTINGS_FILE)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                settings = json.load(f)
            chosen = (float(settings["chosen"]["noise_variance"]), float(settings["chosen"]["length"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataFileError(f"{path}: not a readable latent volume settings file ({type(err).__name__}: {err})") from None
    else:
        ks = [k for k in ks if k <= table.num_poses]
        val = read_split(table, "val")
        grid = []
        for noise, length in tqdm(list(itertools.product(NOISE_VARIANCES, LENGTHS)), desc="latent search (val)", disable=not progress):
            method = LatentVolumeModel(encoder, base.with_settings(noise_variance=noise), length)
            grid.append({"noise_variance": noise, "length": length, "val_ssim": val_score(method, val, ks)})
        best = max(grid, key=lambda g: g["val_ssim"])
        settings = {"chosen": best, "grid": grid, "ks": list(ks), "table": table.path}
        write_text_files(run_dir, {SETTINGS_FILE: json.dumps(settings, indent=1)})
        logger.info("latent volume model settings %s stored in %s", best, path)
        chosen = (best["noise_variance"], best["length"])
    return LatentVolumeModel(encoder, base.with_settings(noise_variance=chosen[0]), chosen[1]), settings


def initialize_latent_factors(model: ConditionalBruno, table: SliceTable, val_loss: Callable[[], float],
                              reset_kernel: bool = True, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The data-dependent init of a latent factor process (SPEC §9.3): PCA of the train split's latents.

    W = c · (the top r principal directions of the whole-volume latents, each scaled by √λ_i), with
    the shrinkage c ∈ ``FACTOR_SCALES`` that gives the lowest ``val_loss()``: 105 volumes estimate
    directions in N·D dimensions poorly, and the full √λ_i makes the model over-confident (ixi.yaml,
    val bits/dim at n_c = 8 / 1: c = 0 2.943 / 3.038, .25 2.936 / 3.028, .75 2.937 / 3.036, and 3.12 / 3.19
    with the variance left to the pose kernel reduced by what the directions explain). With
    ``reset_kernel`` (a fresh flow), μ(q) = the mean latent per pose and v_d = the variance the
    directions leave per dimension (averaged over poses); without it (a trained flow and process,
    ``train.init_from``) both are kept. The slices are dequantised by uniform noise drawn from
    ``seed``, as in training. Directions beyond V − 1 (fewer training volumes than factors) stay 0.

    Returns:
        {"scale": c, "explained": share of the train latents' variance the r directions hold, "val_loss": {c: loss}}.
    """
    process = model.process
    if not isinstance(process, LatentFactorProcess):
        raise ConfigError("initialize_latent_factors: the model has no latent factor process (model.process.latent_factors: 0)")
    # Dequantised by uniform noise as in training: with x + ½ the dimensions that carry the noise are
    # near-constant (measured on ixi.yaml: 10 % of v_d < 0.015 and 21 bits/dim on val, against 2.94).
    latents = SliceEncoder(model).volumes(table, "train", progress, np.random.default_rng(seed))  # [V, N, D]
    count = len(latents)
    if count < 2:
        raise DataFileError(f"{table.path}: the latent factor init needs >= 2 train volumes, found {count}")
    pca = GaussianVolumeModel.fit(latents[..., None], rank=process.num_factors)
    total = latents.var(axis=0, ddof=1)  # [N, D]
    directions = np.zeros(total.shape + (process.num_factors,))
    directions[..., :pca.rank] = pca.with_settings(noise_variance=1e-12).loadings.reshape(total.shape + (pca.rank,))
    if pca.rank < process.num_factors:
        logger.warning("%d train volumes give only %d of latent_factors=%d directions; the rest start (and stay) 0",
                       count, pca.rank, process.num_factors)
    residual = np.maximum((total - np.sum(directions ** 2, axis=-1)).mean(axis=0), 1e-4)  # v_d [D]
    if reset_kernel:
        process.set_from_pca(np.zeros_like(directions), pca.mean[..., 0], residual)
    losses = {}
    for scale in FACTOR_SCALES:
        process.set_from_pca(scale * directions)
        losses[scale] = val_loss()
    best = min(losses, key=lambda c: losses[c])
    process.set_from_pca(best * directions)
    explained = float(1.0 - residual.sum() / total.mean(axis=0).sum())
    logger.info("latent factor init: %d directions hold %.1f %% of the train latents' variance; shrinkage %g "
                "(val loss %s)", pca.rank, 100 * explained, best, {c: round(v, 1) for c, v in losses.items()})
    return {"scale": best, "explained": explained, "val_loss": losses}
