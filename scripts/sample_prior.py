"""Sample the learned "mental map": the prior of a trained run, with no context slices (an atlas).

Writes the mean over samples as NIfTI (geometry of the first training volume of the run's table)
and a PNG montage of its slices.

Example:
    python scripts/sample_prior.py runs/phantom --samples 50
"""
from __future__ import annotations

from _cli import make_parser, run

import logging
import os

from bruno.data.nifti import affine_spacing
from bruno.files import NIFTI_EXTENSIONS, check_extension, check_output_path
from bruno.plots import save_slice_montage
from bruno.reconstruction import reconstruct, write_volume
from bruno.data.preprocess import load_slice_table
from bruno.runs import make_deterministic, restore_model

logger = logging.getLogger("sample_prior")


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("run_dir", help="run directory written by scripts/train.py")
    parser.add_argument("--samples", type=int, default=100, help="samples per slice (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    parser.add_argument("--output", help="atlas volume (default RUN_DIR/atlas.nii.gz; the PNG goes beside it)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"), help="which checkpoint (default best)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args()

    output = args.output or os.path.join(args.run_dir, "atlas.nii.gz")
    check_extension("--output", output, NIFTI_EXTENSIONS)
    png = output.removesuffix(".gz").removesuffix(".nii") + ".png"
    for path in (output, png):
        check_output_path(path, args.overwrite)
    model, config, step = restore_model(args.run_dir, args.checkpoint)
    make_deterministic(args.seed)
    table = load_slice_table(config, not args.no_progress)
    reference = table.info(int(table.volumes_in("train")[0]))
    images = table.read(table.rows_of(reference.index))
    result = reconstruct(model, images, [], args.samples, seed=args.seed, progress=not args.no_progress)
    write_volume(output, result.mean, reference.affine, None, args.overwrite)
    save_slice_montage(result.mean, png, f"prior mean of {args.run_dir} (step {step}), {args.samples} samples per slice",
                       spacing=affine_spacing(reference.affine), overwrite=args.overwrite)
    logger.info("wrote %s and %s", output, png)


if __name__ == "__main__":
    run(main)
