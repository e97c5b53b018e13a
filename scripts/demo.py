"""A first result in minutes: train a small model on the built-in phantom, then reconstruct a held-out
phantom head from a simulated 5-slice acquisition, through the same path as real sparse scans.

1. Builds data/phantom.h5 if missing and trains config_rnn/demo.yaml into RUN_DIR (reused when it
   already holds a trained model).
2. Takes the first test subject, writes 5 of its raw axial slices, evenly spaced through the slab, as
   one sparse NIfTI stack with their true affine (OUT/acquired.nii.gz), and its whole volume
   (OUT/truth.nii.gz, which the reconstruction never reads).
3. Reconstructs from the acquired slices alone (their own intensity window, poses estimated from
   their world positions by the model's likelihood): OUT/reconstruction.nii.gz (mean of the samples),
   OUT/std.nii.gz (per-voxel standard deviation) and OUT/reconstruction.png: the truth, the mean, their absolute
   difference and the std side by side at slices it did not see. It prints where the slices were placed against
   their true poses, and the mean's SSIM.

Open the NIfTI files in any viewer (they share world coordinates), or look at the PNG.

Example:
    python scripts/demo.py                 # about 5 minutes on 2 CPU cores
    python scripts/demo.py --out demo_out --overwrite
"""
from __future__ import annotations

from _cli import add_common, make_parser, run

from bruno.commands.demo import run_demo


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--run-dir", default="runs/demo", help="where the demo model is trained (reused once trained; an interrupted training is resumed)")
    parser.add_argument("--out", default="demo", help="folder for the NIfTI files and the PNG (default: demo)")
    parser.add_argument("--samples", type=int, default=20, help="samples per slice (default 20)")
    parser.add_argument("--max-steps", type=int, help="training steps (default: config_rnn/demo.yaml's 400)")
    add_common(parser, seed_help="the training and the samples", overwrite="replace earlier demo outputs")
    args = parser.parse_args()
    print(run_demo(args.run_dir, args.out, args.samples, args.max_steps, args.seed, args.overwrite, not args.no_progress))


if __name__ == "__main__":
    run(main)
