"""A Gaussian volume model in BRUNO's latent space: the closed-form reconstruction applied to a trained flow.

A first step towards the latent factor process of SPEC §9.3, with its parameters set by PCA of the
training latents instead of joint training. Each training volume is encoded slice by slice with its
pose (pixels dequantised by their mean, x + ½; :class:`~bruno.models.encoder.SliceEncoder`): z ∈ R^{N×D}.
On those V vectors,

    z = μ + W u + ε,   u ~ N(0, I_r)          (:class:`~bruno.baselines.gaussian.GaussianVolumeModel`)

gives a subject code shared by every pose and latent dimension. Given the acquired slices c, their
latents z_c; the prediction at pose q is the code's projection P_q = μ_q + W_q E[u | z_c] plus GP
interpolation along the pose of the latent residuals z_c − P_c (Matérn-3/2, ℓ, ρ; one kernel for every
latent dimension; :func:`~bruno.baselines.kernels.gp_residual`), decoded by the flow with pose q.
Acquired slices are returned unchanged.

The noise σ² of the latent model and ℓ are chosen on the val split (SSIM of the decoded volume, mean
over k ∈ {1, 3, 5, 9}) and stored in the run folder (``latent_volume.json``) with the fingerprint of the subjects
and of the flow's weights (:class:`~bruno.files.StoredSearch`): retraining or another table refuses it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bruno.baselines import GaussianVolumeModel, gp_residual
from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import ConfigError, DataFileError
from bruno.files import StoredSearch
from bruno.models import ConditionalBruno
from bruno.models.encoder import SliceEncoder
from bruno.reconstruction.method import Method, Result, Source
from bruno.reconstruction.tuning import SEARCH_KS, can_search, grid_search, split_fingerprint, val_score
from bruno.runs import RunDir

__all__ = ["LENGTHS", "NOISE_VARIANCES", "LatentVolumeModel", "load_latent_volume_model"]

NOISE_VARIANCES = (0.3, 1.0, 3.0)  # latent units²
LENGTHS = (4.0, 8.0, 16.0)  # poses


class LatentVolumeModel(Method):
    """The decoded latent Gaussian model + GP residual (module docstring).

    Args:
        encoder: the trained flow's :class:`SliceEncoder`.
        latent_model: the Gaussian volume model of its training latents, [N, D, 1] per volume.
        length, rho: the residual kernel's ℓ (poses) and ρ.
        key: its name in tables.
    """

    short, needs_run, is_baseline = "latent PCA + GP", True, False

    def __init__(self, encoder: SliceEncoder, latent_model: GaussianVolumeModel, length: float, rho: float = 0.0,
                 key: str = "latent_pca_gp") -> None:
        self.encoder, self.latent_model, self.length, self.rho, self.key = encoder, latent_model, float(length), float(rho), key
        self.label = (f"BRUNO flow + latent Gaussian volume model + GP residual (r = {latent_model.rank}, "
                      f"σ² = {latent_model.noise_variance:g}, ℓ = {length:g})")

    @classmethod
    def build(cls, source: Source) -> LatentVolumeModel:
        """The latent model of ``source``'s run, named ``<name>_latent`` (or ``latent_pca_gp``)."""
        if source.model is None or not source.model.has_process:
            kind = source.model.config.kind if source.model is not None else "none"
            raise ConfigError(f"{source.run_dir}: the latent volume model needs a BRUNO run (model.kind: bruno), not {kind}")
        method = load_latent_volume_model(source.model, source.table, str(source.run_dir), progress=source.progress)[0]
        if source.name:
            method.key = f"{source.name}_latent"
        return method

    def latent_estimate(self, images: np.ndarray, contexts: Sequence[int]) -> np.ndarray:
        """The predicted latent volume [N, D] from ``images[contexts]``."""
        contexts = sorted(set(int(c) for c in contexts))
        latents = np.zeros(self.latent_model.mean.shape)
        if contexts:
            latents[contexts] = self.encoder(np.asarray(images)[contexts], contexts)[..., None]
        prior = self.latent_model.condition(latents, contexts, variance=False).projection
        return gp_residual(prior, latents[contexts], contexts, self.length, self.rho)[..., 0]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents [N, D] of poses 0..N−1 → images [N, H, W] on the 0..255 scale."""
        images = self.encoder.model.decode_latents(latents, self.encoder.eye)
        return np.clip(images.numpy()[..., 0] - 0.5, 0.0, 255.0)

    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        contexts = sorted(set(int(c) for c in contexts))
        volume = self.decode(self.latent_estimate(images, contexts))
        volume[contexts] = np.asarray(images, np.float64)[contexts]
        return Result(volume.astype(np.float64), None, None, contexts)


def _check_chosen(chosen: dict[str, Any]) -> None:
    if not (0 < float(chosen["noise_variance"]) < math.inf and 0 < float(chosen["length"]) < math.inf):
        raise ValueError("a chosen setting is out of range")


def load_latent_volume_model(model: ConditionalBruno, table: SliceTable, run_dir: str, ks: Sequence[int] = SEARCH_KS,
                             progress: bool = True) -> tuple[LatentVolumeModel, dict[str, Any]]:
    """Fit the latent Gaussian model on the train split's latents; choose (σ², ℓ) on val once and store them, with
    the fingerprint of the table's subjects and of the flow that encoded them.

    Raises:
        DataFileError: the table has < 2 train or no val volumes, or the stored file is unreadable or was chosen for
            other subjects or another flow.
    """
    if not can_search(table):
        raise DataFileError(f"{table.path}: the latent volume model needs >= 2 train volumes and >= 1 val volume")
    encoder = SliceEncoder(model)
    stored = StoredSearch(RunDir(run_dir).file(RunDir.LATENT_VOLUME), "latent volume settings",
                          {**split_fingerprint(table), "flow_weights_sha1": encoder.fingerprint()}, _check_chosen)
    base = GaussianVolumeModel.fit(encoder.volumes(read_split(table, "train"), progress)[..., None])  # [V, N, D, 1]

    def search() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        searched, val = [k for k in ks if k <= table.num_poses], read_split(table, "val")
        def score(noise_variance: float, length: float) -> float:
            return val_score(LatentVolumeModel(encoder, base.with_settings(noise_variance=noise_variance), length), val, searched)

        grid = [{"noise_variance": noise, "length": length} for noise, length in itertools.product(NOISE_VARIANCES, LENGTHS)]
        chosen, scored = grid_search(grid, score, "latent search (val)", progress)
        return chosen, scored, {"ks": searched, "table": table.path}

    settings = stored.load_or_search(search)
    chosen = settings["chosen"]
    return LatentVolumeModel(encoder, base.with_settings(noise_variance=float(chosen["noise_variance"])), float(chosen["length"])), settings
