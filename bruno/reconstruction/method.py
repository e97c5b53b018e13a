"""One interface for every way to reconstruct a volume from a few slices (SPEC §3, §5.3, §9).

A :class:`Method` maps a subject's pose-ordered slices [N, H, W] on the 0..255 scale, of which only the
acquired ones (``contexts``) are read, to a :class:`Result`: the mean volume, and where the method has
them, a per-voxel standard deviation, samples and a decoded mean. A method is built by the registry
(:mod:`bruno.reconstruction.registry`) from a :class:`Source`: the slice table whose train split fits
it and whose val split tunes it, and the trained run where it needs one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import numpy as np

from bruno.data.table import SliceTable

if TYPE_CHECKING:  # a type only: classical methods must not load TensorFlow
    from bruno.models import SequenceModel

__all__ = ["Method", "Result", "Source", "dequantised"]


class Result(NamedTuple):
    """A reconstructed volume on the 0..255 scale, pose-ordered like the slice table.

    Attributes:
        mean: float [N, H, W], the reconstruction (for sampling methods, the mean image over samples).
        std: float [N, H, W], the per-voxel standard deviation, or None (no uncertainty, or not asked for).
        samples: float [S, N, H, W] draws from the method's conditional law, or None.
        contexts: the acquired poses used.
        decoded_mean: float [N, H, W], one deterministic image per pose (BRUNO: the decoded predictive mean
            latent; GQN/C-VAE: every latent at its prior mean), or None where the method has none.
    """

    mean: np.ndarray
    std: Optional[np.ndarray]
    samples: Optional[np.ndarray]
    contexts: list[int]
    decoded_mean: Optional[np.ndarray] = None


@dataclass
class Source:
    """What methods are built from.

    Attributes:
        table: the slice table (train split: fits; val split: tunes, once, stored beside the table or run); None
            where no method built from it ``needs_table``.
        model: the trained run's model, for methods with ``needs_run``; run_dir: its folder.
        name: the name the method takes in tables (default: its registry key).
        keep_contexts: for sampling methods, return the acquired slices unchanged (None: the run's setting).
        required: False lets the classical methods fall back to those needing no val split.
        progress: progress bars over fitting and searching.
        cache: what several methods of one source share (the classical fit), filled on first use.
    """

    table: Optional[SliceTable]
    model: Optional[SequenceModel] = None
    run_dir: Optional[str] = None
    name: Optional[str] = None
    keep_contexts: Optional[bool] = None
    required: bool = True
    progress: bool = True
    cache: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """A way to reconstruct a volume (module docstring).

    Attributes:
        key: its name in tables and on the command line; label: its row label (with its settings);
            short: a few words for it.
        needs_run: built from a trained run (else from the slice table alone).
        needs_table: built from the slice table (its splits fit and tune it).
        has_distribution: gives a standard deviation and samples.
        sampled: its mean is the average of its samples (evaluation also scores single samples and
            the decoded mean).
        is_baseline: evaluation pairs our methods against it.
        min_contexts: the fewest acquired slices it accepts.
        deterministic_label: what its decoded mean is, for a sampling method's row label.
        keep_contexts: a sampling method returns the acquired slices unchanged at their poses.
    """

    key: str
    label: str
    short: str
    needs_run = False
    needs_table = True
    has_distribution = False
    sampled = False
    is_baseline = True
    min_contexts = 0
    deterministic_label = "deterministic image"
    keep_contexts = False

    @classmethod
    @abstractmethod
    def build(cls, source: Source) -> Method:
        """The method fitted (and tuned) on ``source``."""

    @abstractmethod
    def reconstruct(self, images: np.ndarray, contexts: Sequence[int], num_samples: int = 0, seed: int = 0,
                    with_std: bool = True, progress: bool = False) -> Result:
        """Reconstruct every pose from ``images[contexts]``.

        Args:
            num_samples: S draws to return (0: none; sampling methods need S >= 1).
            seed: seed of the draws.
            with_std: False skips a standard deviation that costs extra.
        """

    def conditional_nll(self, images: np.ndarray, contexts: Sequence[int], seed: int = 0) -> Optional[np.ndarray]:
        """float [N − k]: −log₂ p(x_q + ε | the acquired slices) / (H·W) for each other pose q, in pose order, each slice
        under its own predictive (SPEC §10), ε ~ U(0, 1) the dequantisation (:func:`dequantised`, from ``seed``);
        None when the method has no exact density (the default)."""
        return None


def dequantised(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """float64 ``images`` [N, H, W] (0..255) plus U(0, 1) noise drawn from ``seed``: the continuous values a density scores."""
    images = np.asarray(images, np.float64)
    return images + np.random.default_rng(seed).random(images.shape)
