"""Reconstruct a whole volume from a few of its slices with a trained run.

The input is preprocessed exactly as the run's training data (slab, N poses, size, intensities);
the model conditions on the chosen slices (pose = slice index), samples every pose, and writes the
mean volume (and optionally the decoded predictive mean, the per-voxel standard deviation and all
samples as a 4D series) as NIfTI in world coordinates and in the input's intensity units.
With --method, a classical baseline reconstructs instead (fitted on the training split of the run's, or
--config's, table; settings chosen on its val split and stored beside it): linear, population_mean,
pca (the Gaussian volume model: conditional mean, --std and --samples-out too), atlas_gp or pca_gp;
or latent_pca_gp (needs --run): the run's flow with a Gaussian volume model of its training latents.

Examples:
    python scripts/reconstruct.py --run runs/ixi --input scan.nii.gz --contexts 20,45,70 --output recon.nii.gz
    python scripts/reconstruct.py --run runs/ixi --input scan.nii.gz --num-contexts 5 --output recon.nii.gz --std std.nii.gz
    python scripts/reconstruct.py --config config_rnn/ixi.yaml --method pca --input scan.nii.gz --num-contexts 3 \
        --output pca.nii.gz --std pca_std.nii.gz
"""
from __future__ import annotations

from _cli import run

import argparse
import logging
from typing import Optional

import numpy as np

from bruno.baselines import load_methods
from bruno.config import Config, load_config
from bruno.data.nifti import load_nifti
from bruno.data.slices import extract_slices
from bruno.errors import ConfigError
from bruno.files import check_output_path
from bruno.latent_volume import load_latent_volume_model
from bruno.model import SequenceModel
from bruno.reconstruction import FAST_SAMPLES, evenly_spread, parse_contexts, parse_samples, reconstruct, write_volume
from bruno.training import load_slice_table, make_deterministic, restore_model

METHODS = ("bruno", "latent_pca_gp", "linear", "population_mean", "pca", "atlas_gp", "pca_gp")

logger = logging.getLogger("reconstruct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory written by scripts/train.py")
    source.add_argument("--config", help="experiment YAML, for a classical --method without a trained run")
    parser.add_argument("--method", default="bruno", choices=METHODS, help="bruno (default: the run's model) or a classical baseline")
    parser.add_argument("--input", required=True, help="the subject's NIfTI volume (its other slices are not used)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--contexts", help="comma-separated slice (pose) indices to condition on, e.g. 20,40,60")
    which.add_argument("--num-contexts", type=int, help="k evenly spread context slices (0: sample the prior)")
    parser.add_argument("--samples", default="100",
                        help=f"samples per slice (default 100), or 'fast' = {FAST_SAMPLES}: a mean within 0.005 SSIM of 100's")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    parser.add_argument("--output", required=True, help="mean volume (.nii or .nii.gz)")
    parser.add_argument("--decoded-mean", help="also write the decoded predictive mean (one image per slice, no sampling) here")
    parser.add_argument("--std", help="also write the per-voxel standard deviation here")
    parser.add_argument("--samples-out", help="also write every sample as a 4D series here")
    parser.add_argument("--keep-contexts", action=argparse.BooleanOptionalAction, default=None,
                        help="return the given slices unchanged at their own poses (default: the run's model.keep_contexts)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"), help="which checkpoint (default best)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args()

    num_samples = parse_samples(args.samples)
    if args.method in ("bruno", "latent_pca_gp") and args.run is None:
        raise ConfigError(f"--method {args.method} needs --run (a trained model); with --config choose a classical --method")
    if args.method != "bruno" and args.decoded_mean:
        raise ConfigError(f"--decoded-mean: only BRUNO has one; --method {args.method} writes its estimate to --output")
    outputs = (args.output, args.decoded_mean, args.std, args.samples_out)
    for path in outputs:
        if path is not None:
            check_output_path(path, args.overwrite)
    if args.run is not None:
        model, config, _ = restore_model(args.run, args.checkpoint)
    else:
        model, config = None, load_config(args.config)
    make_deterministic(args.seed)
    num_poses = config.data.num_poses
    contexts = (parse_contexts(args.contexts, num_poses) if args.contexts is not None
                else evenly_spread(args.num_contexts, num_poses))
    volume = load_nifti(args.input)
    slices = extract_slices(volume, config.data)
    intensity = (slices.intensity_low, slices.intensity_high)
    if args.method == "bruno":
        result = reconstruct(model, slices.images, contexts, num_samples, seed=args.seed, keep_contexts=args.keep_contexts)
        mean, std, samples = result.mean, result.std, result.samples
    else:
        mean, std, samples = _classical(args, config, model, slices.images, contexts, num_samples)
    write_volume(args.output, mean, slices.affine, intensity, args.overwrite)
    if args.decoded_mean:
        write_volume(args.decoded_mean, result.mode, slices.affine, intensity, args.overwrite)
    if args.std:
        write_volume(args.std, std, slices.affine, intensity, args.overwrite, offset=False)
    if args.samples_out:
        write_volume(args.samples_out, samples, slices.affine, intensity, args.overwrite)
    logger.info("conditioned on slices %s of %d; wrote %s", contexts, num_poses,
                ", ".join(p for p in outputs if p))


def _classical(args: argparse.Namespace, config: Config, model: Optional[SequenceModel], images: np.ndarray,
               contexts: list[int], num_samples: int) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """(estimate, std or None, samples or None) of a classical method, after checking it can give what was asked."""
    table = load_slice_table(config)
    if args.method == "latent_pca_gp":
        method = load_latent_volume_model(model, table, args.run)[0]
    else:
        method = load_methods(table)[0][args.method]
    if len(contexts) < method.min_contexts:
        raise ConfigError(f"--method {args.method}: needs at least {method.min_contexts} given slice(s), got {len(contexts)}")
    if args.std and not method.has_uncertainty:
        raise ConfigError(f"--std: --method {args.method} has no uncertainty map (pca has one)")
    samples = method.sample(images, contexts, num_samples, args.seed) if args.samples_out else None
    if args.samples_out and samples is None:
        raise ConfigError(f"--samples-out: --method {args.method} draws no samples (pca does)")
    estimate = method.estimate(images, contexts, with_std=bool(args.std))
    return estimate.mean, estimate.std, samples


if __name__ == "__main__":
    run(main)
