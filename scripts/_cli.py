"""Shared command-line plumbing: logging set-up and one-line errors with a non-zero exit."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from bruno.errors import BrunoError

EXIT_USER_ERROR = 2


def run(main: Callable[[], None]) -> None:
    """Run ``main``; a user error prints ``error: <one line>`` to stderr and exits with code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # TensorFlow checkpoint chatter
    try:
        main()
    except BrunoError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
