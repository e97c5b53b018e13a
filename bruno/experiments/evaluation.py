"""The paper's evaluation protocol (SPEC §5.3) over reconstruction methods, scored per slice (tables and figures: :mod:`.report`).

For each subject and each k: choose k contexts (evenly spread, or the fetal table), let every method
(:mod:`bruno.reconstruction`) reconstruct every pose, and score every slice against the truth with SSIM
and CC. A method whose mean is an average of S samples (a trained run's model: BRUNO, or the paper's GQN
and C-VAE) gives three rows:

* ``<key>_mean``: the mean image over samples (the paper's tables);
* ``<key>_mode``: one deterministic image per pose (BRUNO: the decoded predictive mean latent;
  GQN/C-VAE: every latent at its prior mean);
* ``<key>_sample``: the mean score of single samples;

every other method one row, ``<key>``: the latent volume model of a BRUNO run (``<name>_latent``) and the
classical methods (settings chosen once on the val split): ``linear``, ``population_mean`` (an atlas that
ignores the contexts), ``pca`` (the Gaussian volume model's conditional mean), ``atlas_gp`` / ``pca_gp``.

Volume score = mean over slices (CC ignores undefined slices; PSNR from the volume's MSE); table = mean
over subjects, with the standard error over subjects (sd/√n). Each row of our methods is also compared,
paired per subject, with the best baseline at each k (``is_baseline``: the classical methods and the GQN /
C-VAE mean images).

Every method with a distribution is also scored as a forecast of the voxels it did not see (:mod:`.forecast`):
interval coverage, CRPS and, under the paper's protocol, the conditional NLL.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from bruno.config import Config
from bruno.data.subjects import Subject
from bruno.data.table import SliceTable
from bruno.errors import ConfigError
from bruno.experiments.acquired_protocol import Acquired
from bruno.experiments.forecast import forecast_rows, forecast_scores, forecast_table
from bruno.experiments.results import Evaluation
from bruno.metrics import LEVELS, SliceScores, psnr, slice_scores
from bruno.models import SequenceModel
from bruno.reconstruction import Method, Result, Source, build_method
from bruno.reconstruction.classical import classical_methods
from bruno.reconstruction.forecasters import classical_forecasters
from bruno.reconstruction.io import check_output
from bruno.runs import restore_model

__all__ = ["METRICS", "evaluate", "evaluation_methods", "load_runs", "method_rows"]
METRICS = (("ssim", "SSIM", 3), ("cc", "CC", 3), ("psnr", "PSNR (dB)", 2))  # key, heading, decimals


def method_rows(method: Method) -> dict[str, str]:
    """Row key → label of one method's rows: a sampling method's mean image, deterministic image and single
    sample (``<key>_mean``, ``<key>_mode``, ``<key>_sample``), or one row (``<key>``)."""
    if not method.sampled:
        return {method.key: method.label}
    return {f"{method.key}_mean": f"{method.label}, mean image",
            f"{method.key}_mode": f"{method.label}, {method.deterministic_label}",
            f"{method.key}_sample": f"{method.label}, single sample"}


def _summary(scores: SliceScores) -> dict[str, float]:
    return {"ssim": float(np.mean(scores.ssim)), "cc": float(np.nanmean(scores.cc)) if np.isfinite(scores.cc).any() else math.nan,
            "psnr": psnr(scores.mse)}


def _mean_and_error(scores: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean over subjects and its standard error (sd with ddof 1 / √n) of each metric."""
    summary = {}
    for metric, _, _ in METRICS:
        values = np.array([s[metric] for s in scores], np.float64)
        values = values[np.isfinite(values)]
        summary[metric] = float(values.mean()) if len(values) else math.nan
        summary[f"{metric}_se"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return summary


def load_runs(runs: list[str], checkpoint: str) -> tuple[dict[str, SequenceModel], dict[str, int], Config]:
    """The runs' models by name (their kind, or the run folder's name when two share a kind), their steps, the first config.

    Raises:
        ConfigError: a run was trained on other data (table, N or slice size) than the first.
    """
    loaded = [restore_model(run, checkpoint) for run in runs]
    kinds = [config.model.kind for _, config, _ in loaded]
    names = [kind if kinds.count(kind) == 1 else os.path.basename(os.path.normpath(run)) for kind, run in zip(kinds, runs)]
    if len(set(names)) < len(names):
        raise ConfigError(f"runs {', '.join(runs)}: two runs of the same kind share a folder name; rename one")
    first = loaded[0][1].data
    for run, (_, config, _) in zip(runs[1:], loaded[1:]):
        data = config.data
        if (data.output, data.num_poses, data.image_size) != (first.output, first.num_poses, first.image_size):
            raise ConfigError(f"{run}: trained on {data.output} ({data.num_poses} poses of {data.image_size}x{data.image_size}), "
                              f"but {runs[0]} on {first.output} ({first.num_poses} of {first.image_size}x{first.image_size})")
    return ({n: model for n, (model, _, _) in zip(names, loaded)}, {n: step for n, (_, _, step) in zip(names, loaded)},
            loaded[0][1])


def evaluation_methods(table: SliceTable, models: dict[str, SequenceModel], run_dirs: Sequence[str],
                       keep_contexts: Optional[bool] = None, latent: bool = False, progress: bool = True) -> tuple[list[Method], dict[str, Any]]:
    """What an evaluation scores, in table order: each run's model (``bruno`` in the registry), with ``latent``
    each BRUNO run's latent volume model (``latent_pca_gp``: ``<name>_latent``), then the classical methods
    (those needing no val split only, when the table has none and there are runs to score) and the classical
    forecasters (their spreads chosen on val by CRPS; none without a val split).

    Returns:
        (the methods, the classical settings as stored).
    """
    methods: list[Method] = []
    for (name, model), run_dir in zip(models.items(), run_dirs):
        source = Source(table, model, run_dir, name, keep_contexts, progress=progress)
        methods.append(build_method("bruno", source))
        if latent and model.has_process:
            methods.append(build_method("latent_pca_gp", source))
    classical, settings = classical_methods(table, progress, required=not models)
    forecasters = classical_forecasters(table, classical, settings, progress)
    return methods + list(classical.values()) + list(forecasters.values()), settings


def evaluate(methods: Sequence[Method], subjects: Sequence[Subject], ks: Sequence[int],
             contexts_for: Callable[[int, int], list[int]], num_samples: int, seed: int = 0, progress: bool = True,
             acquire: Optional[Callable[[int, list[int]], Acquired]] = None) -> tuple[Evaluation, dict[int, dict[str, Result]]]:
    """Run the protocol for every method on the same subjects and contexts.

    Args:
        methods: in table order (:func:`evaluation_methods`); a method is skipped at k below its ``min_contexts``.
        num_samples: S, for the methods whose mean is an average of samples.
        acquire: None (the paper's protocol: every method gets the subject's slices at the context
            poses), or the acquired-slices protocol (:func:`bruno.experiments.acquired_protocol.acquired_inputs`):
            every method gets only the acquired slices at their (estimated) poses, and its output is
            mapped onto the truth's grid before scoring.

    Returns:
        (results, the reconstructions of the first subject per k and method key; their std only there).
        The results are an :class:`~bruno.experiments.results.Evaluation` (its attributes say what each holds).
    """
    labels = {row: label for method in methods for row, label in method_rows(method).items()}
    num_poses = len(subjects[0].images)
    per_subject: list[dict[str, Any]] = []
    first: dict[int, dict[str, Result]] = {}
    jobs = [(s, k) for s in subjects for k in ks]
    for subject, k in tqdm(jobs, desc="evaluate", unit="volume", disable=not progress):
        contexts = contexts_for(k, num_poses)
        truth = subject.images.astype(np.float64)
        inputs, poses, to_truth, placement = subject.images, contexts, _identity, {}
        if acquire is not None:
            if subject.info is None:
                raise ConfigError(f"{subject.name}: the acquired-slices protocol needs the volume's file")
            acquired = acquire(subject.info, contexts)
            inputs, poses, to_truth = acquired.images, acquired.poses, acquired.to_truth
            placement = {"poses": poses, "slice_pose_errors": acquired.slice_errors, "pose_error": acquired.pose_error,
                         "pose_error_mm": acquired.pose_error_mm}
        rows, forecast = {}, {}
        for method in methods:
            if k < method.min_contexts:
                continue
            result = method.reconstruct(inputs, poses, num_samples if method.has_distribution else 0, seed,
                                        with_std=subject is subjects[0] or method.has_distribution, progress=False)
            for name in ("mean", "samples", "decoded_mean"):  # no score of a broken reconstruction is written
                if getattr(result, name) is not None:
                    check_output(getattr(result, name), f"{method.key} {name} of {subject.name}, k = {k}")
            nll = method.conditional_nll(inputs, poses, seed) if acquire is None and method.has_distribution else None
            if acquire is not None:
                result = _onto_truth(result, to_truth, method.sampled)
            if subject is subjects[0]:
                first.setdefault(k, {})[method.key] = result
            rows.update(_scores(method, result, truth))
            forecast.update(forecast_scores(method, result, truth, contexts, nll, closed_form=acquire is None))
        per_subject.append({
            "subject": subject.name, "k": k, "contexts": contexts, **placement,
            "methods": {m: {**_summary(s), "ssim_per_slice": s.ssim.tolist(),
                            "cc_per_slice": [None if not math.isfinite(v) else v for v in s.cc.tolist()]}
                        for m, s in rows.items()},
            "forecast": forecast,
        })
    table = {m: {str(k): _mean_and_error([r["methods"][m] for r in per_subject if r["k"] == k and m in r["methods"]])
                 for k in ks} for m in labels}
    sampled = [m.key for m in methods if m.sampled]
    forecasts = {row: label for method in methods for row, label in forecast_rows(method, num_samples).items()
                 if any(row in r["forecast"] for r in per_subject)}  # a closed form is not scored on another grid
    single = [m.key for m in methods if not m.sampled]
    rows_of = {m.key: (f"{m.key}_mean", f"{m.key}_mode") if m.sampled else (m.key,) for m in methods}
    return Evaluation(
        ks=list(ks), num_subjects=len(subjects), num_samples=num_samples,
        keep_contexts={m.key: m.keep_contexts for m in methods if m.sampled},
        methods=list(labels), labels=labels, table=table, per_subject=per_subject, sampled=sampled, single=single,
        rivals=[m.key for m in methods if m.is_baseline and not m.sampled]
        + [f"{m.key}_mean" for m in methods if m.is_baseline and m.sampled],
        ours=[row for m in methods if not m.is_baseline for row in rows_of[m.key]],
        short={row: m.short for m in methods for row in rows_of[m.key]},
        levels=list(LEVELS), forecast_rows=forecasts, forecast=forecast_table(per_subject, list(forecasts), ks),
        forecast_rivals=[row for m in methods if m.is_baseline for row in forecast_rows(m, num_samples) if row in forecasts],
        forecast_ours=[row for m in methods if not m.is_baseline for row in forecast_rows(m, num_samples)
                       if row in forecasts]), first


def _scores(method: Method, result: Result, truth: np.ndarray) -> dict[str, SliceScores]:
    """The scores of a method's rows (:func:`method_rows`)."""
    if not method.sampled:
        return {method.key: slice_scores(result.mean, truth)}
    assert result.samples is not None and result.decoded_mean is not None
    sample_scores = [slice_scores(sample, truth) for sample in result.samples]
    return {f"{method.key}_mean": slice_scores(result.mean, truth), f"{method.key}_mode": slice_scores(result.decoded_mean, truth),
            f"{method.key}_sample": SliceScores(*(np.nanmean([getattr(s, f) for s in sample_scores], axis=0)
                                                  for f in SliceScores._fields))}


def _onto_truth(result: Result, to_truth: Callable[[np.ndarray], np.ndarray], sampled: bool) -> Result:
    """A reconstruction on the acquisition's grid mapped onto the truth's (a spread only from mapped samples; the mean
    of a sampling method is the mean of its mapped samples, any other method's its own mean mapped)."""
    if result.samples is None:
        return result._replace(mean=to_truth(result.mean), std=None)
    samples = to_truth(result.samples)
    decoded = None if result.decoded_mean is None else to_truth(result.decoded_mean)
    return result._replace(mean=samples.mean(0) if sampled else to_truth(result.mean), std=samples.std(0), samples=samples,
                           decoded_mean=decoded)


def _identity(stack: np.ndarray) -> np.ndarray:
    return stack
