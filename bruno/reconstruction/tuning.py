"""Choosing a method's settings on the validation split, once, and storing the choice beside its fit.

One search serves every tuner (the classical baselines, the latent volume model, the population state's c),
in the manner of scikit-learn's grid search: a declared grid (:func:`grid_search`) is scored on val with the
evaluation protocol (:func:`val_score`: k evenly spread slices for each k; mean SSIM over slices, volumes and k),
the best setting is kept (a test-time setting per k, :func:`grid_search_per_k`, may instead walk its grid from a start,
:func:`descend_grid`, where its order is unimodal), and a :class:`~bruno.files.StoredSearch` writes it as JSON
together with a fingerprint of what it was fitted to (the train and val subjects, the flow's weights). Reading it
back checks the format, the chosen values' ranges and the fingerprint, so every later evaluation and reconstruction
uses the same numbers, and a choice made for other data or another flow is refused instead of used.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from bruno.data.table import SliceTable
from bruno.metrics import slice_scores
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.method import Method

__all__ = ["SEARCH_KS", "can_search", "descend_grid", "grid_search", "grid_search_per_k", "split_fingerprint", "val_score"]

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


def grid_search_per_k(ks: Sequence[int], name: str, values: Sequence[float], scores_at: Callable[[int, float], dict[str, float]],
                      desc: str, progress: bool = True, criterion: str = "val_ssim", lower_is_better: bool = False,
                      order: Callable[[dict[str, float]], Any] | None = None, start: float | None = None
                      ) -> Iterator[tuple[int, float, list[dict[str, Any]], dict[float, dict[str, float]]]]:
    """:func:`grid_search` of one test-time setting ``name`` over ``values`` at each k in turn, ``scores_at(k, value)``
    giving every val score of that setting (``criterion`` among them).

    With ``order`` (a sort key of the scores, lowest best; replaces ``criterion`` and ``lower_is_better``) and ``start``
    (one of ``values``, ascending), the grid is not scored whole but descended (:func:`descend_grid`): the same
    choice where the order is unimodal along the grid (a proper score against a spread, a coverage band), from 3–6
    settings instead of all.

    Yields:
        Per k: (k, the chosen value, every scored row with all its scores in grid order, the scores per value).
    """
    if start is not None and order is None:
        raise ValueError("a descent needs the order of the scores")
    for k in ks:
        scores: dict[float, dict[str, float]] = {}
        if start is not None:

            def cost(value: float, k: int = k, scores: dict[float, dict[str, float]] = scores) -> Any:
                scores[value] = scores_at(k, value)
                return order(scores[value])  # type: ignore[misc]

            at = descend_grid(values, start, cost, desc.format(k=k), progress)
            yield k, at, [{name: v, **scores[v]} for v in values if v in scores], scores
            continue

        def score(k: int = k, scores: dict[float, dict[str, float]] = scores, **setting: float) -> float:
            scores[setting[name]] = scores_at(k, setting[name])
            return scores[setting[name]][criterion]

        best_row, rows = grid_search([{name: v} for v in values], score, desc.format(k=k), progress, criterion, lower_is_better)
        yield k, best_row[name], [{**row, **scores[row[name]]} for row in rows], scores


def descend_grid(values: Sequence[float], start: float, cost: Callable[[float], Any], desc: str = "descent",
                 progress: bool = True) -> float:
    """The value of the ascending grid ``values`` with the lowest ``cost`` found by walking from ``start``: score it and its
    left neighbour, keep stepping left while the cost falls; where the first step left did not lower it, step right
    the same way. Each value is scored at most once. On a unimodal cost that is the grid's argmin (ties: the value
    nearer ``start``).

    Raises:
        ValueError: ``values`` not strictly ascending, or ``start`` not among them.
    """
    if list(values) != sorted(set(values)) or start not in values:
        raise ValueError(f"grid {tuple(values)} from {start}: expected strictly ascending values that hold the start")
    bar = tqdm(desc=desc, unit="setting", disable=not progress)

    def scored(i: int) -> Any:
        value = cost(values[i])
        bar.update()
        return value

    best = values.index(start)
    lowest = scored(best)
    for step in (-1, 1):
        i, moved = best + step, False
        while 0 <= i < len(values) and (c := scored(i)) < lowest:
            best, lowest, moved, i = i, c, True, i + step
        if moved:
            break
    bar.close()
    return values[best]


def split_fingerprint(table: SliceTable) -> dict[str, str]:
    """What a choice made on ``table`` depends on: SHA-1s of its train and val subjects' names, in split order."""
    def sha1(split: str) -> str:
        subjects = [table.info(int(v)).subject for v in table.volumes_in(split)]
        return hashlib.sha1("\n".join(subjects).encode()).hexdigest()
    return {"train_subjects_sha1": sha1("train"), "val_subjects_sha1": sha1("val")}
