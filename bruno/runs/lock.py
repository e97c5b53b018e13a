"""One writer per run directory: ``<run>/.lock``, held while a process trains or finishes the run.

Two ``train.py`` on one run directory interleave their checkpoints and ``metrics.jsonl`` (issue 37), and a second one
started beside a live run reads that run's first files as "a run that stopped before its first checkpoint". So the
process that writes a run holds an exclusive ``flock`` on ``<run>/.lock`` and writes its PID, host and start time into
it. The kernel drops a ``flock`` when its holder ends, however it ends (SIGKILL, a crash), so a lock file that nobody
holds is stale: the next writer takes it over with a warning naming the PID that left it. A second writer while the
first lives is refused in one line naming the first's PID. Readers (``reconstruct``, ``sample_prior``) take no lock;
they read only complete files (:func:`bruno.runs.latest_checkpoint`, atomic renames).

``flock`` is advisory and local: two machines writing one run over NFS are not stopped by it.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Optional

from bruno.errors import OutputPathError, RunDirError
from bruno.files import check_writable_folder, existing_folder_above

__all__ = ["LOCK_NAME", "holder", "run_lock"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


def _describe(record: dict) -> str:
    return f"PID {record.get('pid', '?')} on {record.get('host', '?')}, since {record.get('started', '?')}"


def _read_record(fd: int) -> dict:
    """The holder's record in an open lock file ({} where it is empty or unreadable)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


def holder(run_dir: str) -> Optional[str]:
    """The live writer of ``run_dir`` in words (PID, host, start), or None where no process holds its lock."""
    path = os.path.join(run_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(_read_record(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _check_can_create(run_dir: str) -> str:
    """The nearest existing folder above ``run_dir``, after checking that the run directory can be made there.

    Raises:
        RunDirError: a file on the way, or the folder is not writable.
    """
    try:
        existing = existing_folder_above(run_dir)
        check_writable_folder(run_dir, existing)
    except OutputPathError as err:
        raise RunDirError(str(err)) from None
    return existing


def _remove_empty_folders(run_dir: str, existing: str) -> None:
    """Remove ``run_dir`` and the folders above it up to ``existing`` (excluded) where the lock made them and they are
    empty again: a start that fails leaves nothing behind."""
    folder = os.path.abspath(run_dir)
    while folder != os.path.abspath(existing):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


@contextlib.contextmanager
def run_lock(run_dir: str) -> Iterator[None]:
    """Hold ``run_dir``'s write lock for the ``with`` block (the folder is made if missing, and removed again on the
    way out if the block left it empty).

    Raises:
        RunDirError: another live process holds the lock (named by its PID), or the folder cannot be made.
    """
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: is a file, expected a run directory")
    existing = None
    if not os.path.isdir(run_dir):
        existing = _check_can_create(run_dir)
        try:
            os.makedirs(run_dir, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"{run_dir}: cannot create the run directory ({err.strerror})") from None
    path = os.path.join(run_dir, LOCK_NAME)
    fd = _acquire(run_dir, path, existing)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)  # closing drops the flock
        if existing is not None:
            _remove_empty_folders(run_dir, existing)


def _acquire(run_dir: str, path: str, existing: Optional[str]) -> int:
    """The open, flocked lock file with this process's record in it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if existing is not None:
                _remove_empty_folders(run_dir, existing)
            raise RunDirError(f"{run_dir}: cannot create its lock file {LOCK_NAME} ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_record(fd)
            os.close(fd)
            raise RunDirError(f"{run_dir}: in use by another training process ({_describe(record)}); wait for it to "
                              "end or stop it, then --resume") from None
        # the holder before us may have removed the file between our open and our flock: lock the file on disk
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        stale = _read_record(fd)
        if stale:
            logger.warning("%s: took over a stale lock (%s: that process is gone)", run_dir, _describe(stale))
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))
        return fd
