"""The motion experiment (SPEC §5.4): which initial volume for slice-to-volume reconstruction?

Per subject: three orthogonal stacks are simulated with random slice translations
(:mod:`bruno.experiments.motion.simulate`); the Gaussian average of the stacks at their nominal positions is the usual
initial volume; BRUNO's is the mean of S samples per pose conditioned on motion-free slices (by
default 4: the fetal table's k = 4 set, scaled to N); translation-only SVR (:mod:`bruno.experiments.motion.svr`) is then run from
each. Every volume is scored against the truth with SSIM and CC (mean over its axial slices, as in
:mod:`bruno.experiments.evaluation`), and each SVR iteration's corrections by their mean distance to the true
translations (mm). Reference rows: the Gaussian average of motion-free stacks at both σ (what the
initialisation, and SVR at best, would give without motion), the Gaussian average of the moved stacks
at SVR's σ without registration (how much of SVR's gain is the narrower kernel alone), and linear
interpolation between the motion-free slices.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bruno.baselines import linear_interpolation  # noqa: E402
from bruno.data.subjects import Subject  # noqa: E402
from bruno.experiments.motion.simulate import (  # noqa: E402
    gaussian_average,
    simulate_stacks,
    voxel_spacing,
)
from bruno.experiments.motion.svr import slice_to_volume  # noqa: E402
from bruno.experiments.results import mean_se  # noqa: E402
from bruno.files import atomic_output, check_output_dir, write_text_files  # noqa: E402
from bruno.metrics import slice_scores  # noqa: E402
from bruno.models import SequenceModel  # noqa: E402
from bruno.reconstruction import FETAL_CONTEXTS, sample_volume  # noqa: E402

__all__ = ["INITS", "RESULT_FILES", "MotionSettings", "default_contexts", "motion_markdown", "run_study", "run_subject",
           "save_svr_curves", "save_views", "summarise", "write_motion_results"]

INITS = {"gaussian": "Gaussian average", "bruno": "BRUNO"}
_LABELS = {"motion_free_average": "Gaussian average of motion-free stacks, initialisation σ (reference)",
           "motion_free_average_svr": "Gaussian average of motion-free stacks, SVR σ (reference: SVR's ceiling)",
           "gaussian": "Gaussian average of the moved stacks (initialisation)",
           "gaussian_svr_sigma": "Gaussian average of the moved stacks, SVR σ, no registration (reference)",
           "bruno": "BRUNO mean image from the motion-free slices (initialisation)",
           "linear": "linear interpolation between the motion-free slices (reference)"}


def default_contexts(num_poses: int) -> list[int]:
    """The fetal table's k = 4 slices (10, 30, 50, 70 of N = 80, bin centres) scaled to N: round(c·N/80)."""
    return [int(math.floor(c * num_poses / 80 + 0.5)) for c in FETAL_CONTEXTS[4]]


class MotionSettings(NamedTuple):
    """The experiment's choices (defaults: SPEC §5.4's recommendations; ``svr_sigma`` chosen on validation subjects)."""

    translation_mm: float = 10.0
    law: str = "uniform"
    sigma: float = 1.0
    svr_sigma: float = 0.5
    svr_iterations: int = 5
    search_mm: float = 20.0
    num_samples: int = 100
    seed: int = 0


class SubjectResult(NamedTuple):
    """Scores of one subject (``scores[method] = {ssim, cc}``, ``svr[init] = {ssim, cc, error_mm}`` lists
    over iterations 0..I) and the volumes shown in its figure."""

    scores: dict[str, dict[str, float]]
    svr: dict[str, dict[str, list[float]]]
    volumes: dict[str, np.ndarray]


def _score(volume: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    s = slice_scores(volume, truth)
    return {"ssim": float(np.mean(s.ssim)), "cc": float(np.nanmean(s.cc)) if np.isfinite(s.cc).any() else math.nan}


def run_subject(model: SequenceModel, images: np.ndarray, spacing: np.ndarray, contexts: Sequence[int],
                settings: MotionSettings, index: int, progress: bool = False) -> SubjectResult:
    """The whole experiment on one volume [N, H, W] (0..255) with voxel size ``spacing`` (dN, dH, dW) mm.

    ``index`` (the subject's position in the run) and ``settings.seed`` seed its translations.
    """
    truth = np.asarray(images, np.float64)
    spacing = np.asarray(spacing, np.float64)
    rng = np.random.default_rng([settings.seed, index])
    stacks = simulate_stacks(truth, spacing, settings.translation_mm, rng, settings.law)
    still = simulate_stacks(truth, spacing, 0.0, rng)
    volumes = {
        "motion_free_average": gaussian_average(truth.shape, still, settings.sigma),
        "motion_free_average_svr": gaussian_average(truth.shape, still, settings.svr_sigma),
        "gaussian": gaussian_average(truth.shape, stacks, settings.sigma),
        "gaussian_svr_sigma": gaussian_average(truth.shape, stacks, settings.svr_sigma),
        "bruno": sample_volume(model, images, contexts, settings.num_samples, seed=settings.seed, progress=progress).mean,
        "linear": linear_interpolation(images, contexts),
    }
    scores = {name: _score(v, truth) for name, v in volumes.items()}
    limit = settings.search_mm / spacing
    svr = {}
    for init in INITS:
        result = slice_to_volume(stacks, volumes[init], settings.svr_iterations, settings.svr_sigma, limit)
        per_iteration = [_score(v, truth) for v in result.volumes]
        errors = [float(np.mean(np.concatenate([np.linalg.norm(o * spacing - s.translations, axis=1)
                                                for o, s in zip(offsets, stacks)]))) for offsets in result.offsets]
        svr[init] = {"ssim": [p["ssim"] for p in per_iteration], "cc": [p["cc"] for p in per_iteration], "error_mm": errors}
        volumes[f"svr_{init}"] = result.volumes[-1]
    return SubjectResult(scores, svr, volumes)


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, np.float64)
    array = array[np.isfinite(array)]
    if len(array) == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else math.nan


def summarise(per_subject: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means ± standard errors over subjects: ``table`` (methods), ``svr`` (per init and iteration), ``paired``."""
    methods = list(per_subject[0]["scores"])
    table = {m: {f"{metric}{suffix}": value for metric in ("ssim", "cc")
                 for suffix, value in zip(("", "_se"), _mean_se([r["scores"][m][metric] for r in per_subject]))}
             for m in methods}
    iterations = len(per_subject[0]["svr"]["gaussian"]["ssim"])
    svr = {init: {key: [_mean_se([r["svr"][init][key][i] for r in per_subject]) for i in range(iterations)]
                  for key in ("ssim", "cc", "error_mm")} for init in INITS}

    def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
        difference = np.asarray(a) - np.asarray(b)
        mean, se = _mean_se(difference)
        return {"mean": mean, "se": se, "wins": int((difference > 0).sum()), "n": len(difference)}

    final = {init: [r["svr"][init]["ssim"][-1] for r in per_subject] for init in INITS}
    return {
        "table": table, "svr": svr,
        "paired": {
            "bruno_minus_gaussian_ssim": paired([r["scores"]["bruno"]["ssim"] for r in per_subject],
                                                [r["scores"]["gaussian"]["ssim"] for r in per_subject]),
            "bruno_minus_gaussian_cc": paired([r["scores"]["bruno"]["cc"] for r in per_subject],
                                              [r["scores"]["gaussian"]["cc"] for r in per_subject]),
            "svr_bruno_minus_svr_gaussian_ssim": paired(final["bruno"], final["gaussian"]),
        },
    }


def motion_markdown(results: dict[str, Any], title: str) -> str:
    """The initialisation table, the SVR table (one row per iteration) and the paired differences."""
    s = results["settings"]
    lines = [f"# {title}", "",
             f"{results['num_subjects']} subjects; translations {s['law']} ±{s['translation_mm']:g} mm per slice; "
             f"Gaussian σ {s['sigma']:g} voxel (initialisation), {s['svr_sigma']:g} voxel (SVR); BRUNO from slices "
             f"{results['contexts']} with {s['num_samples']} samples per pose. Mean over axial slices, then over "
             "subjects ± the standard error over subjects.", "",
             "| volume | SSIM | CC |", "|---|---|---|"]
    for method, cell in results["table"].items():
        lines.append(f"| {_LABELS[method]} | {mean_se(cell['ssim'], cell['ssim_se'], 3)} | {mean_se(cell['cc'], cell['cc_se'], 3)} |")
    lines += ["", "Slice-to-volume registration from each initial volume (iteration 0: the initial volume itself; "
              "error: mean distance of the corrected slice positions to the true ones).", "",
              "| iteration | " + " | ".join(f"SSIM from {name}" for name in INITS.values()) + " | "
              + " | ".join(f"error (mm) from {name}" for name in INITS.values()) + " |",
              "|---|" + "---|" * (2 * len(INITS))]
    for i in range(len(results["svr"]["gaussian"]["ssim"])):
        cells = [mean_se(*results['svr'][init]['ssim'][i][:2], 3) for init in INITS]
        cells += [f"{results['svr'][init]['error_mm'][i][0]:.2f}" for init in INITS]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    p = results["paired"]
    lines += ["", "Paired over subjects (mean ± standard error; subjects where the first is higher):", ""]
    for key, label in (("bruno_minus_gaussian_ssim", "BRUNO − Gaussian average, SSIM"),
                       ("bruno_minus_gaussian_cc", "BRUNO − Gaussian average, CC"),
                       ("svr_bruno_minus_svr_gaussian_ssim", "SVR from BRUNO − SVR from Gaussian average, final SSIM")):
        lines.append(f"- {label}: {mean_se(p[key]['mean'], p[key]['se'], 3, signed=True)} ({p[key]['wins']}/{p[key]['n']})")
    return "\n".join(lines) + "\n"


def _csv_text(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["subject", "method", "iteration", "ssim", "cc", "error_mm"])
    for r in results["per_subject"]:
        for method, cell in r["scores"].items():
            writer.writerow([r["subject"], method, "", f"{cell['ssim']:.6f}", f"{cell['cc']:.6f}", ""])
        for init, curve in r["svr"].items():
            for i, (ssim, cc, error) in enumerate(zip(curve["ssim"], curve["cc"], curve["error_mm"])):
                writer.writerow([r["subject"], f"svr_from_{init}", i, f"{ssim:.6f}", f"{cc:.6f}", f"{error:.4f}"])
    return buffer.getvalue()


def write_motion_results(results: dict[str, Any], out_dir: str, title: str, overwrite: bool = False) -> list[str]:
    """``results.md``, ``results.csv`` and ``results.json`` in ``out_dir`` (each written atomically)."""
    texts = {"results.md": motion_markdown(results, title), "results.csv": _csv_text(results),
             "results.json": json.dumps(results, indent=1)}
    return write_text_files(out_dir, texts, overwrite)


_VIEW_ROWS = (("truth", "truth"), ("gaussian", "Gaussian average"), ("bruno", "BRUNO"),
              ("svr_gaussian", "SVR from\nGaussian average"), ("svr_bruno", "SVR from BRUNO"))


def save_views(name: str, truth: np.ndarray, volumes: dict[str, np.ndarray], spacing: np.ndarray, scores: dict[str, float],
               path: str, overwrite: bool = False) -> None:
    """Axial, coronal and sagittal planes through the centre of the truth and each volume, with its SSIM."""
    dn, dh, dw = np.asarray(spacing, np.float64)
    n, h, w = truth.shape
    fig, axes = plt.subplots(len(_VIEW_ROWS), 3, figsize=(7.5, 2.3 * len(_VIEW_ROWS)), dpi=100, squeeze=False)
    for r, (key, label) in enumerate(_VIEW_ROWS):
        volume = truth if key == "truth" else volumes[key]
        views = ((volume[n // 2], dh / dw, "upper", "axial (A up)"),
                 (volume[:, h // 2, :], dn / dw, "lower", "coronal (S up)"),
                 (volume[:, :, w // 2], dn / dh, "lower", "sagittal (S up, A left)"))
        for c, (plane, aspect, origin, title) in enumerate(views):
            ax = axes[r, c]
            ax.imshow(plane, cmap="gray", vmin=0, vmax=255, aspect=aspect, origin=origin, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
        score = "" if key == "truth" else f"\nSSIM {scores[key]:.3f}"
        axes[r, 0].set_ylabel(label + score, fontsize=8)
    fig.suptitle(name, fontsize=9)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def save_svr_curves(results: dict[str, Any], path: str, overwrite: bool = False) -> None:
    """Mean SSIM and translation error against the SVR iteration, from each initial volume."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for init, label in INITS.items():
        curve = results["svr"][init]
        iterations = np.arange(len(curve["ssim"]))
        left.errorbar(iterations, [m for m, _ in curve["ssim"]], yerr=[e for _, e in curve["ssim"]], marker="o",
                      label=f"from {label}")
        right.plot(iterations, [m for m, _ in curve["error_mm"]], marker="o", label=f"from {label}")
    left.axhline(results["table"]["motion_free_average_svr"]["ssim"], color="k", ls=":", label="motion-free average, SVR σ")
    left.set(xlabel="SVR iteration", ylabel="SSIM against the truth")
    right.set(xlabel="SVR iteration", ylabel="mean slice position error (mm)")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


RESULT_FILES = ("results.md", "results.csv", "results.json", "svr_curves.png")


def run_study(model: SequenceModel, subjects: Sequence[Subject], contexts: Sequence[int], settings: MotionSettings,
              out: str, title: str, about: dict[str, Any], overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run every subject (:func:`run_subject`) and write ``out``: :data:`RESULT_FILES` and one
    ``views_<subject>.png`` each (checked before any work; the folder is made once they can be written).

    Args:
        about: what the results record first (the run, its checkpoint step, the source of the subjects).

    Returns:
        The results (``results.json``'s content).

    Raises:
        OutputPathError: an output exists and ``overwrite`` is false, or ``out`` cannot be written.
    """
    views = {s.name: os.path.join(out, "views_" + re.sub(r"[^A-Za-z0-9_.-]", "_", s.name) + ".png") for s in subjects}
    check_output_dir(out, [*RESULT_FILES, *(os.path.basename(path) for path in views.values())], overwrite)
    os.makedirs(out, exist_ok=True)
    per_subject = []
    for index, subject in enumerate(tqdm(subjects, desc="motion experiment", unit="subject", disable=not progress)):
        spacing = voxel_spacing(subject.affine)
        result = run_subject(model, subject.images, spacing, contexts, settings, index)
        per_subject.append({"subject": subject.name, "spacing_mm": spacing.tolist(), "scores": result.scores, "svr": result.svr})
        ssims = {k: v["ssim"] for k, v in result.scores.items()} | {f"svr_{k}": v["ssim"][-1] for k, v in result.svr.items()}
        save_views(f"{subject.name}: voxel {spacing[2]:.2f} x {spacing[1]:.2f} x {spacing[0]:.2f} mm (W x H x N)",
                   subject.images, result.volumes, spacing, ssims, views[subject.name], overwrite)
    results = {**about, "num_subjects": len(subjects), "contexts": list(contexts), "settings": settings._asdict(),
               **summarise(per_subject), "per_subject": per_subject}
    write_motion_results(results, out, title, overwrite)
    save_svr_curves(results, os.path.join(out, "svr_curves.png"), overwrite)
    return results
