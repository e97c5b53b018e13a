"""Evaluate trained runs as in the paper: reconstruct test volumes from k evenly spread slices.

For every subject and k, scores (SSIM and CC per slice, PSNR per volume) each run's mean image,
deterministic image and single samples, and the classical baselines: linear interpolation between the
contexts, the training population's mean volume, the Gaussian volume model (PCA) conditioned on the
contexts, and GP interpolation of the residuals of the atlas and of that model. The baselines' settings
are chosen once on the val split and stored beside the table (data/<name>.baselines.json).
Several runs (BRUNO, GQN, C-VAE: model.kind) trained on the same data are scored on the same subjects
and contexts, in one table; with --config and no --run, only the baselines.
Every method with a distribution (each run's samples; the Gaussian volume model in closed form and by
samples) is also scored as a forecast of the non-acquired voxels inside the head: coverage of its
central 50 % and 90 % intervals (from the truth's rank among the samples, or the closed form), CRPS,
and the conditional NLL of each non-acquired slice in bits/dim (bruno/metrics/forecast.py).
Writes results.md (tables like the paper's 3a/3b, each BRUNO row paired against the best baseline
per k, and the forecast scores), results.csv, results.json (per slice), ssim_curves.png (per-slice
SSIM per k, Fig. 3c), reliability.png (observed against nominal interval coverage, per k) and
montage.png (contexts, truth, each model's samples, mean, std, and every baseline).
With --protocol acquired, every method sees only what a clinician has: the k raw slices of the test
volume's own file nearest to the context poses, read on their own (their own intensity window), placed
by estimated poses (or --poses-from known), reconstructed, and scored on the truth's pose grid. With --input
too, the truth of each new file is made as in training (its slab and window from the whole file).
With --sample-counts, measures instead how many samples BRUNO's mean image needs: the SSIM/CC of the
mean of the first S samples for each S, against the largest S (sample_counts.md, sample_counts.json).

Examples:
    python scripts/evaluate.py --run runs/phantom
    python scripts/evaluate.py --run runs/ixi --samples 20 --contexts-list 1,3,5,9
    python scripts/evaluate.py --run runs/ixi runs/ixi_gqn runs/ixi_cvae --samples 20 --out results/ixi_all
    python scripts/evaluate.py --run runs/adni --input /data/new_scans --out results/new
    python scripts/evaluate.py --run runs/adni --input /data/new_scans --protocol acquired --out results/new_acquired
    python scripts/evaluate.py --run runs/ixi --split val --contexts-list 1,5 --sample-counts 5,10,20,50,100
    python scripts/evaluate.py --config config_rnn/hippocampus.yaml --out results/hippocampus_baselines
    python scripts/evaluate.py --run runs/ixi --samples 20 --latent-volume   # + the flow with a Gaussian model of its latents
    python scripts/evaluate.py --run runs/ixi --samples 20 --protocol acquired --out runs/eval_ixi_acquired
"""
from __future__ import annotations

from _cli import add_common, add_keep_contexts, add_samples, add_subject_source, make_parser, read_request, run

from bruno.commands.evaluate import Request, run_evaluation


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
    print(run_evaluation(read_request(Request, args), progress=not args.no_progress))


if __name__ == "__main__":
    run(main)
