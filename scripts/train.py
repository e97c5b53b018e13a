"""Train Conditional BRUNO, or one of the paper's GQN / C-VAE baselines (model.kind), on an experiment's slice table.

Step 0 is the data-dependent initialisation, then NLL steps (−ELBO for the baselines); validation NLL
every train.validate_every steps (best checkpoint in RUN_DIR/best), checkpoints every
train.checkpoint_every steps (and on Ctrl-C or SIGTERM, at the end of the step: --resume then continues
exactly), TensorBoard logs in RUN_DIR/tensorboard, metrics in RUN_DIR/metrics.jsonl.
The phantom table is generated if missing; NIfTI experiments need scripts/preprocess.py first.
Where it runs (--strategy): one device (default), the GPUs of this machine (mirrored, or --gpus N),
or several worker processes (multiworker: each worker runs this same command with its own TF_CONFIG;
scripts/launch_workers.py starts local ones). train.batch_size is the global batch, split across all
replicas of all workers; only worker 0 writes RUN_DIR. A population run (model.process: population) ends by
encoding the train split again into its bank and choosing its shrinkage c on val (RUN_DIR/population.npz, .json);
--resume at the step reached does only that.

Examples:
    python scripts/train.py config_rnn/phantom.yaml
    python scripts/train.py config_rnn/ixi.yaml --run-dir runs/ixi --resume
    python scripts/train.py config_rnn/adni.yaml --gpus 4
    python scripts/launch_workers.py --workers 2 -- config_rnn/ixi.yaml --run-dir runs/ixi_2w
    tensorboard --logdir runs/phantom/tensorboard
"""
from __future__ import annotations

import logging
import math
import os

from _cli import drop_native_log_lines, make_parser, run

from bruno.commands.train import train_run
from bruno.config import load_config, override
from bruno.errors import ConfigError
from bruno.runs import make_deterministic
from bruno.training.distribute import STRATEGIES, make_strategy

logger = logging.getLogger("train")


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("config", help="experiment YAML file (config_rnn/*.yaml)")
    parser.add_argument("--run-dir", help="where checkpoints and logs go (default: runs/<config name>)")
    parser.add_argument("--max-steps", type=int, help="train up to this step (overrides train.max_steps)")
    parser.add_argument("--seed", type=int, help="seed of the weights and the data stream (overrides train.seed)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="delete the run directory's previous run and start again")
    parser.add_argument("--strategy", choices=STRATEGIES, help="default (one device), mirrored (this machine's GPUs) or "
                                                               "multiworker (TF_CONFIG; see scripts/launch_workers.py)")
    parser.add_argument("--gpus", type=int, help="shorthand for --strategy mirrored on N GPUs (N > 1)")
    args = parser.parse_args()

    if args.gpus is not None and (args.gpus < 1 or args.strategy not in (None, "mirrored")):
        raise ConfigError(f"--gpus {args.gpus}: expected N >= 1, and no --strategy other than mirrored")
    name = args.strategy or ("mirrored" if (args.gpus or 1) > 1 else "default")
    if name == "multiworker":
        drop_native_log_lines()
    strategy = make_strategy(name, args.gpus or 0, "--gpus")  # first: multi-worker set-up must precede any TensorFlow op

    config = load_config(args.config)
    config = override(config, "train", **{k: v for k, v in (("max_steps", args.max_steps), ("seed", args.seed)) if v is not None})
    run_dir = args.run_dir or os.path.join("runs", os.path.splitext(os.path.basename(args.config))[0])
    make_deterministic(config.train.seed)
    trainer, result = train_run(config, run_dir, args.resume, args.overwrite, strategy, progress=not args.no_progress)
    if math.isnan(result.train_loss):  # resumed at the step it had reached: nothing trained
        logger.info("step %d: nothing left to train, best val %.4f bits/dim; checkpoints in %s", result.step,
                    trainer.bits_per_dim(result.best_val_loss), run_dir)
    else:
        logger.info("step %d: train %.4f bits/dim, best val %.4f bits/dim, %.0f s (%.1f images/s); checkpoints in %s", result.step,
                    trainer.bits_per_dim(result.train_loss), trainer.bits_per_dim(result.best_val_loss), result.seconds,
                    result.images_per_second, run_dir)

if __name__ == "__main__":
    run(main)
