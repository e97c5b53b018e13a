"""Shared command-line plumbing: a quiet TensorFlow start-up, the common flags, logging set-up and
one-line errors with a non-zero exit.

Importing this module imports TensorFlow with the process's stderr pointed at a scratch file:
TensorFlow's C++ and absl start-up lines (oneDNN, CUDA probing, CPU features) are written before
its own log level applies, and a user reads them as the failure. ``--verbose`` keeps them. If the
import itself fails, what it wrote is shown before the error.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from typing import Callable

EXIT_USER_ERROR = 2
VERBOSE = "--verbose" in sys.argv[1:]


def _import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            import tensorflow as tf
            import tensorflow_probability  # noqa: F401  (its start-up lines too)
            import tf_keras  # noqa: F401

            tf.config.list_physical_devices("GPU")  # the CUDA probe logs here
        except BaseException:
            os.dup2(saved, 2)
            scratch.seek(0)
            sys.stderr.write(scratch.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


if not VERBOSE:
    _import_tensorflow_quietly()

from bruno.errors import BrunoError  # noqa: E402  (after the quiet import)


def make_parser(doc: str, progress: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring as help, ``--verbose`` and (for long work) ``--no-progress``."""
    result = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up and debug logging")
    if progress:
        result.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return result


def run(main: Callable[[], None]) -> None:
    """Run ``main``; a user error prints ``error: <one line>`` to stderr and exits with code 2;
    an interrupt (Ctrl-C, or SIGTERM from a scheduler) exits with 128 + the signal number."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not VERBOSE:
        logging.getLogger("absl").setLevel(logging.WARNING)  # TensorFlow checkpoint chatter
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        main()
    except BrunoError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as err:
        number = getattr(err, "signum", signal.SIGINT)
        print(f"error: interrupted ({signal.Signals(number).name})", file=sys.stderr)
        sys.exit(128 + number)
