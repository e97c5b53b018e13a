"""What every config section shares: the one-line error of a bad value."""
from __future__ import annotations

import typing
from typing import Any

from bruno.errors import ConfigError

__all__ = ["fail"]


def fail(key: str, value: Any, expected: str) -> typing.NoReturn:
    """Raise :class:`ConfigError` ``key=value, expected ...`` (the loader prefixes file and section)."""
    raise ConfigError(f"{key}={value!r}, expected {expected}")
