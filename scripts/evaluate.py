"""Evaluate trained runs as in the paper: reconstruct test volumes from k evenly spread slices.

For every subject and k, scores (SSIM and CC per slice, PSNR per volume) each run's mean image,
deterministic image and single samples, and the classical baselines: linear interpolation between the
contexts, the training population's mean volume, the Gaussian volume model (PCA) conditioned on the
contexts, and GP interpolation of the residuals of the atlas and of that model. The baselines' settings
are chosen once on the val split and stored beside the table (data/<name>.baselines.json).
Several runs (BRUNO, GQN, C-VAE: model.kind) trained on the same data are scored on the same subjects
and contexts, in one table; with --config and no --run, only the baselines.
Writes results.md (tables like the paper's 3a/3b, and each BRUNO row paired against the best baseline
per k), results.csv, results.json (per slice), ssim_curves.png (per-slice SSIM per k, Fig. 3c) and
montage.png (contexts, truth, each model's samples, mean, std, and every baseline).
With --protocol acquired, every method sees only what a clinician has: the k raw slices of the test
volume's own file nearest to the context poses, read on their own (their own intensity window), placed
by estimated poses (or --poses-from known), reconstructed, and scored on the truth's pose grid.
With --sample-counts, measures instead how many samples BRUNO's mean image needs: the SSIM/CC of the
mean of the first S samples for each S, against the largest S (sample_counts.md, sample_counts.json).

Examples:
    python scripts/evaluate.py --run runs/phantom
    python scripts/evaluate.py --run runs/ixi --samples 20 --contexts-list 1,3,5,9
    python scripts/evaluate.py --run runs/ixi runs/ixi_gqn runs/ixi_cvae --samples 20 --out results/ixi_all
    python scripts/evaluate.py --run runs/adni --input /data/new_scans --out results/new
    python scripts/evaluate.py --run runs/ixi --split val --contexts-list 1,5 --sample-counts 5,10,20,50,100
    python scripts/evaluate.py --config config_rnn/hippocampus.yaml --out results/hippocampus_baselines
    python scripts/evaluate.py --run runs/ixi --samples 20 --latent-volume   # + the flow with a Gaussian model of its latents
    python scripts/evaluate.py --run runs/ixi --samples 20 --protocol acquired --out runs/eval_ixi_acquired
"""
from __future__ import annotations

import logging
import os

from _cli import add_common, add_keep_contexts, add_samples, add_subject_source, make_parser, parse_counts, parse_ks, parse_samples, run

from bruno.config import load_config
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import load_subjects
from bruno.errors import ConfigError
from bruno.experiments.evaluate_runs import Plan, evaluate_and_report
from bruno.experiments.evaluation import load_runs
from bruno.experiments.report import REPORT_FILES
from bruno.experiments.sample_budget import STUDY_FILES, sample_count_study, write_study
from bruno.files import check_output_dir
from bruno.reconstruction import evenly_spread, fetal_contexts
from bruno.runs import make_deterministic

DEFAULT_KS = (1, 3, 5, 9)


def main() -> None:
    parser = make_parser(__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", nargs="+", help="run directories written by scripts/train.py (same data)")
    which.add_argument("--config", help="experiment YAML: score only the classical baselines on its table (needs --out)")
    add_subject_source(parser)
    parser.add_argument("--contexts-list", help="numbers of context slices k (default: those of 1,3,5,9 below N)")
    parser.add_argument("--context-table", choices=("even", "fetal"), default="even",
                        help="even: idx_i = round((i+1)N/(k+1)); fetal: the paper's Table 4a indices (N = 80)")
    add_samples(parser)
    parser.add_argument("--sample-counts", help="comma-separated S values: measure the mean image's SSIM per S instead")
    add_keep_contexts(parser)
    parser.add_argument("--latent-volume", action="store_true",
                        help="also score each BRUNO run's flow with a Gaussian volume model of its latents + GP residual "
                             "(settings chosen on val once, stored in RUN/latent_volume.json)")
    parser.add_argument("--protocol", default="paper", choices=("paper", "acquired"),
                        help="paper (default): every method gets the test volume's slices at the context poses; acquired: "
                             "only the k raw slices of the volume's own file nearest to those poses, read on their own "
                             "(their own intensity window), placed by --poses-from, scored on the truth's grid")
    parser.add_argument("--poses-from", choices=("estimated", "known"),
                        help="with --protocol acquired: estimate the poses (first BRUNO run's likelihood, or NCC with the "
                             "atlas without a run; default) or take them from the truth's slab")
    parser.add_argument("--out", help="output folder (default: the first RUN/eval_<split or input>)")
    add_common(parser, checkpoint=True, overwrite="replace existing result files")
    args = parser.parse_args()
    if args.protocol == "acquired" and (args.input or args.sample_counts):
        raise ConfigError("--protocol acquired: scores volumes of the run's table (--split), not --input or --sample-counts")
    if args.config and not args.out:
        raise ConfigError("--config: pass --out too (there is no run folder to write into)")
    if args.config and args.sample_counts:
        raise ConfigError("--sample-counts measures a model's samples: pass --run")
    if args.config and (args.latent_volume or args.keep_contexts is not None):
        raise ConfigError(f"--{'latent-volume' if args.latent_volume else 'keep-contexts'}: needs a trained run: pass --run")
    if args.poses_from and args.protocol != "acquired":
        raise ConfigError("--poses-from: only with --protocol acquired")
    poses_from = args.poses_from or "estimated"

    models, steps, config = ({}, {}, load_config(args.config)) if args.config else load_runs(args.run, args.checkpoint)
    make_deterministic(args.seed)
    num_poses, progress, source = config.data.num_poses, not args.no_progress, args.input or args.split
    ks = parse_ks(args.contexts_list, num_poses, DEFAULT_KS)
    num_samples = parse_samples(args.samples)
    counts = parse_counts(args.sample_counts) if args.sample_counts else None
    contexts_for = fetal_contexts if args.context_table == "fetal" else evenly_spread
    for k in ks:
        contexts_for(k, num_poses)  # fail now, not after hours of sampling
    out = args.out or os.path.join(args.run[0], "eval_" + ("input" if args.input else args.split))
    check_output_dir(out, STUDY_FILES if counts else REPORT_FILES, args.overwrite)

    table = load_slice_table(config, progress)
    subjects = load_subjects(table, config.data, args.split, args.input, args.max_subjects)
    if counts:
        name, model = next(iter(models.items()))
        study = sample_count_study(model, subjects, ks, counts, contexts_for, args.seed, progress)
        print(write_study(study, f"{args.run[0]} (step {steps[name]}): samples needed, {source}", out, args.overwrite))
        return
    plan = Plan(ks, contexts_for, num_samples, args.seed, args.keep_contexts, args.latent_volume, args.protocol, poses_from)
    print(evaluate_and_report(table, config.data, models, steps, args.run or [], subjects, source, plan, out, args.overwrite, progress))
    logging.getLogger("evaluate").info("wrote %s to %s", ", ".join(REPORT_FILES), out)


if __name__ == "__main__":
    run(main)
