"""How many samples the mean image needs (``scripts/evaluate.py --sample-counts``).

The mean image is a Monte Carlo average; its error shrinks like 1/√S, and its cost grows like S.
For each subject and k, one reconstruction with S_max = max(counts) samples is drawn, and the mean
of its first S samples is scored (SSIM, CC) for every S in ``counts`` (nested prefixes of one draw,
so the differences measure the Monte Carlo error, not a change of seed). The cheapest S whose mean
SSIM over subjects is within ``tolerance`` of the S_max value for every k is the recommendation;
:data:`bruno.reconstruction.FAST_SAMPLES` records the value measured on IXI (RESULTS.md).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from bruno.data.subjects import Subject
from bruno.files import write_text_files
from bruno.metrics import slice_scores
from bruno.models import SequenceModel
from bruno.reconstruction import sample_volume

__all__ = ["STUDY_FILES", "cheapest_within", "sample_count_study", "study_markdown", "write_study"]

STUDY_FILES = ("sample_counts.md", "sample_counts.json")


def sample_count_study(model: SequenceModel, subjects: Sequence[Subject], ks: Sequence[int], counts: Sequence[int],
                       contexts_for: Callable[[int, int], list[int]], seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """SSIM/CC of the mean of the first S samples, per subject, k and S.

    Returns:
        ``{"counts", "ks", "num_subjects", "per_subject": [{subject, k, ssim: {S: value}, cc: {S: value}}],
        "table": {k: {S: {"ssim", "ssim_diff", "ssim_diff_max", "cc"}}}}`` where ``ssim_diff`` is the mean
        over subjects of SSIM(S) − SSIM(S_max) and ``ssim_diff_max`` the largest |difference| of one subject.
    """
    counts = sorted(set(counts))
    largest = counts[-1]
    rows = []
    for subject, k in tqdm([(s, k) for s in subjects for k in ks], desc="samples", unit="volume", disable=not progress):
        recon = sample_volume(model, subject.images, contexts_for(k, model.num_poses), largest, seed=seed, progress=False)
        truth = subject.images.astype(np.float64)
        scores = {s: slice_scores(recon.samples[:s].mean(axis=0), truth) for s in counts}
        rows.append({"subject": subject.name, "k": k,
                     "ssim": {str(s): float(np.mean(v.ssim)) for s, v in scores.items()},
                     "cc": {str(s): float(np.nanmean(v.cc)) for s, v in scores.items()}})
    table: dict[str, dict[str, dict[str, float]]] = {}
    for k in ks:
        of_k = [r for r in rows if r["k"] == k]
        ssim = np.array([[r["ssim"][str(s)] for s in counts] for r in of_k])
        cc = np.array([[r["cc"][str(s)] for s in counts] for r in of_k])
        diff = ssim - ssim[:, -1:]
        table[str(k)] = {str(s): {"ssim": float(ssim[:, i].mean()), "ssim_diff": float(diff[:, i].mean()),
                                  "ssim_diff_max": float(np.abs(diff[:, i]).max()), "cc": float(np.nanmean(cc[:, i]))}
                         for i, s in enumerate(counts)}
    return {"counts": counts, "ks": list(ks), "num_subjects": len(subjects), "per_subject": rows, "table": table}


def cheapest_within(study: dict[str, Any], tolerance: float = 0.005) -> int:
    """The smallest S whose mean SSIM is within ``tolerance`` of the largest S's for every k."""
    for s in study["counts"]:
        if all(abs(study["table"][str(k)][str(s)]["ssim_diff"]) <= tolerance for k in study["ks"]):
            return int(s)
    return int(study["counts"][-1])


def study_markdown(study: dict[str, Any], title: str, tolerance: float = 0.005) -> str:
    """One row per S: mean SSIM per k, its difference from S_max, and the worst subject's difference."""
    largest = study["counts"][-1]
    header = " | ".join(f"k = {k}: SSIM (Δ mean, Δ max)" for k in study["ks"])
    lines = [f"# {title}", "", f"{study['num_subjects']} subjects; the mean of the first S of {largest} samples per pose. "
             f"Δ = SSIM(S) − SSIM({largest}).", "", f"| S | {header} | CC (k = {study['ks'][0]}) |",
             "|---|" + "---|" * len(study["ks"]) + "---|"]
    for s in study["counts"]:
        cells = []
        for k in study["ks"]:
            row = study["table"][str(k)][str(s)]
            cells.append(f"{row['ssim']:.4f} ({row['ssim_diff']:+.4f}, {row['ssim_diff_max']:.4f})")
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {study['table'][str(study['ks'][0])][str(s)]['cc']:.4f} |")
    lines += ["", f"Cheapest S within {tolerance} SSIM of S = {largest} for every k: **{cheapest_within(study, tolerance)}**."]
    return "\n".join(lines) + "\n"


def write_study(study: dict[str, Any], title: str, out_dir: str, overwrite: bool = False) -> str:
    """Write :data:`STUDY_FILES` (the table of :func:`study_markdown`, and the study as JSON) into ``out_dir``; the table."""
    text = study_markdown(study, title)
    write_text_files(out_dir, dict(zip(STUDY_FILES, (text, json.dumps(study, indent=1)))), overwrite)
    return text
