"""Choosing a method's settings on the validation split, once, and storing the choice beside its fit.

:func:`val_score` scores a method with the evaluation protocol (k evenly spread slices for each k;
mean SSIM over slices, volumes and k); :func:`stored_settings` reads a stored choice back, or runs the
search and stores it as JSON, so every later evaluation and reconstruction uses the same numbers.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.files import write_text_files
from bruno.metrics import slice_scores
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.method import Method

__all__ = ["SEARCH_KS", "can_search", "stored_settings", "val_score"]

logger = logging.getLogger(__name__)

SEARCH_KS = (1, 3, 5, 9)


def can_search(table: SliceTable) -> bool:
    """Whether the table has what a search needs: >= 2 train volumes and >= 1 val volume."""
    return len(table.volumes_in("train")) >= 2 and len(table.volumes_in("val")) > 0


def val_score(method: Method, subjects: Sequence[np.ndarray], ks: Sequence[int]) -> float:
    """Mean SSIM of ``method``'s volumes over subjects [N, H, W] and k evenly spread acquired slices."""
    scores = [slice_scores(method.reconstruct(images, evenly_spread(k, len(images)), with_std=False).mean, images).ssim.mean()
              for images in subjects for k in ks]
    return float(np.mean(scores))


def stored_settings(path: str, what: str, search: Callable[[], dict[str, Any]],
                    check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The settings stored at ``path``, or (none stored) the result of ``search()``, then stored there.

    Args:
        what: what the file holds, for messages (``baseline settings``).
        check: raises KeyError, ValueError or TypeError on a stored file it cannot use (or a
            :class:`DataFileError` that says why).

    Raises:
        DataFileError: the stored file is unreadable or refused by ``check``.
    """
    if not os.path.exists(path):
        logger.info("no %s at %s: choosing them on the val split (once)", what, path)
        settings = search()
        write_text_files(os.path.dirname(os.path.abspath(path)), {os.path.basename(path): json.dumps(settings, indent=1)})
        logger.info("%s %s stored in %s", what, json.dumps(settings["chosen"]), path)
        return settings
    try:
        with open(path, encoding="utf-8") as f:
            settings = json.load(f)
        check(settings)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataFileError(f"{path}: not a readable {what} file ({type(err).__name__}: {err}); "
                            "delete it to search again") from None
    return settings
