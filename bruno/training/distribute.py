"""Where training runs: one device, several GPUs of one machine, or several worker processes (machines).

* ``default``: the current single-device strategy;
* ``mirrored``: ``tf.distribute.MirroredStrategy`` over the visible GPUs of this machine;
* ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``. Every worker runs the same command
  with its own ``TF_CONFIG`` (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
  "index": i}}``), as ``scripts/launch_workers.py`` sets for local workers and a cluster scheduler does
  for real hosts. Initial variable values are broadcast from worker 0, and every update all-reduces
  the gradients of all replicas of all workers.

A :class:`WorkerRole` says which worker this process is. Worker 0 is the chief: only it writes the
run directory (``config.yaml``, ``metrics.jsonl``, TensorBoard, checkpoints); the others write their
checkpoints, which TensorFlow requires every worker to save, into :func:`scratch_dir`, and restore
from the chief's. Each worker reads only its shard of every batch
(:class:`~bruno.data.sampler.SequenceSampler` ``shard``).

A worker that dies makes the others' next all-reduce fail within the coordination service's
heartbeat timeout (about 10 s, measured on loopback); :data:`WORKER_LOST` lists the errors that
signals, which the training loop turns into a one-line :class:`~bruno.errors.WorkerLost`.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from typing import NamedTuple, Optional

import tensorflow as tf

from bruno.errors import ConfigError

__all__ = ["STRATEGIES", "WORKER_LOST", "WorkerRole", "local_cluster", "lost_worker_message", "make_strategy", "remove_scratch",
           "scratch_dir", "worker_role"]

STRATEGIES = ("default", "mirrored", "multiworker")
WORKER_LOST = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError)


class WorkerRole(NamedTuple):
    """This process's place among the workers: ``task_index`` of ``num_workers``; the chief (0) writes the run."""

    task_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.task_index == 0


def _read_tf_config() -> tuple[int, int]:
    """(task index, number of workers) from ``TF_CONFIG``, checked."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigError("multiworker: TF_CONFIG is not set, expected the cluster and this worker's index "
                          "(scripts/launch_workers.py sets it for local workers)")
    try:
        spec = json.loads(text)
        workers, task = spec["cluster"]["worker"], spec["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, \"task\": "
                          f"{{\"type\": \"worker\", \"index\": i}}}}, got {text[:120]!r} ({type(err).__name__})") from None
    if task.get("type") != "worker" or not isinstance(workers, list) or not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG: task {task!r} is not one of the {len(workers) if isinstance(workers, list) else 0} "
                          "workers of the cluster (type 'worker', index 0..count-1)")
    return index, len(workers)


def make_strategy(name: str = "default", gpus: int = 0, label: str = "GPUs") -> Optional[tf.distribute.Strategy]:
    """The strategy ``name`` of :data:`STRATEGIES` (None for ``default``). Create it before any other
    TensorFlow operation runs: ``MultiWorkerMirroredStrategy`` must configure the runtime first.

    Args:
        gpus: with ``mirrored``, how many GPUs (0: all visible ones).
        label: what names ``gpus`` in an error (a command line passes its flag).

    Raises:
        ConfigError: an unknown kind, more GPUs than visible, or a missing or malformed ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    return _STRATEGY_MAKERS[name](gpus, label)


def _multiworker(gpus: int, label: str) -> tf.distribute.Strategy:
    _read_tf_config()  # a clear error before TensorFlow's own
    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored(gpus: int, label: str) -> tf.distribute.Strategy:
    visible = len(tf.config.list_physical_devices("GPU"))
    count = gpus or visible
    if count > max(visible, 1):
        raise ConfigError(f"{label} {count}: only {visible} GPU(s) visible")
    return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(count)] if visible else None)


_STRATEGY_MAKERS: dict[str, Callable[[int, str], Optional[tf.distribute.Strategy]]] = {
    "default": lambda gpus, label: None, "mirrored": _mirrored, "multiworker": _multiworker}


def worker_role(strategy: Optional[tf.distribute.Strategy]) -> WorkerRole:
    """Which worker this process is (index 0 of 1 outside multi-worker training)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver  # what the strategy itself read from TF_CONFIG
        return WorkerRole(int(resolver.task_id), len(resolver.cluster_spec().as_dict()["worker"]))
    return WorkerRole()


def scratch_dir(run_dir: str, role: WorkerRole) -> str:
    """Where this worker writes: the run directory for the chief, ``<run_dir>/.workers/<index>`` for the others."""
    return run_dir if role.is_chief else os.path.join(run_dir, ".workers", str(role.task_index))


def remove_scratch(run_dir: str, role: WorkerRole) -> None:
    """Remove a non-chief worker's :func:`scratch_dir` once it is done (and ``.workers/`` when it is the last)."""
    if role.is_chief:
        return
    scratch = scratch_dir(run_dir, role)
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(scratch))
    except OSError:  # another worker's scratch is still there
        pass


def lost_worker_message(err: tf.errors.OpError, role: WorkerRole, step: int, latest: Optional[str]) -> str:
    """The one line a worker prints when another stopped answering during ``step`` (``latest``: the chief's last checkpoint)."""
    lines = [line.strip() for line in (err.message or "").splitlines() if line.strip()]
    dead = [line for line in lines if line.startswith("/job:")]  # the coordination service names the silent tasks
    said = next((line for line in lines if not line.endswith(":")), type(err).__name__)
    return (f"worker {role.task_index} of {role.num_workers}: another worker stopped answering at step {step} "
            f"({'no heartbeat from ' + ', '.join(dead) if dead else said[:160]}); "
            + (f"restart every worker with --resume (from {latest})" if latest else "no checkpoint yet: start the run again"))


def local_cluster(count: int, host: str = "127.0.0.1") -> list[str]:
    """``TF_CONFIG`` texts for ``count`` workers on free ports of ``host`` (worker i gets the i-th)."""
    sockets = []
    try:
        for _ in range(count):  # hold every port until all are chosen, so no two are the same
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        workers = [f"{host}:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}) for i in range(count)]
