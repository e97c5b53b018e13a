"""Sample the learned "mental map": the prior of a trained run, with no context slices (an atlas).

Writes the mean over samples as NIfTI (the slab geometry of the run's first training volume, stored in the run;
runs written before it read their table, which is never made here) and a PNG montage of its slices.

Example:
    python scripts/sample_prior.py runs/phantom --samples 50
"""
from __future__ import annotations

import logging
import os

import numpy as np
from _cli import add_common, add_samples, make_parser, parse_samples, run

from bruno.data.nifti import affine_spacing
from bruno.files import check_outputs, png_beside
from bruno.plots import save_slice_montage
from bruno.reconstruction import sample_volume, write_volume
from bruno.runs import make_deterministic, reference_affine, restore_model

logger = logging.getLogger("sample_prior")


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("run_dir", help="run directory written by scripts/train.py")
    parser.add_argument("--output", help="atlas volume (default RUN_DIR/atlas.nii.gz; the PNG goes beside it)")
    add_samples(parser, "slice")
    add_common(parser, checkpoint=True)
    args = parser.parse_args()

    num_samples = parse_samples(args.samples)
    output = args.output or os.path.join(args.run_dir, "atlas.nii.gz")
    png = png_beside(output)
    check_outputs({"--output": output}, {"the figure": png}, args.overwrite)
    model, config, step = restore_model(args.run_dir, args.checkpoint)
    make_deterministic(args.seed)
    affine = reference_affine(args.run_dir, config, not args.no_progress)
    images = np.zeros((model.num_poses, model.image_size, model.image_size), np.uint8)  # no contexts: none is read
    result = sample_volume(model, images, [], num_samples, seed=args.seed, progress=not args.no_progress)
    write_volume(output, result.mean, affine, None, args.overwrite)
    save_slice_montage(result.mean, png, f"prior mean of {args.run_dir} (step {step}), {num_samples} samples per slice",
                       spacing=affine_spacing(affine), overwrite=args.overwrite)
    logger.info("wrote %s and %s", output, png)


if __name__ == "__main__":
    run(main)
