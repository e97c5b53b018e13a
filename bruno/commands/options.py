"""The values of command-line options, read and checked: each error names the flag, the value and what was
expected. Scripts and the library commands share them (``scripts/_cli.py`` holds only the argparse plumbing)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Optional

from bruno.errors import ConfigError
from bruno.reconstruction.contexts import FAST_SAMPLES, check_contexts

__all__ = ["check_count", "check_positive", "parse_contexts", "parse_counts", "parse_integers", "parse_ks", "parse_samples"]


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
    """``"20, 45,70"`` → [20, 45, 70] (``""`` → []); an error naming ``flag`` otherwise (``"1,,3"`` included)."""
    if not text.strip():
        return []
    try:
        return [int(v) for v in text.split(",")]
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
    """``--contexts-list``: the given ks in increasing order, each in [1, N − 1] (N contexts leave no slice to
    reconstruct or score); by default those of ``default`` below N (logged)."""
    if text is None:
        ks = [k for k in default if k < num_poses]
        if len(ks) < len(default):
            logging.getLogger("evaluate").info("N = %d poses: k = %s (of the default %s)", num_poses, ks, list(default))
        return ks
    ks = parse_integers("--contexts-list", text, "integers")
    if not ks:
        raise ConfigError(f"--contexts-list {text!r}: expected at least one k")
    bad = next((k for k in ks if not 1 <= k < num_poses), None)
    if bad is not None:
        raise ConfigError(f"--contexts-list {text!r}: k = {bad} does not fit, expected each k in [1, N − 1 = {num_poses - 1}] "
                          f"(N = {num_poses} poses; k = N leaves no slice to reconstruct)")
    repeated = next((k for i, k in enumerate(ks) if k in ks[:i]), None)
    if repeated is not None:
        raise ConfigError(f"--contexts-list {text!r}: k = {repeated} given twice, expected each k once")
    return sorted(ks)


def parse_counts(text: str) -> list[int]:
    """``--sample-counts "20,5,10"`` → [5, 10, 20]: at least two distinct integers >= 1."""
    counts = sorted(set(parse_integers("--sample-counts", text, "integers >= 1")))
    if len(counts) < 2 or counts[0] < 1:
        raise ConfigError(f"--sample-counts {text!r}: expected at least two comma-separated integers >= 1, e.g. 5,10,20,50,100")
    return counts


def check_count(flag: str, value: Optional[int]) -> None:
    """An error naming ``flag`` unless ``value`` (when given) is an integer >= 1."""
    if value is not None and value < 1:
        raise ConfigError(f"{flag} {value}: expected an integer >= 1")


def check_positive(flag: str, value: float | None, allow_zero: bool = False) -> None:
    """An error naming ``flag`` unless ``value`` (when given) is > 0 (or >= 0)."""
    if value is not None and not (value >= 0 if allow_zero else value > 0):
        raise ConfigError(f"{flag} {value}: expected a number {'>=' if allow_zero else '>'} 0")
