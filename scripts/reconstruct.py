"""Reconstruct a whole volume from a few of its slices with a trained run.

The input is preprocessed exactly as the run's training data (slab, N poses, size, intensities);
the model conditions on the chosen slices (pose = slice index), samples every pose, and writes the
mean volume (and optionally the decoded predictive mean, the per-voxel standard deviation and all
samples as a 4D series) as NIfTI in world coordinates and in the input's intensity units.

Examples:
    python scripts/reconstruct.py --run runs/ixi --input scan.nii.gz --contexts 20,45,70 --output recon.nii.gz
    python scripts/reconstruct.py --run runs/ixi --input scan.nii.gz --num-contexts 5 --output recon.nii.gz --std std.nii.gz
"""
from __future__ import annotations

from _cli import run

import argparse
import logging

from bruno.data.nifti import load_nifti
from bruno.data.slices import extract_slices
from bruno.files import check_output_path
from bruno.reconstruction import FAST_SAMPLES, evenly_spread, parse_contexts, parse_samples, reconstruct, write_volume
from bruno.training import make_deterministic, restore_model

logger = logging.getLogger("reconstruct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory written by scripts/train.py")
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
    outputs = (args.output, args.decoded_mean, args.std, args.samples_out)
    for path in outputs:
        if path is not None:
            check_output_path(path, args.overwrite)
    model, config, _ = restore_model(args.run, args.checkpoint)
    make_deterministic(args.seed)
    num_poses = config.data.num_poses
    contexts = (parse_contexts(args.contexts, num_poses) if args.contexts is not None
                else evenly_spread(args.num_contexts, num_poses))
    volume = load_nifti(args.input)
    slices = extract_slices(volume, config.data)
    result = reconstruct(model, slices.images, contexts, num_samples, seed=args.seed, keep_contexts=args.keep_contexts)
    intensity = (slices.intensity_low, slices.intensity_high)
    write_volume(args.output, result.mean, slices.affine, intensity, args.overwrite)
    if args.decoded_mean:
        write_volume(args.decoded_mean, result.mode, slices.affine, intensity, args.overwrite)
    if args.std:
        write_volume(args.std, result.std, slices.affine, intensity, args.overwrite, offset=False)
    if args.samples_out:
        write_volume(args.samples_out, result.samples, slices.affine, intensity, args.overwrite)
    logger.info("conditioned on slices %s of %d; wrote %s", contexts, num_poses,
                ", ".join(p for p in outputs if p))


if __name__ == "__main__":
    run(main)
