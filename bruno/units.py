"""The unit every likelihood in this project is reported in: bits per dimension (pixel) of an image."""
from __future__ import annotations

import math
from typing import Any

__all__ = ["bits_per_dim"]


def bits_per_dim(nats_per_image: Any, num_dims: int) -> Any:
    """Nats per image (a float, array or tensor) → bits per dimension: nats / (D · ln 2)."""
    return nats_per_image / (num_dims * math.log(2.0))
