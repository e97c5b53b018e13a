"""Will it fit? Lower-bound memory estimates of the flow and of a batch of samples, checked against this
machine's memory before anything is built, so that a size no machine can hold is a one-line error and not a
``ResourceExhaustedError`` traceback, or a segfault with nothing on stderr, minutes later.

The estimates count only what surely has to be held (weights; the feature maps of the conv s/t networks; the
sampled latents and images), so they never refuse what would have run; real use needs more.
"""
from __future__ import annotations

import os
from typing import NamedTuple

from bruno.config import Config
from bruno.errors import ConfigError

__all__ = ["MemoryEstimate", "check_fits", "flow_bytes", "machine_memory", "sample_bytes"]

_FLOAT = 4  # bytes of a float32


class MemoryEstimate(NamedTuple):
    """A lower bound of the bytes something needs, and the label that names its sizes in an error."""

    bytes: float
    label: str


def machine_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2 ** 30:.3g} GiB"


def check_fits(needed: float, label: str, what: str) -> None:
    """Refuse ``needed`` bytes when they exceed the machine's memory.

    Raises:
        ConfigError: ``<label>: <what> needs at least X GiB, more than this machine's Y GiB of memory``.
    """
    total = machine_memory()
    if needed > total:
        raise ConfigError(f"{label}: {what} needs at least {_gib(needed)}, more than this machine's {_gib(total)} of memory")


def flow_bytes(config: Config, images: int = 0) -> float:
    """Bytes of the conv s/t networks' weights (×4 when ``images`` > 0: gradients and Adam's two slots) plus
    their feature maps for ``images`` images at once (each residual block's two outputs, at the scale it runs at)."""
    flow, size = config.model.flow, config.data.image_size
    parameters = activations = 0.0
    per_net = (2 * flow.num_residual_blocks + 1) * flow.num_filters  # feature maps of one s/t network, per pixel
    for s in range(flow.num_scales):
        last = s == flow.num_scales - 1
        for pixels, count in (((size >> s) ** 2, 4 if last else 3), ((size >> (s + 1)) ** 2, 0 if last else 3)):
            parameters += count * 2 * flow.num_residual_blocks * 9 * flow.num_filters ** 2
            activations += count * pixels * per_net
    return _FLOAT * (parameters * (4 if images else 1) + activations * images)


def sample_bytes(num_samples: int, queries: int, num_dims: int, num_poses: int) -> float:
    """Bytes of ``num_samples`` draws at each of ``queries`` poses: the latents, the decoded images and the
    one-hot poses they are decoded with, all held at once."""
    return _FLOAT * num_samples * queries * (2 * num_dims + num_poses)
