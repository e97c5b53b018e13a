"""An evaluation from the runs (or a config's table alone) to the report, as ``scripts/evaluate.py`` runs it."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, Optional

from bruno.commands.options import check_count, parse_counts, parse_ks
from bruno.config import DataConfig, load_config
from bruno.data.nifti import find_inputs
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import Subject, load_subjects
from bruno.data.table import SliceTable
from bruno.errors import ConfigError
from bruno.experiments.acquired_protocol import acquired_inputs, find_scan
from bruno.experiments.evaluation import evaluate, evaluation_methods, load_runs
from bruno.experiments.report import REPORT_FILES, write_report
from bruno.experiments.sample_budget import STUDY_FILES, sample_count_study, write_study
from bruno.files import check_output_dir
from bruno.models import SequenceModel
from bruno.reconstruction import evenly_spread, fetal_contexts
from bruno.runs import RunDir, make_deterministic

__all__ = ["DEFAULT_KS", "Plan", "Request", "evaluate_and_report", "run_evaluation"]

DEFAULT_KS = (1, 3, 5, 9)


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
    if plan.protocol == "acquired":  # every scan's file is there before any work
        for subject in subjects:
            find_scan(subject.info, table.path)
    methods, settings = evaluation_methods(table, models, run_dirs, plan.keep_contexts, plan.latent, progress)
    acquire = None
    if plan.protocol == "acquired":
        scorer = next((m for m in models.values() if m.exact_log_prob), None)
        acquire = acquired_inputs(table, data, plan.poses_from, scorer)
    results, first = evaluate(methods, subjects, plan.ks, plan.contexts_for, plan.num_samples, plan.seed, progress, acquire)
    results.provenance.update(runs=dict(zip(models, run_dirs)), checkpoint_steps=steps, source=source,
                              baseline_settings=settings["chosen"], protocol=plan.protocol,
                              **({"poses_from": plan.poses_from} if acquire else {}))
    runs = ", ".join(f"{os.path.basename(os.path.normpath(r))} (step {step})" for r, step in zip(run_dirs, steps.values()))
    title = f"{runs or 'classical baselines on ' + table.path}: {source}"
    title += f", acquired slices only (poses {plan.poses_from})" if acquire else ""
    os.makedirs(out, exist_ok=True)
    return write_report(results, first, subjects[0], plan.contexts_for, out, title, overwrite)


class Request(NamedTuple):
    """``scripts/evaluate.py``'s options (their argparse names); ``num_samples`` already read."""

    run: Optional[list[str]]
    config: Optional[str]
    split: str
    input: Optional[str]
    max_subjects: Optional[int]
    contexts_list: Optional[str]
    context_table: Literal["even", "fetal"]
    num_samples: int
    sample_counts: Optional[str]
    keep_contexts: Optional[bool]
    latent_volume: bool
    protocol: Literal["paper", "acquired"]
    poses_from: Optional[Literal["estimated", "known"]]
    out: Optional[str]
    checkpoint: str = "best"
    seed: int = 0
    overwrite: bool = False


def check_request(r: Request) -> None:
    """The rules between options, before anything is loaded; :class:`ConfigError` naming the flag otherwise."""
    if r.protocol == "acquired" and r.sample_counts:
        raise ConfigError("--protocol acquired: scores reconstructions, not --sample-counts")
    if r.config and not r.out:
        raise ConfigError("--config: pass --out too (there is no run folder to write into)")
    if r.config and r.sample_counts:
        raise ConfigError("--sample-counts measures a model's samples: pass --run")
    if r.config and (r.latent_volume or r.keep_contexts is not None):
        raise ConfigError(f"--{'latent-volume' if r.latent_volume else 'keep-contexts'}: needs a trained run: pass --run")
    if r.poses_from and r.protocol != "acquired":
        raise ConfigError("--poses-from: only with --protocol acquired")
    check_count("--max-subjects", r.max_subjects)  # load_subjects says so too, but only after the table is read


def _check_out_apart(out: str, inputs: Optional[str]) -> None:
    """Refuse an output folder that is a run directory or holds the input scans: the results would land among them.

    Raises:
        ConfigError: naming ``--out``.
    """
    if RunDir(out).has_config():
        raise ConfigError(f"--out {out}: is a run directory; give the results a folder of their own, e.g. {os.path.join(out, 'eval')}")
    if inputs is not None and os.path.isdir(out):
        folders = {os.path.realpath(os.path.dirname(path)) for path in find_inputs(inputs)}
        if os.path.realpath(out) in folders:
            raise ConfigError(f"--out {out}: holds the --input scans; give the results a folder of their own")


def run_evaluation(r: Request, progress: bool = True) -> str:
    """Check ``r``, load the runs (or the config), check every k and the output folder before any long work, then
    write the report (or, with ``sample_counts``, the study of how many samples the mean image needs); its markdown."""
    check_request(r)
    models, steps, config = ({}, {}, load_config(r.config)) if r.config else load_runs(r.run, r.checkpoint)
    make_deterministic(r.seed)
    num_poses, source = config.data.num_poses, r.input or r.split
    ks = parse_ks(r.contexts_list, num_poses, DEFAULT_KS)
    counts = parse_counts(r.sample_counts) if r.sample_counts else None
    contexts_for = fetal_contexts if r.context_table == "fetal" else evenly_spread
    for k in ks:
        contexts_for(k, num_poses)  # fail now, not after hours of sampling
    out = r.out or os.path.join(r.run[0], "eval_" + ("input" if r.input else r.split))
    _check_out_apart(out, r.input)
    check_output_dir(out, STUDY_FILES if counts else REPORT_FILES, r.overwrite)
    table = load_slice_table(config, progress)
    subjects = load_subjects(table, config.data, r.split, r.input, r.max_subjects)
    if counts:
        name, model = next(iter(models.items()))
        study = sample_count_study(model, subjects, ks, counts, contexts_for, r.seed, progress)
        return write_study(study, f"{r.run[0]} (step {steps[name]}): samples needed, {source}", out, r.overwrite)
    plan = Plan(ks, contexts_for, r.num_samples, r.seed, r.keep_contexts, r.latent_volume, r.protocol, r.poses_from or "estimated")
    text = evaluate_and_report(table, config.data, models, steps, r.run or [], subjects, source, plan, out, r.overwrite, progress)
    logging.getLogger("evaluate").info("wrote %s to %s", ", ".join(REPORT_FILES), out)
    return text
