"""Train with several worker processes on this machine: multi-worker training over 127.0.0.1.

Starts N copies of `python scripts/train.py ARGS --strategy multiworker`, each with its own TF_CONFIG
(the cluster's free loopback ports and the worker's index), which is what a cluster scheduler does
with real hosts (README, "Several machines"). train.batch_size stays the global batch; worker 0 writes
the run directory and its output is shown as is, the others' lines are prefixed with [worker i].
Ctrl-C, SIGTERM or SIGHUP (a closed terminal) to the launcher reaches every worker once: all end the same
step and checkpoint, and --resume continues. Workers stop so too when the launcher itself is killed, even
by kill -9: none is left training on its own. If a worker fails, the others stop on their own within
seconds; any still running after --grace seconds are killed. The exit code is the first failing worker's (0 when all succeed).

Examples:
    python scripts/launch_workers.py --workers 2 -- config_rnn/ixi.yaml --run-dir runs/ixi_2w
    python scripts/launch_workers.py --workers 2 -- config_rnn/ixi.yaml --run-dir runs/ixi_2w --resume
"""
from __future__ import annotations

import os
import sys

from _cli import make_parser, run

from bruno.commands.launch_workers import launch_workers

TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")


def main() -> None:
    parser = make_parser(__doc__, progress=False)
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes (default 2)")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds the others get to stop after one fails (default 60)")
    parser.add_argument("train_args", nargs="+", metavar="-- CONFIG ...", help="scripts/train.py's arguments")
    args = parser.parse_args()
    sys.exit(launch_workers([sys.executable, TRAIN, *args.train_args], args.workers, args.grace))


if __name__ == "__main__":
    run(main)
