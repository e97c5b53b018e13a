"""How the reports write a mean and its standard error."""
from __future__ import annotations

import math

__all__ = ["mean_se"]


def mean_se(mean: float, se: float, places: int, signed: bool = False) -> str:
    """``0.812 ± 0.004``; ``0.812 (n = 1)`` where there is no standard error (one subject), never ``± nan``."""
    value = f"{mean:+.{places}f}" if signed else f"{mean:.{places}f}"
    return f"{value} ± {se:.{places}f}" if math.isfinite(se) else f"{value} (n = 1)"
