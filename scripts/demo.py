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

import os

import numpy as np
from _cli import add_common, make_parser, run

from bruno.commands.options import check_count
from bruno.commands.train import train_unless_done
from bruno.config import load_config, override
from bruno.data.acquisition import grid_poses, spread_stack
from bruno.data.phantom import phantom_subject
from bruno.data.preprocess import load_slice_table
from bruno.experiments.acquired_protocol import onto_truth_grid
from bruno.files import check_output_dir
from bruno.metrics import slice_scores
from bruno.plots import save_comparison_figure
from bruno.reconstruction import ModelSampling, save_nifti
from bruno.reconstruction.pipeline import prepare_acquired, reconstruct_and_write
from bruno.runs import RunDir, make_deterministic, restore_model

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config_rnn", "demo.yaml")
NUM_ACQUIRED = 5
OUTPUTS = ("acquired.nii.gz", "truth.nii.gz", "reconstruction.nii.gz", "std.nii.gz", "reconstruction.png")



def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--run-dir", default="runs/demo", help="where the demo model is trained (reused once trained; an interrupted training is resumed)")
    parser.add_argument("--out", default="demo", help="folder for the NIfTI files and the PNG (default: demo)")
    parser.add_argument("--samples", type=int, default=20, help="samples per slice (default 20)")
    parser.add_argument("--max-steps", type=int, help="training steps (default: config_rnn/demo.yaml's 400)")
    add_common(parser, seed_help="the training and the samples", overwrite="replace earlier demo outputs")
    args = parser.parse_args()
    check_count("--samples", args.samples)
    paths = {name: os.path.join(args.out, name) for name in OUTPUTS}
    check_output_dir(args.out, OUTPUTS, args.overwrite)
    config = override(load_config(CONFIG), "train", **({} if args.max_steps is None else {"max_steps": args.max_steps}))
    table = load_slice_table(config, progress=not args.no_progress)
    train_unless_done(config, args.run_dir, args.seed, progress=not args.no_progress)
    model, _, step = restore_model(args.run_dir)
    make_deterministic(args.seed)
    os.makedirs(args.out, exist_ok=True)

    info = table.info(int(table.volumes_in("test")[0]))
    volume = phantom_subject(int(info.subject.rsplit("_", 1)[1]), config.data.phantom)
    save_nifti(paths["acquired.nii.gz"], *spread_stack(volume, info.slab, NUM_ACQUIRED), args.overwrite)
    save_nifti(paths["truth.nii.gz"], volume.data, volume.affine, args.overwrite)

    prepared = prepare_acquired([paths["acquired.nii.gz"]], config.data, RunDir(args.run_dir).inference(), model)
    assert prepared.acquisition is not None
    true_poses = grid_poses(info.affine, prepared.acquisition).tolist()
    off = sum(p != t for p, t in zip(prepared.contexts, true_poses))
    result = reconstruct_and_write(ModelSampling(model), prepared, {"mean": paths["reconstruction.nii.gz"], "std": paths["std.nii.gz"]},
                                   None, args.samples, args.seed, args.overwrite, not args.no_progress)
    assert result.samples is not None
    # the figure compares on the truth's grid: the reconstruction mapped there from where its slices were placed
    on_truth = onto_truth_grid(info, prepared.acquisition, prepared.affine, config.data.num_poses)(result.samples)
    truth = table.read(table.rows_of(info.index)).astype(np.float64)
    mean = on_truth.mean(axis=0)
    others = [q for q in range(len(truth)) if q not in true_poses]
    ssim = float(slice_scores(mean[others], truth[others]).ssim.mean())
    save_comparison_figure(truth, mean, on_truth.std(axis=0), true_poses, paths["reconstruction.png"],
                           f"demo ({args.run_dir}, step {step}): {info.subject} from {NUM_ACQUIRED} acquired slices, "
                           f"SSIM {ssim:.3f}", args.overwrite)
    print(f"{info.subject}: {NUM_ACQUIRED} acquired slices placed at poses {prepared.contexts}, true {true_poses} "
          f"(placement error: {off} of {NUM_ACQUIRED} slices off, mean {np.mean(np.abs(np.subtract(prepared.contexts, true_poses))):.1f} "
          f"poses); mean SSIM {ssim:.3f} over the {len(others)} slices it did not see")
    print("wrote " + ", ".join(paths.values()))


if __name__ == "__main__":
    run(main)
