"""An evaluation from the runs (or a config's table alone) to the report, as ``scripts/evaluate.py`` runs it."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, Optional

from bruno.config import DataConfig
from bruno.data.subjects import Subject
from bruno.data.table import SliceTable
from bruno.experiments.acquired_protocol import acquired_inputs
from bruno.experiments.evaluation import evaluate, evaluation_methods
from bruno.experiments.report import write_report
from bruno.models import ConditionalBruno, SequenceModel

__all__ = ["Plan", "evaluate_and_report"]


class Plan(NamedTuple):
    """What to score and how: k values, their context rule (k, N → poses), S samples, the seed, and the options
    of :func:`~bruno.experiments.evaluation.evaluation_methods` and of the acquired-slices protocol."""

    ks: Sequence[int]
    contexts_for: Callable[[int, int], list[int]]
    num_samples: int
    seed: int = 0
    keep_contexts: Optional[bool] = None
    latent: bool = False
    protocol: Literal["paper", "acquired"] = "paper"
    poses_from: Literal["estimated", "known"] = "estimated"


def evaluate_and_report(table: SliceTable, data: DataConfig, models: dict[str, SequenceModel], steps: dict[str, int], run_dirs: Sequence[str],
                        subjects: Sequence[Subject], source: str, plan: Plan, out: str, overwrite: bool = False,
                        progress: bool = True) -> str:
    """Build the methods of the experiment whose ``data`` section made ``table`` (``models`` by name, their checkpoint ``steps`` and ``run_dirs``; none: the classical
    methods of ``table`` alone), score them on ``subjects`` (from ``source``, a split or files), write the report
    into ``out`` (created only once the methods are built) and return its markdown."""
    methods, settings = evaluation_methods(table, models, run_dirs, plan.keep_contexts, plan.latent, progress)
    os.makedirs(out, exist_ok=True)
    acquire = None
    if plan.protocol == "acquired":
        scorer = next((m for m in models.values() if isinstance(m, ConditionalBruno)), None)
        acquire = acquired_inputs(table, data, plan.poses_from, scorer)
    results, first = evaluate(methods, subjects, plan.ks, plan.contexts_for, plan.num_samples, plan.seed, progress, acquire)
    results.update(runs=dict(zip(models, run_dirs)), checkpoint_steps=steps, source=source, baseline_settings=settings["chosen"],
                   protocol=plan.protocol, **({"poses_from": plan.poses_from} if acquire else {}))
    runs = ", ".join(f"{os.path.basename(os.path.normpath(r))} (step {step})" for r, step in zip(run_dirs, steps.values()))
    title = f"{runs or 'classical baselines on ' + table.path}: {source}"
    title += f", acquired slices only (poses {plan.poses_from})" if acquire else ""
    return write_report(results, first, subjects[0], plan.contexts_for, out, title, overwrite)
