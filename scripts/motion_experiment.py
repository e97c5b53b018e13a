"""The motion experiment (SPEC §5.4): Gaussian-average versus BRUNO initialisation of slice-to-volume reconstruction.

For each test volume: simulate three orthogonal stacks (axial, coronal, sagittal) whose slices are
each moved by a random translation (default: independent U[−10, 10] mm per axis, in world units,
so it follows the voxel size); form the Gaussian-average initial volume (slices at their nominal
positions, σ = 1 voxel); form BRUNO's (mean of --samples samples per pose, conditioned on 4
motion-free slices: the fetal table's 10, 30, 50, 70 of N = 80, scaled to the run's N); run
translation-only slice-to-volume registration (SVR) from both; score everything against the truth
with SSIM and CC.
Writes results.md, results.csv, results.json, svr_curves.png (SSIM and slice position error per
SVR iteration) and views_<subject>.png (orthogonal planes of the truth and each volume).

Examples:
    python scripts/motion_experiment.py --run runs/ixi
    python scripts/motion_experiment.py --run runs/phantom --translation-mm 5 --law sphere --out results/motion5
    python scripts/motion_experiment.py --run runs/fetal --input /data/fetal_test --contexts 10,30,50,70
"""
from __future__ import annotations

import logging
import os

from _cli import add_common, add_subject_source, make_parser, run

from bruno.commands.motion import checked_settings, study_contexts
from bruno.commands.options import check_count
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import load_subjects
from bruno.experiments.motion.simulate import LAWS
from bruno.experiments.motion.study import RESULT_FILES, MotionSettings, motion_markdown, run_study
from bruno.files import check_output_dir
from bruno.runs import make_deterministic, restore_model


def main() -> None:
    defaults = MotionSettings()
    parser = make_parser(__doc__)
    parser.add_argument("--run", required=True, help="run directory written by scripts/train.py")
    add_subject_source(parser)
    parser.add_argument("--translation-mm", type=float, default=defaults.translation_mm,
                        help="largest translation per axis (uniform) or its magnitude (sphere), mm (default 10)")
    parser.add_argument("--law", choices=LAWS, default=defaults.law,
                        help="uniform: each axis U[-m, m]; sphere: random direction, magnitude m (default uniform)")
    parser.add_argument("--sigma", type=float, default=defaults.sigma, help="Gaussian average σ, voxels (default 1)")
    parser.add_argument("--svr-sigma", type=float, default=defaults.svr_sigma,
                        help="σ of SVR's re-scattering, voxels (default 0.5, chosen on validation subjects)")
    parser.add_argument("--svr-iterations", type=int, default=defaults.svr_iterations, help="SVR iterations (default 5)")
    parser.add_argument("--search-mm", type=float,
                        help="largest correction SVR may apply per axis, mm (default 2 × --translation-mm, at least 1)")
    parser.add_argument("--contexts",
                        help="the motion-free slices BRUNO conditions on (default: 10,30,50,70 of N = 80 scaled to N)")
    parser.add_argument("--samples", type=int, default=defaults.num_samples, help="BRUNO samples per pose (default 100)")
    parser.add_argument("--out", help="output folder (default RUN/motion_<split or input>)")
    add_common(parser, seed=defaults.seed, seed_help="the translations and samples", checkpoint=True,
               overwrite="replace existing result files")
    args = parser.parse_args()

    settings = checked_settings(args.translation_mm, args.law, args.sigma, args.svr_sigma, args.svr_iterations,
                                args.search_mm, args.samples, args.seed)
    check_count("--max-subjects", args.max_subjects)
    model, config, step = restore_model(args.run, args.checkpoint)
    make_deterministic(args.seed)
    contexts = study_contexts(args.contexts, config.data.num_poses)
    out = args.out or os.path.join(args.run, "motion_" + ("input" if args.input else args.split))
    check_output_dir(out, RESULT_FILES, args.overwrite)

    subjects = load_subjects(load_slice_table(config, not args.no_progress), config.data, args.split, args.input,
                             args.max_subjects)
    title = f"Motion experiment: {os.path.basename(os.path.normpath(args.run))} (step {step}), {args.input or args.split}"
    about = {"run": args.run, "checkpoint_step": step, "source": args.input or args.split}
    results = run_study(model, subjects, contexts, settings, out, title, about, args.overwrite, not args.no_progress)
    print(motion_markdown(results, title))
    logging.getLogger("motion_experiment").info("wrote %s and %d views_*.png to %s", ", ".join(RESULT_FILES), len(subjects), out)


if __name__ == "__main__":
    run(main)
