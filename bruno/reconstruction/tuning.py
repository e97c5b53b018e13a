"""Choosing a method's settings on the validation split, once, and storing the choice beside its fit.

One search serves every tuner (the classical baselines, the latent volume model, the population state's c),
in the manner of scikit-learn's grid search: a declared grid (:func:`grid_search`) is scored on val with the
evaluation protocol (:func:`val_score`: k evenly spread slices for each k; mean SSIM over slices, volumes and k),
the best setting is kept, and a :class:`StoredSearch` writes it as JSON together with a fingerprint of what it
was fitted to (the train and val subjects, the flow's weights). Reading it back checks the format, the chosen
values' ranges and the fingerprint, so every later evaluation and reconstruction uses the same numbers, and a
choice made for other data or another flow is refused instead of used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from bruno.data.table import SliceTable
from bruno.errors import DataFileError
from bruno.files import write_text_files
from bruno.metrics import slice_scores
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.method import Method

__all__ = ["SEARCH_FORMAT", "SEARCH_KS", "StoredSearch", "can_search", "grid_search", "split_fingerprint", "val_score"]

logger = logging.getLogger(__name__)

SEARCH_KS = (1, 3, 5, 9)
SEARCH_FORMAT = 2  # 2: "fitted_to" holds the fingerprint; before, a classical file had only its train subjects


def can_search(table: SliceTable) -> bool:
    """Whether the table has what a search needs: >= 2 train volumes and >= 1 val volume."""
    return len(table.volumes_in("train")) >= 2 and len(table.volumes_in("val")) > 0


def val_score(method: Method, subjects: Sequence[np.ndarray], ks: Sequence[int]) -> float:
    """Mean SSIM of ``method``'s volumes over subjects [N, H, W] and k evenly spread acquired slices."""
    scores = [slice_scores(method.reconstruct(images, evenly_spread(k, len(images)), with_std=False).mean, images).ssim.mean()
              for images in subjects for k in ks]
    return float(np.mean(scores))


def grid_search(grid: Sequence[Mapping[str, Any]], score: Callable[..., float], desc: str, progress: bool = True,
                criterion: str = "val_ssim", lower_is_better: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every setting of ``grid`` on val (``score(**setting)``; higher is better unless ``lower_is_better``).

    Returns:
        (the best setting with its score under the key ``criterion``, every setting with its score in grid order; the
        first of equal scores wins).
    """
    settings = tqdm(grid, desc=desc, unit="setting", disable=not progress)
    rows = [{**setting, criterion: float(score(**setting))} for setting in settings]
    best = min if lower_is_better else max
    return best(rows, key=lambda row: row[criterion]), rows


def split_fingerprint(table: SliceTable) -> dict[str, str]:
    """What a choice made on ``table`` depends on: SHA-1s of its train and val subjects' names, in split order."""
    def sha1(split: str) -> str:
        subjects = [table.info(int(v)).subject for v in table.volumes_in(split)]
        return hashlib.sha1("\n".join(subjects).encode()).hexdigest()
    return {"train_subjects_sha1": sha1("train"), "val_subjects_sha1": sha1("val")}


@dataclass(frozen=True)
class StoredSearch:
    """Where one tuner's choice lives and what it must have been fitted to.

    Attributes:
        path: the JSON file.
        what: what it holds, for messages (``baseline settings``).
        fitted_to: the fingerprint a stored choice must match (e.g. :func:`split_fingerprint`, a flow's weights).
        check: raises KeyError, ValueError or TypeError where the stored ``chosen`` is out of range.
        legacy: the fingerprint of a file written before :data:`SEARCH_FORMAT` (None: such files had none, and are
            trusted with a note in the log).
    """

    path: str
    what: str
    fitted_to: Mapping[str, Any]
    check: Callable[[dict[str, Any]], None]
    legacy: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None

    def load(self) -> Optional[dict[str, Any]]:
        """The stored search, or None where there is none.

        Raises:
            DataFileError: unreadable, of an unknown format, a chosen value out of range, or fitted to something else.
        """
        if not os.path.exists(self.path):
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                record = json.load(f)
            fitted_to = self._fitted_to(record)
            self.check(record["chosen"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise DataFileError(f"{self.path}: not a readable {self.what} file ({type(err).__name__}: {err}); "
                                "delete it to search again") from None
        for key, value in fitted_to.items():
            if key in self.fitted_to and value != self.fitted_to[key]:
                name = key.removesuffix("_sha1").replace("_", " ")
                raise DataFileError(f"{self.path}: chosen for other {name} than now ({key} differs); delete it to search again")
        return record  # type: ignore[no-any-return]

    def _fitted_to(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("format") == SEARCH_FORMAT:
            return dict(record["fitted_to"])
        if "format" in record and not (record["format"] == 1 and self.legacy is not None):
            raise ValueError(f"format {record['format']!r}, expected {SEARCH_FORMAT}")
        if self.legacy is None:
            logger.info("%s: written before searches recorded what they were fitted to; used as it is", self.path)
            return {}
        return self.legacy(record)

    def store(self, chosen: dict[str, Any], grid: Any, **details: Any) -> dict[str, Any]:
        """Write the search (replacing a stale one) and return it as stored."""
        record = {"format": SEARCH_FORMAT, "what": self.what, "fitted_to": dict(self.fitted_to), "chosen": chosen,
                  "criterion": "mean val SSIM over slices, volumes and k", **details, "grid": grid}
        write_text_files(os.path.dirname(os.path.abspath(self.path)), {os.path.basename(self.path): json.dumps(record, indent=1)},
                         overwrite=True)
        logger.info("%s %s stored in %s", self.what, json.dumps(chosen), self.path)
        return record

    def load_or_search(self, search: Callable[[], tuple[dict[str, Any], Any, dict[str, Any]]]) -> dict[str, Any]:
        """The stored search, or (none stored) ``search()`` → (chosen, grid, details), stored.

        Raises:
            DataFileError: as :meth:`load`.
        """
        record = self.load()
        if record is None:
            logger.info("no %s at %s: choosing them on the val split (once)", self.what, self.path)
            chosen, grid, details = search()
            record = self.store(chosen, grid, **details)
        return record
