"""The paper's evaluation protocol (SPEC §5.3) with the classical baselines, scored per slice (tables and figures: :mod:`.report`).

For each subject and each k: choose k contexts (evenly spread, or the fetal table), reconstruct
every pose with S samples, and score every slice against the truth with SSIM and CC. Several
trained models (BRUNO and the paper's GQN and C-VAE baselines) can be scored on the same subjects
and contexts; each model ``name`` gives three methods:

* ``<name>_mean``: the mean image over samples (the paper's tables);
* ``<name>_mode``: one deterministic image per pose (BRUNO: the decoded predictive mean latent;
  GQN/C-VAE: every latent at its prior mean);
* ``<name>_sample``: the mean score of single samples;

and the classical baselines need no training (:mod:`bruno.baselines.classical`, settings chosen on the
val split by :mod:`bruno.baselines.tuning`):

* ``linear``: linear interpolation between the nearest contexts (constant beyond the ends);
* ``population_mean``: the per-pose mean of the training volumes (an atlas that ignores the contexts);
* ``pca``: the Gaussian volume model's conditional mean; ``atlas_gp`` / ``pca_gp``: the atlas / that
  model's projection plus GP interpolation of the residuals at the contexts.

Volume score = mean over slices (CC ignores undefined slices; PSNR from the volume's MSE); table = mean
over subjects, with the standard error over subjects (sd/√n). Each BRUNO row is also compared, paired
per subject, with the best competitor at each k (the classical baselines and the GQN / C-VAE mean images).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from bruno.baselines import ClassicalMethod
from bruno.config import Config
from bruno.data.subjects import Subject
from bruno.data.table import SliceTable
from bruno.errors import ConfigError
from bruno.experiments.acquired_protocol import Acquired
from bruno.latent_volume import load_latent_volume_model
from bruno.metrics import SliceScores, psnr, slice_scores
from bruno.model import SequenceModel
from bruno.reconstruction import Reconstruction, reconstruct
from bruno.runs import restore_model

__all__ = ["METRICS", "MODEL_NAMES", "evaluate", "load_runs", "method_labels"]

MODEL_NAMES = {"bruno": "BRUNO", "gqn": "GQN", "cvae": "C-VAE"}
METRICS = (("ssim", "SSIM", 3), ("cc", "CC", 3), ("psnr", "PSNR (dB)", 2))  # key, heading, decimals


def method_labels(models: dict[str, SequenceModel], baselines: dict[str, ClassicalMethod]) -> dict[str, str]:
    """Method key → table label, for the models (by name) and the classical baselines, in table order.

    A model named after its kind (``bruno``, ``gqn``, ``cvae``) is labelled ``BRUNO``, ``GQN``, ``C-VAE``;
    any other name is labelled with the kind and the name, e.g. ``BRUNO (ixi_faithful)``.
    """
    labels = {}
    for name, model in models.items():
        kind = model.config.kind
        display = MODEL_NAMES[kind] if name == kind else f"{MODEL_NAMES[kind]} ({name})"
        deterministic = "decoded predictive mean" if kind == "bruno" else "latents at the prior mean"
        labels.update({f"{name}_mean": f"{display}, mean image", f"{name}_mode": f"{display}, {deterministic}",
                       f"{name}_sample": f"{display}, single sample"})
    return {**labels, **{key: method.label for key, method in baselines.items()}}


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


def latent_variants(models: dict[str, SequenceModel], run_dirs: Sequence[str], table: SliceTable,
                    progress: bool = True) -> dict[str, ClassicalMethod]:
    """``<name>_latent``: each BRUNO run's flow with a Gaussian volume model of its latents (its settings stored in the run)."""
    return {f"{name}_latent": load_latent_volume_model(model, table, run_dir, progress=progress)[0]
            for (name, model), run_dir in zip(models.items(), run_dirs) if model.config.kind == "bruno"}


def evaluate(models: dict[str, SequenceModel], subjects: Sequence[Subject], ks: Sequence[int],
             baselines: dict[str, ClassicalMethod], contexts_for: Callable[[int, int], list[int]], num_samples: int,
             seed: int = 0, progress: bool = True, keep_contexts: Optional[dict[str, bool]] = None,
             variants: Optional[dict[str, ClassicalMethod]] = None,
             acquire: Optional[Callable[[int, list[int]], Acquired]] = None,
             ) -> tuple[dict[str, Any], dict[int, dict[str, Reconstruction]]]:
    """Run the protocol for every model and classical baseline on the same subjects and contexts.

    Args:
        models: name → trained model (all with the same N and slice size; may be empty).
        baselines: key → classical method (:func:`bruno.baselines.load_methods`); a method is skipped
            at k below its ``min_contexts``.
        keep_contexts: name → return the context slices unchanged at their poses (default: each
            model's ``model.keep_contexts``).
        variants: key → a deterministic reconstruction built on a trained model (e.g.
            :class:`bruno.latent_volume.LatentVolumeModel`), scored and paired like the models' rows.
        acquire: None (the paper's protocol: every method gets the subject's slices at the context
            poses), or the acquired-slices protocol (:func:`bruno.acquired_protocol.acquired_inputs`):
            every method gets only the acquired slices at their (estimated) poses, and its output is
            mapped onto the truth's grid before scoring.

    Returns:
        (results, the reconstructions of the first subject per k and model name).
        ``results["per_subject"]`` holds, per subject, k and method, the per-slice ``ssim`` and ``cc``
        lists and their means; ``results["table"][method][k]`` the means over subjects;
        ``results["methods"]`` the method keys in table order and ``results["labels"]`` their labels.
    """
    variants = variants or {}
    labels = method_labels(models, {**variants, **baselines})
    keep = {name: model.config.keep_contexts for name, model in models.items()} | (keep_contexts or {})
    num_poses = len(subjects[0].images)
    per_subject: list[dict[str, Any]] = []
    first: dict[int, dict[str, Reconstruction]] = {}
    jobs = [(s, k) for s in subjects for k in ks]
    for subject, k in tqdm(jobs, desc="evaluate", unit="volume", disable=not progress):
        contexts = contexts_for(k, num_poses)
        truth = subject.images.astype(np.float64)
        inputs, poses, to_truth, placement = subject.images, contexts, _identity, {}
        if acquire is not None:
            if subject.index is None:
                raise ConfigError(f"{subject.name}: the acquired-slices protocol needs volumes of the slice table")
            acquired = acquire(subject.index, contexts)
            inputs, poses, to_truth = acquired.images, acquired.poses, acquired.to_truth
            placement = {"poses": poses, "slice_pose_errors": acquired.slice_errors, "pose_error": acquired.pose_error,
                         "pose_error_mm": acquired.pose_error_mm}
        methods = {}
        for name, model in models.items():
            recon = reconstruct(model, inputs, poses, num_samples, seed=seed, progress=False, keep_contexts=keep[name])
            if acquire is not None:
                samples = to_truth(recon.samples)
                recon = recon._replace(mean=samples.mean(0), std=samples.std(0), samples=samples, mode=to_truth(recon.mode))
            if subject is subjects[0]:
                first.setdefault(k, {})[name] = recon
            sample_scores = [slice_scores(sample, truth) for sample in recon.samples]
            methods[f"{name}_mean"] = slice_scores(recon.mean, truth)
            methods[f"{name}_mode"] = slice_scores(recon.mode, truth)
            methods[f"{name}_sample"] = SliceScores(*(np.nanmean([getattr(s, f) for s in sample_scores], axis=0)
                                                      for f in SliceScores._fields))
        for key, method in {**variants, **baselines}.items():
            if k >= method.min_contexts:
                methods[key] = slice_scores(to_truth(method.estimate(inputs, poses, with_std=False).mean), truth)
        per_subject.append({
            "subject": subject.name, "k": k, "contexts": contexts, **placement,
            "methods": {m: {**_summary(s), "ssim_per_slice": s.ssim.tolist(),
                            "cc_per_slice": [None if not math.isfinite(v) else v for v in s.cc.tolist()]}
                        for m, s in methods.items()},
        })
    table = {m: {str(k): _mean_and_error([r["methods"][m] for r in per_subject if r["k"] == k and m in r["methods"]])
                 for k in ks} for m in labels}
    return {"ks": list(ks), "num_subjects": len(subjects), "num_samples": num_samples, "keep_contexts": keep,
            "methods": list(labels), "labels": labels, "table": table, "per_subject": per_subject,
            "kinds": {name: model.config.kind for name, model in models.items()}, "baselines": list(baselines),
            "variants": list(variants), "short": {key: method.short for key, method in {**variants, **baselines}.items()}}, first


def _identity(stack: np.ndarray) -> np.ndarray:
    return stack

