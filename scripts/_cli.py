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
from collections.abc import Sequence
from typing import Callable, Optional

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

from bruno.errors import BrunoError, ConfigError  # noqa: E402  (after the quiet import)
from bruno.reconstruction import FAST_SAMPLES, check_contexts  # noqa: E402


def make_parser(doc: str, progress: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring as help, ``--verbose`` and (for long work) ``--no-progress``."""
    result = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up and debug logging")
    if progress:
        result.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return result


def add_common(parser: argparse.ArgumentParser, *, seed: int = 0, seed_help: str = "the samples",
               checkpoint: bool = False, overwrite: str = "replace existing output files") -> None:
    """The flags most scripts share: ``--seed``, ``--checkpoint best|latest`` (with ``checkpoint``) and ``--overwrite``."""
    parser.add_argument("--seed", type=int, default=seed, help=f"seed of {seed_help} (default {seed})")
    if checkpoint:
        parser.add_argument("--checkpoint", default="best", choices=("best", "latest"), help="which checkpoint (default best)")
    parser.add_argument("--overwrite", action="store_true", help=overwrite)


def add_samples(parser: argparse.ArgumentParser, per: str = "pose") -> None:
    """``--samples N|fast`` (read it with :func:`parse_samples`)."""
    parser.add_argument("--samples", default="100", help=f"samples per {per} (default 100), or 'fast' = {FAST_SAMPLES}: "
                                                         "a mean within 0.005 SSIM of 100's")


def add_keep_contexts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-contexts", action=argparse.BooleanOptionalAction, default=None,
                        help="return the given slices unchanged at their own poses (default: the run's model.keep_contexts)")


def add_subject_source(parser: argparse.ArgumentParser) -> None:
    """``--split`` or ``--input``: the test subjects (:func:`bruno.data.subjects.load_subjects`)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", default="test", choices=("train", "val", "test"), help="volumes of the run's table (default test)")
    source.add_argument("--input", help="NIfTI folder, glob or file never seen in training (preprocessed like the run's data)")
    parser.add_argument("--max-subjects", type=int, help="only the first M subjects")


def parse_samples(text: str) -> int:
    """``--samples``: a positive integer, or ``fast`` for :data:`bruno.reconstruction.FAST_SAMPLES`."""
    if text.strip().lower() == "fast":
        return FAST_SAMPLES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--samples {text!r}: expected an integer >= 1 or 'fast' ({FAST_SAMPLES} samples)")
    return value


def parse_integers(flag: str, text: str, what: str = "integers, e.g. 20,45,70") -> list[int]:
    """``"20, 45,70"`` → [20, 45, 70]; an error naming ``flag`` otherwise."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated {what}") from None


def parse_contexts(text: str, num_poses: int, flag: str = "--contexts") -> list[int]:
    """``--contexts "20,40,60"`` → [20, 40, 60]: at least one, each in [0, N), no repeats."""
    values = parse_integers(flag, text, "slice indices")
    if not values:
        raise ConfigError(f"{flag} {text!r}: no slice index given (for the prior, use --num-contexts 0 or "
                          "scripts/sample_prior.py)")
    return check_contexts(values, num_poses, label=f"{flag} {text!r}")


def parse_ks(text: Optional[str], num_poses: int, default: Sequence[int]) -> list[int]:
    """``--contexts-list``: the given ks, each in [1, N]; by default those of ``default`` below N (logged)."""
    if text is None:
        ks = [k for k in default if k < num_poses]
        if len(ks) < len(default):
            logging.getLogger("evaluate").info("N = %d poses: k = %s (of the default %s)", num_poses, ks, list(default))
        return ks
    ks = parse_integers("--contexts-list", text, "integers")
    if not ks:
        raise ConfigError(f"--contexts-list {text!r}: expected at least one k")
    bad = next((k for k in ks if not 1 <= k <= num_poses), None)
    if bad is not None:
        raise ConfigError(f"--contexts-list {text!r}: k = {bad} does not fit, expected each k in [1, N = {num_poses}]")
    return ks



def parse_counts(text: str) -> list[int]:
    """``--sample-counts "20,5,10"`` → [5, 10, 20]: at least two distinct integers >= 1."""
    counts = sorted(set(parse_integers("--sample-counts", text, "integers >= 1")))
    if len(counts) < 2 or counts[0] < 1:
        raise ConfigError(f"--sample-counts {text!r}: expected at least two comma-separated integers >= 1, e.g. 5,10,20,50,100")
    return counts


def check_positive(flag: str, value: float | None, allow_zero: bool = False) -> None:
    """An error naming ``flag`` unless ``value`` (when given) is > 0 (or >= 0)."""
    if value is not None and not (value >= 0 if allow_zero else value > 0):
        raise ConfigError(f"{flag} {value}: expected a number {'>=' if allow_zero else '>'} 0")


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
