"""Local multi-worker training: start N training processes over 127.0.0.1 and supervise them
(``scripts/launch_workers.py``).

Each worker gets its own ``TF_CONFIG`` (:func:`~bruno.training.distribute.local_cluster`). Worker 0's output is
shown as is, the others' stderr lines are prefixed with ``[worker i]``. Ctrl-C or SIGTERM to the launcher reaches
every worker once (they run in their own sessions, so a terminal's Ctrl-C does not reach them twice); SIGHUP (the
terminal closed) reaches them as SIGTERM. Workers never outlive the launcher: on Linux each asks the kernel for a
SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so even ``kill -9`` of the launcher stops them at the end
of their step, checkpointed. When a worker fails, the others stop on their own within seconds; any still running
``grace`` seconds later is killed.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Optional

from bruno.errors import ConfigError
from bruno.training.distribute import local_cluster

__all__ = ["launch_workers"]


def launch_workers(command: Sequence[str], count: int, grace: float = 60.0) -> int:
    """Run ``count`` copies of ``command`` (a training command line, to which ``--strategy multiworker`` is added)
    and wait for all of them; the first failing worker's exit code (128 + s when killed by signal s), else 0."""
    if count < 1:
        raise ConfigError(f"--workers {count}: expected an integer >= 1")
    if "--strategy" in command or "--gpus" in command:
        raise ConfigError("--strategy / --gpus: the launcher sets --strategy multiworker itself; leave them out")
    workers: list[subprocess.Popen[str]] = []

    def forward(signum: int, _: object) -> None:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # before any worker starts: none is left without it
        signal.signal(number, forward)
    follow = _die_with_parent()
    for index, tf_config in enumerate(local_cluster(count)):
        workers.append(subprocess.Popen([*command, "--strategy", "multiworker"], env={**os.environ, "TF_CONFIG": tf_config},
                                        text=True, start_new_session=True, stderr=None if index == 0 else subprocess.PIPE,
                                        preexec_fn=follow))
        if index:
            threading.Thread(target=_relay, args=(workers[-1], f"[worker {index}] "), daemon=True).start()
    failed = None
    try:
        while any(w.poll() is None for w in workers):
            failed = failed or next(((w, time.time()) for w in workers if w.poll()), None)
            if failed and time.time() - failed[1] > grace:
                for w in workers:
                    if w.poll() is None:
                        print(f"error: worker {workers.index(w)} still running {grace:g} s after worker "
                              f"{workers.index(failed[0])} failed; killed", file=sys.stderr)
                        w.kill()
            time.sleep(0.2)
    finally:
        for w in workers:  # the launcher itself failed: take its workers along
            if w.poll() is None:
                w.kill()
    failed = failed or next(((w, 0.0) for w in workers if w.returncode), None)
    code = failed[0].returncode if failed else 0
    return 128 - code if code < 0 else code


def _die_with_parent() -> Optional[Callable[[], None]]:
    """What a worker runs between fork and exec (Linux): SIGTERM to it when its parent, the launcher, dies.
    The C function is looked up here, before any fork, so the child only makes the one system call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    launcher = os.getpid()

    def follow() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != launcher:  # the launcher died before the call
            os.kill(os.getpid(), signal.SIGTERM)
    return follow


_PR_SET_PDEATHSIG = 1


def _relay(worker: subprocess.Popen[str], prefix: str) -> None:
    assert worker.stderr is not None
    for line in worker.stderr:
        sys.stderr.write(prefix + line)
