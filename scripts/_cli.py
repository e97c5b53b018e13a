"""Shared command-line plumbing: a quiet TensorFlow start-up, the common flags, logging set-up and
one-line errors with a non-zero exit.

Importing this module imports TensorFlow with the process's stderr pointed at a scratch file:
TensorFlow's C++ and absl start-up lines (oneDNN, CUDA probing, CPU features) are written before
its own log level applies, and a user reads them as the failure. ``--verbose`` keeps them. If the
import itself fails, what it wrote is shown before the error.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from typing import Callable, TypeVar

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

_NATIVE_LOG_LINE = re.compile(rb"^([IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]|WARNING: All log messages before absl::InitializeLog)")


def drop_native_log_lines() -> None:
    """From now on, drop the lines TensorFlow's C++ layer writes to stderr (absl format, ``E0000 ... file.cc:12] ...``):
    in multi-worker training the coordination service prints a burst of them when another worker stops, before our
    one-line error. Everything else on stderr (progress bars, log records, that error) passes unchanged; at exit the
    filter is drained first. No-op with ``--verbose``."""
    if VERBOSE:
        return
    sys.stderr.flush()
    shown, (read_end, write_end) = os.dup(2), os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def relay() -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            for chunk in iter(lambda: source.read(65536), b""):
                pieces = re.split(rb"(?<=[\r\n])", pending + chunk)
                pending = pieces.pop()  # not yet ended by a newline or carriage return
                os.write(shown, b"".join(p for p in pieces if not _NATIVE_LOG_LINE.match(p)))
        if pending and not _NATIVE_LOG_LINE.match(pending):
            os.write(shown, pending)

    thread = threading.Thread(target=relay, daemon=True, name="stderr-filter")
    thread.start()

    def drain() -> None:
        sys.stderr.flush()
        os.dup2(shown, 2)  # the pipe's last writer closes: the relay reads to its end
        thread.join(timeout=5)

    atexit.register(drain)

from bruno.commands.options import parse_samples  # noqa: E402  (after the quiet import)
from bruno.errors import BrunoError, disk_full_reason, is_disk_full  # noqa: E402
from bruno.reconstruction import FAST_SAMPLES  # noqa: E402

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, reading values that start with a minus and a digit (``--slab-mm -1e6 1e6``,
    ``--slices -1,30``) as values, not as unknown flags."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._negative_number_matcher = re.compile(r"^-\.?\d")  # argparse's own takes -5 and -.5, not -1e6 or -1,30

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def make_parser(doc: str, progress: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring as help, ``--verbose`` and (for long work) ``--no-progress``;
    a malformed command line is one ``error:`` line and exit code 2."""
    result = _Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    """``--samples N|fast`` (read it with :func:`bruno.commands.options.parse_samples`)."""
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


def read_request(kind: type[T], args: argparse.Namespace) -> T:
    """A library command's request (a NamedTuple whose fields are the script's option names) from parsed ``args``;
    its ``num_samples`` field, where it has one, from ``--samples`` (:func:`bruno.commands.options.parse_samples`)."""
    values = {name: getattr(args, name) for name in kind._fields if name != "num_samples"}  # type: ignore[attr-defined]
    if "num_samples" in kind._fields:  # type: ignore[attr-defined]
        values["num_samples"] = parse_samples(args.samples)
    return kind(**values)


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
    except Exception as err:  # noqa: BLE001 (a full disk met by a writer that does not name it: one line still)
        if not is_disk_full(err):
            raise
        print(f"error: {getattr(err, 'filename', None) or 'an output file'}: no space to write it ({disk_full_reason(err)})",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as err:
        number = getattr(err, "signum", signal.SIGINT)
        print(f"error: interrupted ({signal.Signals(number).name})", file=sys.stderr)
        sys.exit(128 + number)
