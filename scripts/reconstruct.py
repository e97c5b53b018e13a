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
With --method, another method reconstructs instead (bruno.reconstruction.registry): a classical baseline
fitted on the training split of the run's, or --config's, table (settings chosen on its val split and
stored beside it): linear, population_mean, pca (the Gaussian volume model: conditional mean, --std and
--samples-out too), atlas_gp or pca_gp; or latent_pca_gp (needs --run): the run's flow with a Gaussian
volume model of its training latents.

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

from _cli import add_common, add_keep_contexts, add_samples, make_parser, read_request, run

from bruno.commands.reconstruct import Request, run_reconstruction
from bruno.reconstruction import METHODS


def main() -> None:
    parser = make_parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory written by scripts/train.py")
    source.add_argument("--config", help="experiment YAML, for a classical --method without a trained run")
    parser.add_argument("--method", default="bruno", choices=list(METHODS), help="bruno (default: the run's model) or another method")
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
    run_reconstruction(read_request(Request, args), progress=not args.no_progress)


if __name__ == "__main__":
    run(main)
