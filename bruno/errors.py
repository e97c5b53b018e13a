"""Exceptions raised on bad user input.

Every error a user can cause by a config, an input file or an output path derives from
:class:`BrunoError` and carries a one-line message that names the file, key or value and what
was expected, so that command-line scripts can print it and exit non-zero without a traceback.
"""
from __future__ import annotations

from typing import Any, NoReturn


class BrunoError(Exception):
    """Base class of all user-facing errors of this package."""


class ConfigError(BrunoError, ValueError):
    """A config file or override is malformed: unknown key, wrong type or value out of range."""


def fail_config(key: str, value: Any, expected: str) -> NoReturn:
    """Raise :class:`ConfigError` ``key=value, expected ...`` (the config loader prefixes file and section)."""
    raise ConfigError(f"{key}={value!r}, expected {expected}")


class VolumeError(BrunoError, ValueError):
    """An input volume cannot be used: unreadable, wrong dimensionality, non-finite or constant."""


class OutputPathError(BrunoError, OSError):
    """An output path cannot be written: missing or read-only folder, or an existing file."""


class DataFileError(BrunoError, ValueError):
    """A preprocessed HDF5 file is missing, corrupt or does not follow the slice-table layout."""


class RunDirError(BrunoError, OSError):
    """A run directory cannot be used: not writable, holds another run, or has no checkpoint to resume."""


class DiskFullError(BrunoError, OSError):
    """An output could not be written for want of space (the disk or the quota is full, or a file-size limit is hit);
    what was being written is removed and what was there before is kept."""


DISK_FULL_REASONS = ("No space left on device", "File too large", "Disk quota exceeded")


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (an ``OSError``, or a TensorFlow / HDF5 error carrying the system's message) says a write
    failed for want of space: ENOSPC, EFBIG (a file-size limit, ``ulimit -f``) or EDQUOT."""
    errno_name = {28: "ENOSPC", 27: "EFBIG", 122: "EDQUOT"}.get(getattr(err, "errno", None) or -1)
    return errno_name is not None or any(reason in str(err) for reason in DISK_FULL_REASONS)


def disk_full_reason(err: BaseException) -> str:
    """The system's words for a failed write (:func:`is_disk_full`)."""
    return next((reason for reason in DISK_FULL_REASONS if reason in str(err)), getattr(err, "strerror", None) or "no space")


class NonFiniteOutput(BrunoError, FloatingPointError):
    """A computed output holds NaN or Inf although its inputs were checked: it is refused, never written."""


class TrainingDiverged(BrunoError, FloatingPointError):
    """The training loss became NaN or Inf."""


class WorkerLost(BrunoError, RuntimeError):
    """Multi-worker training stopped because another worker stopped answering (killed, crashed, preempted)."""
