"""Tables and figures of an evaluation (:func:`bruno.experiments.evaluation.evaluate`'s results):
``results.md`` (the paper's tables 3a/3b, paired differences against the best competitor, SSIM by
distance to the nearest context, pose placement errors, every distribution scored as a forecast),
``results.csv``, ``results.json``, ``ssim_curves.png`` (per-slice SSIM per k, the paper's Fig. 3c),
``reliability.png`` (observed against nominal interval coverage) and ``montage.png``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from bruno.data.subjects import Subject  # noqa: E402
from bruno.experiments.evaluation import METRICS  # noqa: E402
from bruno.experiments.forecast import FORECAST_FIGURE, forecast_markdown, save_reliability  # noqa: E402
from bruno.experiments.results import Evaluation, mean_se  # noqa: E402
from bruno.files import atomic_output, write_text_files  # noqa: E402
from bruno.reconstruction import Result  # noqa: E402

__all__ = ["REPORT_FILES", "by_distance", "montage_rows", "paired_differences", "results_markdown", "save_curves",
           "save_montage", "write_report", "write_results"]

REPORT_FILES = ("results.md", "results.csv", "results.json", "ssim_curves.png", FORECAST_FIGURE, "montage.png")


def write_report(results: Evaluation, first: dict[int, dict[str, Result]], subject: Subject,
                 contexts_for: Callable[[int, int], list[int]], out_dir: str, title: str, overwrite: bool = False) -> str:
    """Write :data:`REPORT_FILES` into ``out_dir`` (the montage shows ``subject``, the first, at k = 3 or the
    smallest k) and return the markdown tables.

    Args:
        results, first: what :func:`~bruno.experiments.evaluation.evaluate` returned.
        contexts_for: k, N → the context poses (as evaluated).
    """
    write_results(results, out_dir, title, overwrite)
    save_curves(results, os.path.join(out_dir, "ssim_curves.png"), overwrite)
    save_reliability(results, os.path.join(out_dir, FORECAST_FIGURE), overwrite)
    ks = results.ks
    k_shown = 3 if 3 in ks else ks[0]
    save_montage(subject, first.get(k_shown, {}), results, os.path.join(out_dir, "montage.png"),
                 contexts_for(k_shown, len(subject.images)), overwrite=overwrite)
    return results_markdown(results, title)


def _display(labels: dict[str, str], name: str) -> str:
    """The model's display name (``BRUNO``, ``GQN (run)``...): its mean-image label up to the comma."""
    return labels[f"{name}_mean"].split(",")[0]


def _kept_note(results: Evaluation) -> str:
    kept = [_display(results.labels, name) for name, keep in results.keep_contexts.items() if keep]
    if not kept:
        return "."
    return f"; {' and '.join(kept)} return{'s' if len(kept) == 1 else ''} the context slices unchanged."


def _short(results: Evaluation, method: str) -> str:
    return results.short.get(method) or _display(results.labels, method[: -len("_mean")])


def paired_differences(results: Evaluation, method: str, metric: str) -> dict[str, dict[str, Any]]:
    """Per k: ``method`` − the best competitor at that k (highest mean ``metric``), paired per subject.

    Competitors: ``results.rivals``, the rows of the baselines (the classical methods and the mean images of
    the GQN / C-VAE runs). Returns, per k, the competitor's key, the mean difference, its standard error, the
    wins and the subject count.
    """
    rivals = results.rivals
    out = {}
    for k in results.ks:
        scored = [r for r in rivals if math.isfinite(results.table[r][str(k)][metric])]
        if not scored:
            continue
        best = max(scored, key=lambda r: results.table[r][str(k)][metric])
        rows = [r["methods"] for r in results.per_subject if r["k"] == k]
        diff = np.array([m[method][metric] - m[best][metric] for m in rows], np.float64)
        diff = diff[np.isfinite(diff)]
        out[str(k)] = {"against": best, "mean": float(diff.mean()), "se": float(diff.std(ddof=1) / math.sqrt(len(diff)))
                       if len(diff) > 1 else math.nan, "wins": int((diff > 0).sum()), "n": int(len(diff))}
    return out


def by_distance(results: Evaluation, k: int, method: str, bins: int = 8) -> list[float]:
    """Mean SSIM of ``method``'s slices at k contexts by distance (poses) to the nearest context: 0..bins−1, then ≥ bins."""
    totals, counts = np.zeros(bins + 1), np.zeros(bins + 1)
    for r in results.per_subject:
        if r["k"] != k or method not in r["methods"]:
            continue
        poses = np.arange(len(r["methods"][method]["ssim_per_slice"]))
        distance = np.min(np.abs(poses[:, None] - np.asarray(r["contexts"])[None, :]), axis=1)
        np.add.at(totals, np.minimum(distance, bins), r["methods"][method]["ssim_per_slice"])
        np.add.at(counts, np.minimum(distance, bins), 1)
    return [float(t / c) if c else math.nan for t, c in zip(totals, counts)]


def _distance_lines(results: Evaluation, bins: int = 8) -> list[str]:
    k = max(results.ks)
    rows = [m for m in results.methods if not m.endswith("_sample")]
    lines = [f"## SSIM by distance to the nearest context, k = {k}", "",
             "| method | " + " | ".join(str(d) for d in range(bins)) + f" | ≥ {bins} |", "|---|" + "---|" * (bins + 1)]
    for method in rows:
        cells = by_distance(results, k, method, bins)
        lines.append(f"| {results.labels[method]} | " + " | ".join("–" if math.isnan(c) else f"{c:.3f}" for c in cells) + " |")
    return lines + [""]


def _pose_lines(results: Evaluation) -> list[str]:
    """The acquired-slices protocol's placement error per k (mean ± SE over subjects, poses and mm)."""
    records = [r for r in results.per_subject if "pose_error" in r]
    if not records:
        return []
    poses_from = results.provenance.get("poses_from", "estimated")
    lines = ["## Pose placement of the acquired slices", "",
             f"Poses {poses_from}: mean |pose − true pose| over a volume's acquired slices, "
             "then over subjects ± SE.", "", "| | " + " | ".join(f"k = {k}" for k in results.ks) + " |",
             "|---|" + "---|" * len(results.ks)]
    for key, unit in (("pose_error", "poses"), ("pose_error_mm", "mm")):
        cells = []
        for k in results.ks:
            values = np.array([r[key] for r in records if r["k"] == k])
            se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            cells.append(mean_se(values.mean(), se, 2))
        lines.append(f"| error ({unit}) | " + " | ".join(cells) + " |")
    cells = []
    for k in results.ks:
        slices = np.concatenate([r["slice_pose_errors"] for r in records if r["k"] == k])
        cells.append(f"{np.median(slices):g} / {np.percentile(slices, 90):g} / {slices.max():g} ({np.mean(slices == 0):.0%} exact)")
    lines.append("| per slice: median / 90th percentile / max (poses) | " + " | ".join(cells) + " |")
    return lines + [""]


def results_markdown(results: Evaluation, title: str) -> str:
    """Tables laid out like the paper's Tables 3a/3b (one row per method, one column per k), then
    each of our rows against the best competitor at each k, paired per subject."""
    ks = results.ks
    lines = [f"# {title}", "",
             f"{results.num_subjects} subject{'s' if results.num_subjects != 1 else ''}"
             + (f", {results.num_samples} samples per pose; " if results.sampled else "; ")
             + "mean over slices (PSNR: over the volume's voxels), then over subjects ± the standard error over subjects"
             + _kept_note(results), ""]
    for metric, name, places in METRICS:
        lines += [f"## {name}", "", "| method | " + " | ".join(f"k = {k}" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for method in results.methods:
            cells = [results.table[method][str(k)] for k in ks]
            row = [mean_se(c[metric], c[metric + '_se'], places) if math.isfinite(c[metric]) else "–" for c in cells]
            lines.append(f"| {results.labels[method]} | " + " | ".join(row) + " |")
        lines.append("")
    lines += _pose_lines(results)
    ours = results.ours
    if ours:
        lines += ["## Paired differences against the best competitor at each k", "",
                  "Per subject, the row's score minus that of the best baseline at that k (mean ± SE; in brackets "
                  "the subjects where the row wins).", "",
                  "| row | metric | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
        for method in ours:
            for metric, name, places in METRICS:
                diffs = paired_differences(results, method, metric)
                cells = [f"{mean_se(d['mean'], d['se'], places, signed=True)} vs {_short(results, d['against'])} ({d['wins']}/{d['n']})"
                         if (d := diffs.get(str(k))) else "–" for k in ks]
                lines.append(f"| {results.labels[method]} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines + forecast_markdown(results) + _distance_lines(results))


def _csv_text(results: Evaluation) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["subject", "k", "method", "ssim", "cc", "psnr"])
    for r in results.per_subject:
        for method in results.methods:
            if method in r["methods"]:
                scores = r["methods"][method]
                writer.writerow([r["subject"], r["k"], method, *(f"{scores[m]:.6f}" for m in ("ssim", "cc", "psnr"))])
    return buffer.getvalue()


def write_results(results: Evaluation, out_dir: str, title: str, overwrite: bool = False) -> list[str]:
    """``results.md``, ``results.csv`` and ``results.json`` in ``out_dir`` (each written atomically)."""
    texts = {"results.md": results_markdown(results, title), "results.csv": _csv_text(results),
             "results.json": json.dumps(results.to_json(), indent=1)}
    return write_text_files(out_dir, texts, overwrite)


def save_curves(results: Evaluation, path: str, overwrite: bool = False) -> None:
    """Per-slice SSIM (mean over subjects) against the pose (Fig. 3c).

    One line per k for the first sampling method's mean image (without one: the last other method);
    the other sampling methods and every other method at the largest k.
    """
    names = results.sampled
    leading, leading_label = ((f"{names[0]}_mean", _display(results.labels, names[0])) if names else
                              (results.single[-1], _short(results, results.single[-1])))
    last = results.ks[-1]

    def curve(method: str, k: int) -> tuple[np.ndarray, list[int]]:
        rows = [r for r in results.per_subject if r["k"] == k]
        return np.mean([r["methods"][method]["ssim_per_slice"] for r in rows], axis=0), rows[0]["contexts"]

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for k in results.ks:
        values, contexts = curve(leading, k)
        line, = ax.plot(values, label=f"{leading_label}, k = {k}")
        ax.plot(contexts, values[contexts], "o", color=line.get_color(), ms=4)
    for name in names[1:]:
        ax.plot(curve(f"{name}_mean", last)[0], "--", label=f"{_display(results.labels, name)}, k = {last}")
    colours = plt.get_cmap("tab10").colors[len(results.ks) + len(names[1:]):]
    for key, colour in zip([b for b in results.single if b != leading], colours):
        ax.plot(curve(key, last)[0], "--", color=colour, lw=1.0, label=f"{_short(results, key)}, k = {last}")
    ax.set_xlabel("slice position (pose)")
    ax.set_ylabel("SSIM")
    ax.set_title("Per-slice SSIM (dots: context slices" + ("; models: the mean image)" if names else ")"))
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def montage_rows(subject: Subject, recons: dict[str, Result], results: Evaluation,
                 num_sample_rows: int = 3) -> list[tuple[str, np.ndarray, bool]]:
    """(row name, [N, H, W] stack, is a spread) for :func:`save_montage`: the truth, then per sampling method its
    samples (the first method ``num_sample_rows``, the others one), mean image, deterministic image (named as in
    its row label) and std; then every other method's reconstruction (and its std where it has one)."""
    rows: list[tuple[str, np.ndarray, bool]] = [("truth", subject.images, False)]
    labels = results.labels
    for index, key in enumerate(k for k in results.sampled if k in recons):
        recon, display = recons[key], _display(labels, key)
        assert recon.samples is not None and recon.decoded_mean is not None and recon.std is not None
        count = min(num_sample_rows if index == 0 else 1, len(recon.samples))
        rows += [(f"{display}\nsample {i + 1}", recon.samples[i], False) for i in range(count)]
        rows += [(f"{display}\nmean", recon.mean, False), (labels[f"{key}_mode"].replace(", ", "\n", 1), recon.decoded_mean, False),
                 (f"{display}\nstd", recon.std, True)]
    for key in (k for k in results.single if k in recons):
        short = _short(results, key)
        rows.append((short.replace(" + ", "\n+ "), recons[key].mean, False))
        if recons[key].std is not None:
            rows.append((f"{short}\nstd", recons[key].std, True))
    return rows


def save_montage(subject: Subject, recons: dict[str, Result], results: Evaluation, path: str,
                 contexts: list[int], num_columns: int = 10, overwrite: bool = False) -> None:
    """The rows of :func:`montage_rows` at evenly spaced poses plus the contexts (framed red); every spread
    shares one colour scale.

    Args:
        recons: method key → its reconstruction of ``subject`` at ``contexts`` (may be empty).
        results: the evaluation's results (labels and which methods sample).
    """
    poses = sorted(set(np.linspace(0, len(subject.images) - 1, num_columns).round().astype(int).tolist()) | set(contexts))
    rows = montage_rows(subject, recons, results)
    fig, axes = plt.subplots(len(rows), len(poses), figsize=(1.0 * len(poses) + 1.4, 1.05 * len(rows) + 0.6), dpi=100,
                             squeeze=False)
    fig.subplots_adjust(top=1.0 - 0.5 / fig.get_figheight(), bottom=0.02, hspace=0.1, wspace=0.05)
    spread_max = max([float(stack.max()) for _, stack, spread in rows if spread] + [1.0])  # one scale: spreads compare
    for r, (name, stack, spread) in enumerate(rows):
        vmax = spread_max if spread else 255
        for c, q in enumerate(poses):
            ax = axes[r, c]
            ax.imshow(stack[q], cmap="magma" if spread else "gray", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if q in contexts:
                ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, edgecolor="red", linewidth=3))
            if r == 0:
                ax.set_title(f"{q}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    sampled = [recons[k] for k in results.sampled if k in recons]
    samples = f", {len(sampled[0].samples)} samples per pose" if sampled and sampled[0].samples is not None else ""
    fig.suptitle(f"{subject.name}: k = {len(contexts)} contexts (red){samples}; "
                 f"std on one scale, 0 to {spread_max:.0f} grey levels", fontsize=9, y=1.0 - 0.15 / fig.get_figheight())
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
