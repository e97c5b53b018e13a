"""The paper's evaluation protocol (SPEC §5.3) with two baselines, and its tables and figures.

For each subject and each k: choose k contexts (evenly spread, or the fetal table), reconstruct
every pose with S samples, and score every slice against the truth with SSIM and CC. Methods:

* ``bruno_mean``: the mean image over samples (the paper's tables);
* ``bruno_mode``: the decoded predictive mean latent (one image per pose, no sampling);
* ``bruno_sample``: the mean score of single samples;
* ``linear``: linear interpolation between the nearest contexts (constant beyond the ends);
* ``population_mean``: the per-pose mean of the training volumes (an atlas that ignores the contexts).

Volume score = mean over slices (CC ignores undefined slices); table = mean over subjects, with the
standard error over subjects (sd/√n).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bruno.baselines import linear_interpolation  # noqa: E402
from bruno.files import atomic_output  # noqa: E402
from bruno.metrics import SliceScores, slice_scores  # noqa: E402
from bruno.model import ConditionalBruno  # noqa: E402
from bruno.reconstruction import Reconstruction, reconstruct  # noqa: E402

__all__ = ["METHODS", "Subject", "evaluate", "results_markdown", "save_curves", "save_montage", "write_results"]

METHODS = ("bruno_mean", "bruno_mode", "bruno_sample", "linear", "population_mean")
_LABELS = {"bruno_mean": "BRUNO, mean image", "bruno_mode": "BRUNO, decoded predictive mean", "bruno_sample": "BRUNO, single sample",
           "linear": "linear interpolation", "population_mean": "population mean (atlas)"}


class Subject(NamedTuple):
    """One test volume: a name and its pose-ordered slices, uint8 [N, H, W]."""

    name: str
    images: np.ndarray


def _summary(scores: Any) -> dict[str, float]:
    return {"ssim": float(np.mean(scores.ssim)), "cc": float(np.nanmean(scores.cc)) if np.isfinite(scores.cc).any() else math.nan}


def _mean_and_error(scores: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean over subjects and its standard error (sd with ddof 1 / √n) of each metric."""
    summary = {}
    for metric in ("ssim", "cc"):
        values = np.array([s[metric] for s in scores], np.float64)
        values = values[np.isfinite(values)]
        summary[metric] = float(values.mean()) if len(values) else math.nan
        summary[f"{metric}_se"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return summary


def evaluate(model: ConditionalBruno, subjects: Sequence[Subject], ks: Sequence[int], atlas: np.ndarray,
             contexts_for: Callable[[int, int], list[int]], num_samples: int, seed: int = 0,
             progress: bool = True, keep_contexts: bool = False) -> tuple[dict[str, Any], dict[int, Reconstruction]]:
    """Run the protocol (``keep_contexts``: BRUNO returns the context slices unchanged at their poses).

    Returns:
        (results, the reconstructions of the first subject per k). ``results["per_subject"]`` holds,
        per subject, k and method, the per-slice ``ssim`` and ``cc`` lists and their means;
        ``results["table"][method][k]`` the means over subjects.
    """
    per_subject: list[dict[str, Any]] = []
    first: dict[int, Reconstruction] = {}
    jobs = [(s, k) for s in subjects for k in ks]
    for subject, k in tqdm(jobs, desc="evaluate", unit="volume", disable=not progress):
        contexts = contexts_for(k, model.num_poses)
        recon = reconstruct(model, subject.images, contexts, num_samples, seed=seed, progress=False, keep_contexts=keep_contexts)
        if subject is subjects[0]:
            first[k] = recon
        truth = subject.images.astype(np.float64)
        sample_scores = [slice_scores(sample, truth) for sample in recon.samples]
        methods = {
            "bruno_mean": slice_scores(recon.mean, truth),
            "bruno_mode": slice_scores(recon.mode, truth),
            "bruno_sample": SliceScores(np.mean([s.ssim for s in sample_scores], axis=0),
                                        np.nanmean([s.cc for s in sample_scores], axis=0)),
            "linear": slice_scores(linear_interpolation(subject.images, contexts), truth),
            "population_mean": slice_scores(atlas, truth),
        }
        per_subject.append({
            "subject": subject.name, "k": k, "contexts": contexts,
            "methods": {m: {**_summary(s), "ssim_per_slice": s.ssim.tolist(),
                            "cc_per_slice": [None if not math.isfinite(v) else v for v in s.cc.tolist()]}
                        for m, s in methods.items()},
        })
    table = {m: {str(k): _mean_and_error([r["methods"][m] for r in per_subject if r["k"] == k]) for k in ks} for m in METHODS}
    return {"ks": list(ks), "num_subjects": len(subjects), "num_samples": num_samples, "keep_contexts": keep_contexts, "table": table,
            "per_subject": per_subject}, first


def results_markdown(results: dict[str, Any], title: str) -> str:
    """Tables laid out like the paper's Tables 3a/3b: one row per method, one column per k."""
    ks = results["ks"]
    lines = [f"# {title}", "",
             f"{results['num_subjects']} subjects, {results['num_samples']} samples per pose; "
             "mean over slices, then over subjects ± the standard error over subjects"
             + ("; BRUNO returns the context slices unchanged." if results.get("keep_contexts") else "."), ""]
    for metric, name in (("ssim", "SSIM"), ("cc", "CC")):
        lines += [f"## {name}", "", "| method | " + " | ".join(f"k = {k}" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for method in METHODS:
            cells = [results["table"][method][str(k)] for k in ks]
            row = [f"{c[metric]:.3f} ± {c[metric + '_se']:.3f}" for c in cells]
            lines.append(f"| {_LABELS[method]} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def _csv_text(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["subject", "k", "method", "ssim", "cc"])
    for r in results["per_subject"]:
        for method in METHODS:
            writer.writerow([r["subject"], r["k"], method, f"{r['methods'][method]['ssim']:.6f}", f"{r['methods'][method]['cc']:.6f}"])
    return buffer.getvalue()


def write_results(results: dict[str, Any], out_dir: str, title: str, overwrite: bool = False) -> list[str]:
    """``results.md``, ``results.csv`` and ``results.json`` in ``out_dir`` (each written atomically)."""
    written = []
    for name, text in (("results.md", results_markdown(results, title)), ("results.csv", _csv_text(results)),
                       ("results.json", json.dumps(results, indent=1))):
        path = os.path.join(out_dir, name)
        with atomic_output(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(path)
    return written


def save_curves(results: dict[str, Any], path: str, overwrite: bool = False) -> None:
    """Per-slice SSIM of the mean image (mean over subjects) against the pose, one line per k (Fig. 3c)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for k in results["ks"]:
        rows = [r for r in results["per_subject"] if r["k"] == k]
        curve = np.mean([r["methods"]["bruno_mean"]["ssim_per_slice"] for r in rows], axis=0)
        line, = ax.plot(curve, label=f"k = {k}")
        ax.plot(rows[0]["contexts"], curve[rows[0]["contexts"]], "o", color=line.get_color(), ms=4)
    linear = np.mean([r["methods"]["linear"]["ssim_per_slice"] for r in results["per_subject"] if r["k"] == results["ks"][-1]], axis=0)
    ax.plot(linear, "k:", label=f"linear interpolation, k = {results['ks'][-1]}")
    ax.set_xlabel("slice position (pose)")
    ax.set_ylabel("SSIM of the mean image")
    ax.set_title("Per-slice SSIM (dots: context slices)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def save_montage(subject: Subject, recon: Reconstruction, path: str, num_columns: int = 10,
                 num_sample_rows: int = 3, overwrite: bool = False) -> None:
    """Ground truth / samples / mean / decoded predictive mean / std at evenly spaced poses (contexts framed red)."""
    poses = sorted(set(np.linspace(0, len(subject.images) - 1, num_columns).round().astype(int).tolist()) | set(recon.contexts))
    rows = [("truth", subject.images)] + [(f"sample {i + 1}", recon.samples[i]) for i in range(min(num_sample_rows, len(recon.samples)))]
    rows += [("mean", recon.mean), ("decoded mean", recon.mode), ("std", recon.std)]
    fig, axes = plt.subplots(len(rows), len(poses), figsize=(1.0 * len(poses) + 1, 1.05 * len(rows) + 0.6), dpi=100, squeeze=False)
    for r, (name, stack) in enumerate(rows):
        vmax = max(float(recon.std.max()), 1.0) if name == "std" else 255
        for c, q in enumerate(poses):
            ax = axes[r, c]
            ax.imshow(stack[q], cmap="magma" if name == "std" else "gray", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if q in recon.contexts:
                ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor="red", linewidth=3))
            if r == 0:
                ax.set_title(f"{q}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(f"{subject.name}: k = {len(recon.contexts)} contexts (red), {len(recon.samples)} samples", fontsize=9)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
