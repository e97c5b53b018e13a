"""Measure an experiment's speed and memory on this machine: training, the flow's passes, sampling.

Synthetic batches of the config's shapes (no data needed). Prints a summary and writes every figure
as JSON: training images/s and GFLOP/s (eager, tf.function, XLA) with the first call's
tracing/compiling time, the fused forward-and-log-det against the forward pass and the plain TFP
bijector methods, the inverse pass, one dense volume (N poses × S samples), and peak memory.
BENCHMARKS.md records these figures per config.

Examples:
    python scripts/benchmark.py config_rnn/tiny.yaml --out tiny.json
    python scripts/benchmark.py config_rnn/ixi.yaml --steps 10 --out benchmarks/ixi.json
    python scripts/benchmark.py config_rnn/adni.yaml --steps 2 --modes function --samples 5
"""
from __future__ import annotations

import json
import logging
import shlex
import sys

from _cli import make_parser, run

from bruno.config import load_config
from bruno.errors import ConfigError
from bruno.experiments.benchmark import MODES, benchmark, parse_modes, summary
from bruno.files import atomic_output, check_outputs
from bruno.runs import make_deterministic

logger = logging.getLogger("benchmark")


def main() -> None:
    parser = make_parser(__doc__, progress=False)
    parser.add_argument("config", help="experiment YAML file (config_rnn/*.yaml, model.kind: bruno)")
    parser.add_argument("--steps", type=int, default=5, help="timed repeats of each compiled step/pass, after a warm-up; the median counts (default 5)")
    parser.add_argument("--eager-steps", type=int, default=1, help="timed eager training steps (default 1; eager is slow)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"training modes to time (default {','.join(MODES)})")
    parser.add_argument("--samples", type=int, default=100, help="samples per pose of the dense volume (default 100)")
    parser.add_argument("--contexts", type=int, default=5, help="context slices of the dense volume (default 5)")
    parser.add_argument("--decode-batch", type=int, default=512, help="images inverted at once (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the synthetic batches (default 0)")
    parser.add_argument("--out", help="write every figure here as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args()

    for name in ("steps", "eager_steps", "samples", "decode_batch"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected >= 1")
    if args.contexts < 0:
        raise ConfigError(f"--contexts {args.contexts}: expected >= 0")
    modes = parse_modes(args.modes)
    if args.out:
        check_outputs({}, {}, args.overwrite, [args.config], json={"--out": args.out})
    config = load_config(args.config)
    if args.contexts > config.data.num_poses:
        raise ConfigError(f"--contexts {args.contexts}: more than the config's {config.data.num_poses} poses")
    make_deterministic(args.seed)
    results = benchmark(config, args.steps, args.eager_steps, modes, args.samples, args.contexts, args.decode_batch,
                        args.seed, report=lambda what: logger.info("timing %s", what))
    results["config"] = args.config
    results["command"] = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    print(summary(results))
    if args.out:
        with atomic_output(args.out, args.overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
        logger.info("wrote %s", args.out)


if __name__ == "__main__":
    run(main)
