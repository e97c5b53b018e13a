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


class TrainingDiverged(BrunoError, FloatingPointError):
    """The training loss became NaN or Inf."""


class WorkerLost(BrunoError, RuntimeError):
    """Multi-worker training stopped because another worker stopped answering (killed, crashed, preempted)."""
