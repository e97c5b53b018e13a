"""Train with several worker processes on this machine: multi-worker training over 127.0.0.1.

Starts N copies of `python scripts/train.py ARGS --strategy multiworker`, each with its own TF_CONFIG
(the cluster's free loopback ports and the worker's index), which is what a cluster scheduler does
with real hosts (README, "Several machines"). train.batch_size stays the global batch; worker 0 writes
the run directory and its output is shown as is, the others' lines are prefixed with [worker i].
Ctrl-C or SIGTERM to the launcher reaches every worker once (all end the same step and checkpoint;
--resume continues). If a
worker fails, the others stop on their own within seconds; any still running after --grace seconds
are killed. The exit code is the first failing worker's (0 when all succeed).

Examples:
    python scripts/launch_workers.py --workers 2 -- config_rnn/ixi.yaml --run-dir runs/ixi_2w
    python scripts/launch_workers.py --workers 2 -- config_rnn/ixi.yaml --run-dir runs/ixi_2w --resume
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from _cli import make_parser, run

from bruno.errors import ConfigError
from bruno.training.distribute import local_cluster

TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")


def main() -> None:
    parser = make_parser(__doc__, progress=False)
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes (default 2)")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds the others get to stop after one fails (default 60)")
    parser.add_argument("train_args", nargs="+", metavar="-- CONFIG ...", help="scripts/train.py's arguments")
    args = parser.parse_args()
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: expected an integer >= 1")
    if "--strategy" in args.train_args or "--gpus" in args.train_args:
        raise ConfigError("--strategy / --gpus: the launcher sets --strategy multiworker itself; leave them out")

    workers: list[subprocess.Popen[str]] = []
    def forward(signum: int, _: object) -> None:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signum)
    for number in (signal.SIGINT, signal.SIGTERM):  # before any worker starts, so none is left without the signal
        signal.signal(number, forward)
    for index, tf_config in enumerate(local_cluster(args.workers)):
        workers.append(subprocess.Popen([sys.executable, TRAIN, *args.train_args, "--strategy", "multiworker"],
                                        env={**os.environ, "TF_CONFIG": tf_config}, text=True, start_new_session=True,
                                        stderr=None if index == 0 else subprocess.PIPE))  # signals reach them once, from here
        if index:
            threading.Thread(target=_relay, args=(workers[-1], f"[worker {index}] "), daemon=True).start()
    failed = None
    try:
        while any(w.poll() is None for w in workers):
            failed = failed or next(((w, time.time()) for w in workers if w.poll()), None)
            if failed and time.time() - failed[1] > args.grace:
                for w in workers:
                    if w.poll() is None:
                        print(f"error: worker {workers.index(w)} still running {args.grace:g} s after worker "
                              f"{workers.index(failed[0])} failed; killed", file=sys.stderr)
                        w.kill()
            time.sleep(0.2)
    finally:
        for w in workers:  # the launcher itself failed: take its workers along
            if w.poll() is None:
                w.kill()
    failed = failed or next(((w, 0.0) for w in workers if w.returncode), None)
    code = failed[0].returncode if failed else 0
    sys.exit(128 - code if code < 0 else code)  # killed by signal s: 128 + s, as a shell reports it


def _relay(worker: subprocess.Popen[str], prefix: str) -> None:
    assert worker.stderr is not None
    for line in worker.stderr:
        sys.stderr.write(prefix + line)


if __name__ == "__main__":
    run(main)
