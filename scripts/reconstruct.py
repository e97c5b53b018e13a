"""Reconstruct a whole volume from a few slices with a trained run.

Acquired slices (what a clinician has; the default): --input holds only them, one sparse
axial stack or several single-slice files (or --slices picks them from one file, which is then the
only part of it read). Each slice is resampled in-plane onto the training grid with its own affine,
intensities are mapped by the acquired voxels' own percentiles (or --intensity-window), and each
slice's pose follows from its world position and the slab (--slab-mm LO HI: mm along the slice
normal of the training slab's two ends for this patient), or is given (--poses, inferior first; the
slab is fitted to them), or by default is estimated: the slab (offset, and pose spacing within the
training range) that maximises the run's log-likelihood of the acquired slices (with --config and no
run: their NCC with the population-mean atlas), logged with its margin. The output lies on the
model's N poses in world coordinates consistent with the slices' own positions, with the acquired
slices kept at their poses, and a PNG beside it.

Evaluation protocol (--contexts or --num-contexts): --input is a whole volume, preprocessed exactly
as the training data (its slab and intensity window come from every slice), and the model conditions
on the chosen poses. Either way the model samples every pose and writes the mean volume (and
optionally the decoded predictive mean, the per-voxel standard deviation and all samples as a 4D
series) as NIfTI in world coordinates and in the input's intensity units.
With --method, a classical baseline reconstructs instead (fitted on the training split of the run's, or
--config's, table; settings chosen on its val split and stored beside it): linear, population_mean,
pca (the Gaussian volume model: conditional mean, --std and --samples-out too), atlas_gp or pca_gp;
or latent_pca_gp (needs --run): the run's flow with a Gaussian volume model of its training latents.

Examples:
    python scripts/reconstruct.py --run runs/ixi --input acquired.nii.gz --output recon.nii.gz --std std.nii.gz
    python scripts/reconstruct.py --run runs/ixi --input acquired.nii.gz --slab-mm -60 75 --output recon.nii.gz
    python scripts/reconstruct.py --run runs/ixi --input s1.nii.gz s2.nii.gz s3.nii.gz --poses 20,45,70 --output recon.nii.gz
    python scripts/reconstruct.py --run runs/ixi --input scan.nii.gz --contexts 20,45,70 --output recon.nii.gz
    python scripts/reconstruct.py --run runs/ixi --input scan.nii.gz --num-contexts 5 --output recon.nii.gz --std std.nii.gz
    python scripts/reconstruct.py --config config_rnn/ixi.yaml --method pca --input scan.nii.gz --num-contexts 3 \
        --output pca.nii.gz --std pca_std.nii.gz
"""
from __future__ import annotations

from _cli import add_common, add_keep_contexts, add_samples, make_parser, parse_contexts, parse_integers, parse_samples, run

import argparse
import logging

from bruno.baselines import load_methods
from bruno.config import load_config
from bruno.data.acquisition import read_acquisition
from bruno.data.nifti import affine_spacing, load_nifti
from bruno.data.preprocess import load_slice_table
from bruno.data.slices import extract_slices
from bruno.errors import ConfigError
from bruno.files import check_outputs, png_beside
from bruno.latent_volume import load_latent_volume_model
from bruno.plots import save_acquisition_figure
from bruno.poses import place_acquisition
from bruno.reconstruction import evenly_spread, reconstruct, write_reconstruction
from bruno.runs import make_deterministic, restore_model

METHODS = ("bruno", "latent_pca_gp", "linear", "population_mean", "pca", "atlas_gp", "pca_gp")
logger = logging.getLogger("reconstruct")


def main() -> None:
    parser = make_parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory written by scripts/train.py")
    source.add_argument("--config", help="experiment YAML, for a classical --method without a trained run")
    parser.add_argument("--method", default="bruno", choices=METHODS, help="bruno (default: the run's model) or a classical baseline")
    parser.add_argument("--input", required=True, nargs="+",
                        help="the acquired slices (one sparse stack or single-slice files), or a whole volume with --contexts")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--slab-mm", nargs=2, type=float, metavar=("LO", "HI"),
                       help="acquired slices: world mm (along the slice normal) of the two ends of the training slab")
    which.add_argument("--poses", help="acquired slices: the pose of each, inferior first, e.g. 20,45,70")
    which.add_argument("--contexts", help="whole volume: comma-separated pose indices to condition on, e.g. 20,40,60")
    which.add_argument("--num-contexts", type=int, help="whole volume: k evenly spread context poses (0: sample the prior)")
    parser.add_argument("--slices", help="acquired slices: read only these axial slices of the one --input file (indices in RAS+ order, 0 = most inferior)")
    parser.add_argument("--intensity-window", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="acquired slices: map these intensities to 0 and 255 (default: the acquired voxels' percentiles)")
    parser.add_argument("--output", required=True, help="mean volume (.nii or .nii.gz)")
    parser.add_argument("--png", help="figure of the given slices and the reconstruction (default for acquired slices: OUTPUT with .png)")
    parser.add_argument("--decoded-mean", help="also write the decoded predictive mean (one image per slice, no sampling) here")
    parser.add_argument("--std", help="also write the per-voxel standard deviation here")
    parser.add_argument("--samples-out", help="also write every sample as a 4D series here")
    add_samples(parser, "slice")
    add_keep_contexts(parser)
    add_common(parser, checkpoint=True)
    args = parser.parse_args()

    num_samples = parse_samples(args.samples)
    acquired = args.contexts is None and args.num_contexts is None
    _check_flags(args, acquired)
    paths = {"mean": args.output, "mode": args.decoded_mean, "std": args.std, "samples": args.samples_out}
    png = args.png or (png_beside(args.output) if acquired else None)
    check_outputs(dict(zip(("--output", "--decoded-mean", "--std", "--samples-out"), paths.values())), {"--png": png},
                  args.overwrite, args.input)
    model, config, _ = restore_model(args.run, args.checkpoint) if args.run else (None, load_config(args.config), None)
    make_deterministic(args.seed)
    num_poses, progress = config.data.num_poses, not args.no_progress
    if acquired:
        acquisition = read_acquisition(args.input, config.data, args.slices and parse_integers("--slices", args.slices),
                                       args.intensity_window)
        placement = place_acquisition(acquisition, load_slice_table(config, progress), model, args.slab_mm and tuple(args.slab_mm),
                                      args.poses and parse_integers("--poses", args.poses), log=True)
        images, contexts, affine, intensity = placement.images, placement.poses, placement.affine, acquisition.intensity
        logger.info("%d acquired slice(s) at %s mm along the normal -> poses %s; intensity window %.4g..%.4g", len(contexts),
                    ", ".join(f"{z:.1f}" for z in acquisition.positions_mm), contexts, *intensity)
    else:
        contexts = (parse_contexts(args.contexts, num_poses) if args.contexts is not None
                    else evenly_spread(args.num_contexts, num_poses))
        slices = extract_slices(load_nifti(args.input[0]), config.data)
        images, affine, intensity = slices.images, slices.affine, (slices.intensity_low, slices.intensity_high)
    if args.method == "bruno":
        arrays = reconstruct(model, images, contexts, num_samples, seed=args.seed, keep_contexts=args.keep_contexts,
                             progress=progress)._asdict()
    else:
        table = load_slice_table(config, progress)
        method = (load_latent_volume_model(model, table, args.run, progress=progress)[0] if args.method == "latent_pca_gp"
                  else load_methods(table, progress=progress)[0][args.method])
        if len(contexts) < method.min_contexts:
            raise ConfigError(f"--method {args.method}: needs at least {method.min_contexts} given slice(s), got {len(contexts)}")
        if args.std and not method.has_uncertainty:
            raise ConfigError(f"--std: --method {args.method} has no uncertainty map (pca has one)")
        samples = method.sample(images, contexts, num_samples, args.seed) if args.samples_out else None
        if args.samples_out and samples is None:
            raise ConfigError(f"--samples-out: --method {args.method} draws no samples (pca does)")
        arrays = {**method.estimate(images, contexts, with_std=bool(args.std))._asdict(), "samples": samples, "mode": None}
    written = write_reconstruction(paths, arrays, affine, intensity, args.overwrite)
    if png:
        save_acquisition_figure(images[contexts], contexts, arrays["mean"], arrays["std"], png, f"{args.method}: {len(contexts)} "
                                f"slice(s) at poses {contexts} of {num_poses}", affine_spacing(affine), args.overwrite)
    logger.info("conditioned on poses %s of %d; wrote %s", contexts, num_poses, ", ".join([*written, *([png] if png else [])]))


def _check_flags(args: argparse.Namespace, acquired: bool) -> None:
    if args.method in ("bruno", "latent_pca_gp") and args.run is None:
        raise ConfigError(f"--method {args.method} needs --run (a trained model); with --config choose a classical --method")
    if args.method != "bruno" and args.decoded_mean:
        raise ConfigError(f"--decoded-mean: only BRUNO has one; --method {args.method} writes its estimate to --output")
    if not acquired and (args.slices or args.intensity_window):
        raise ConfigError("--slices / --intensity-window: only for acquired slices, not with --contexts / --num-contexts")
    if not acquired and len(args.input) != 1:
        raise ConfigError(f"--input: {len(args.input)} files; --contexts/--num-contexts take one whole volume "
                          "(for acquired slices in several files, leave those two out)")


if __name__ == "__main__":
    run(main)
