"""Test negative log-likelihood of a trained run: nats per image and bits/dim on one split.

Scores random sequences of T slices of the split's volumes: the targets (the last T - n_c slices)
given the contexts (the first n_c), as in training. Writes RUN_DIR/nll_<split>_T<T>_c<n_c>.json.
For the GQN and C-VAE baselines the figure is −ELBO, an upper bound of the NLL.

Example:
    python scripts/test_nll.py runs/phantom --seq-len 9 --num-context 8
"""
from __future__ import annotations

import json
import logging
import os

from _cli import make_parser, run

from bruno.commands.options import check_count
from bruno.data.preprocess import load_slice_table
from bruno.errors import ConfigError
from bruno.experiments.nll import sequence_nll
from bruno.files import atomic_output, check_output_path
from bruno.runs import RunDir, make_deterministic, restore_model

logger = logging.getLogger("test_nll")


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("run_dir", help="run directory written by scripts/train.py")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="which volumes (default test)")
    parser.add_argument("--seq-len", type=int, help="T, slices per sequence (default: the run's train.seq_len)")
    parser.add_argument("--num-context", type=int, help="n_c, contexts per sequence (default: the run's train.num_context)")
    parser.add_argument("--num-sequences", type=int, default=1000, help="random sequences to score (default 1000)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"), help="which checkpoint (default best)")
    parser.add_argument("--seed", type=int, default=317070, help="seed of the sequences (default: upstream's 317070)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    args = parser.parse_args()
    check_count("--num-sequences", args.num_sequences)

    config = RunDir(args.run_dir).config()  # every check before the model is restored
    seq_len = args.seq_len or config.train.seq_len
    num_context = config.train.num_context if args.num_context is None else args.num_context
    if not 0 <= num_context < seq_len <= config.data.num_poses:
        raise ConfigError(f"--num-context {num_context} --seq-len {seq_len}: expected 0 <= n_c < T <= {config.data.num_poses}")
    output = os.path.join(args.run_dir, f"nll_{args.split}_T{seq_len}_c{num_context}.json")
    check_output_path(output, args.overwrite)
    table = load_slice_table(config, not args.no_progress)
    if len(table.volumes_in(args.split)) == 0:
        raise ConfigError(f"--split {args.split}: {table.path} has no {args.split} volumes")
    model, _, step = restore_model(args.run_dir, args.checkpoint)
    make_deterministic(args.seed)
    result = sequence_nll(model, table, args.split, seq_len, num_context, args.num_sequences,
                          config.train.batch_size, args.seed, not args.no_progress)
    with atomic_output(output, args.overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump({"checkpoint_step": step, "split": args.split, "seq_len": seq_len, "num_context": num_context,
                   "bound": not model.exact_log_prob, **result._asdict()}, f, indent=1)
    logger.info("%s (step %d), %s split, T=%d, n_c=%d, %d sequences: %.2f nats/image, %.4f bits/dim%s -> %s",
                args.run_dir, step, args.split, seq_len, num_context, result.num_sequences, result.nats_per_image,
                result.bits_per_dim, "" if model.exact_log_prob else " (-ELBO, an upper bound)", output)


if __name__ == "__main__":
    run(main)
