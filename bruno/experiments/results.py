"""What an evaluation found (:class:`Evaluation`, from :func:`~bruno.experiments.evaluation.evaluate` to the report and
``results.json``) and how the reports write a mean with its standard error (:func:`mean_se`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Evaluation", "mean_se"]


@dataclass
class Evaluation:
    """Every score of one evaluation, by row (a method's table line: ``pca``, or ``<run>_mean`` / ``<run>_mode`` for a
    sampling method), k (as a string key, as in JSON) and subject.

    Attributes:
        ks: the numbers of acquired slices, in table order.
        num_subjects, num_samples: the subjects scored; S for the sampling methods.
        keep_contexts: per sampling method, whether it returns the acquired slices unchanged.
        methods: the mean-image rows in table order; labels: each row's label; short: each row's short name.
        table: row → k → the means over subjects (``ssim``, ``cc``, ``psnr`` and their ``_se``).
        per_subject: per subject and k: ``subject``, ``k``, ``contexts``, per row the per-slice ``ssim`` / ``cc`` lists
            and their means (``methods``), the forecast scores (``forecast``) and, in the acquired-slices protocol,
            the pose placement errors.
        sampled, single: the sampling methods' keys and the others'.
        rivals: the competitor rows (the baselines' mean images); ours: the rows of our methods.
        levels: the nominal coverage levels of the forecast scores.
        forecast_rows: row → label of each scored forecast; forecast: row → k → its means over subjects;
        forecast_rivals / forecast_ours: the forecast rows of the baselines (what ours are paired against) and ours.
        provenance: what the command adds (runs, checkpoint steps, source, the baselines' settings, protocol), written
            after the rest in ``results.json``.
    """

    ks: list[int]
    num_subjects: int = 0
    num_samples: int = 0
    keep_contexts: dict[str, bool] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    table: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_subject: list[dict[str, Any]] = field(default_factory=list)
    sampled: list[str] = field(default_factory=list)
    single: list[str] = field(default_factory=list)
    rivals: list[str] = field(default_factory=list)
    ours: list[str] = field(default_factory=list)
    short: dict[str, str] = field(default_factory=dict)
    levels: list[float] = field(default_factory=list)
    forecast_rows: dict[str, str] = field(default_factory=dict)
    forecast: dict[str, dict[str, Any]] = field(default_factory=dict)
    forecast_rivals: list[str] = field(default_factory=list)
    forecast_ours: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The mapping ``results.json`` holds: every field, then the provenance's keys at the top level."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "provenance"}
        return {**fields, **self.provenance}


def mean_se(mean: float, se: float, places: int, signed: bool = False) -> str:
    """``0.812 ± 0.004``; ``0.812 (n = 1)`` where there is no standard error (one subject), never ``± nan``."""
    value = f"{mean:+.{places}f}" if signed else f"{mean:.{places}f}"
    return f"{value} ± {se:.{places}f}" if math.isfinite(se) else f"{value} (n = 1)"
