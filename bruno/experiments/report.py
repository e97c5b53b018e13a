"""Tables and figures of an evaluation (:func:`bruno.experiments.evaluation.evaluate`'s results):
``results.md`` (the paper's tables 3a/3b, paired differences against the best competitor, SSIM by
distance to the nearest context, pose placement errors), ``results.csv``, ``results.json``,
``ssim_curves.png`` (per-slice SSIM per k, the paper's Fig. 3c) and ``montage.png``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from bruno.baselines import ClassicalMethod  # noqa: E402
from bruno.data.subjects import Subject  # noqa: E402
from bruno.experiments.evaluation import METRICS  # noqa: E402
from bruno.files import atomic_output, write_text_files  # noqa: E402
from bruno.reconstruction import Reconstruction  # noqa: E402

__all__ = ["REPORT_FILES", "by_distance", "paired_differences", "results_markdown", "save_curves", "save_montage",
           "write_report", "write_results"]

REPORT_FILES = ("results.md", "results.csv", "results.json", "ssim_curves.png", "montage.png")


def write_report(results: dict[str, Any], first: dict[int, dict[str, Reconstruction]], subject: Subject,
                 methods: dict[str, ClassicalMethod], contexts_for: Callable[[int, int], list[int]], out_dir: str, title: str,
                 overwrite: bool = False) -> str:
    """Write :data:`REPORT_FILES` into ``out_dir`` (the montage shows ``subject``, the first, at k = 3 or the
    smallest k) and return the markdown tables.

    Args:
        results, first: what :func:`~bruno.experiments.evaluation.evaluate` returned.
        methods: the classical methods and latent variants, by key, for the montage.
        contexts_for: k, N → the context poses (as evaluated).
    """
    write_results(results, out_dir, title, overwrite)
    save_curves(results, os.path.join(out_dir, "ssim_curves.png"), overwrite)
    ks = results["ks"]
    k_shown = 3 if 3 in ks else ks[0]
    save_montage(subject, first.get(k_shown, {}), results["labels"], os.path.join(out_dir, "montage.png"), methods,
                 contexts_for(k_shown, len(subject.images)), overwrite=overwrite)
    return results_markdown(results, title)


def _display(labels: dict[str, str], name: str) -> str:
    """The model's display name (``BRUNO``, ``GQN (run)``...): its mean-image label up to the comma."""
    return labels[f"{name}_mean"].split(",")[0]


def _kept_note(results: dict[str, Any]) -> str:
    kept = [_display(results["labels"], name) for name, keep in results["keep_contexts"].items() if keep]
    if not kept:
        return "."
    return f"; {' and '.join(kept)} return{'s' if len(kept) == 1 else ''} the context slices unchanged."


def _short(results: dict[str, Any], method: str) -> str:
    return results["short"].get(method) or _display(results["labels"], method[: -len("_mean")])


def paired_differences(results: dict[str, Any], method: str, metric: str) -> dict[str, dict[str, Any]]:
    """Per k: ``method`` − the best competitor at that k (highest mean ``metric``), paired per subject.

    Competitors: the classical baselines and the mean images of the GQN / C-VAE runs. Returns, per k,
    the competitor's key, the mean difference, its standard error, the wins and the subject count.
    """
    rivals = results["baselines"] + [f"{n}_mean" for n, kind in results["kinds"].items() if kind != "bruno"]
    out = {}
    for k in results["ks"]:
        scored = [r for r in rivals if math.isfinite(results["table"][r][str(k)][metric])]
        if not scored:
            continue
        best = max(scored, key=lambda r: results["table"][r][str(k)][metric])
        rows = [r["methods"] for r in results["per_subject"] if r["k"] == k]
        diff = np.array([m[method][metric] - m[best][metric] for m in rows], np.float64)
        diff = diff[np.isfinite(diff)]
        out[str(k)] = {"against": best, "mean": float(diff.mean()), "se": float(diff.std(ddof=1) / math.sqrt(len(diff)))
                       if len(diff) > 1 else math.nan, "wins": int((diff > 0).sum()), "n": int(len(diff))}
    return out


def by_distance(results: dict[str, Any], k: int, method: str, bins: int = 8) -> list[float]:
    """Mean SSIM of ``method``'s slices at k contexts by distance (poses) to the nearest context: 0..bins−1, then ≥ bins."""
    totals, counts = np.zeros(bins + 1), np.zeros(bins + 1)
    for r in results["per_subject"]:
        if r["k"] != k or method not in r["methods"]:
            continue
        poses = np.arange(len(r["methods"][method]["ssim_per_slice"]))
        distance = np.min(np.abs(poses[:, None] - np.asarray(r["contexts"])[None, :]), axis=1)
        np.add.at(totals, np.minimum(distance, bins), r["methods"][method]["ssim_per_slice"])
        np.add.at(counts, np.minimum(distance, bins), 1)
    return [float(t / c) if c else math.nan for t, c in zip(totals, counts)]


def _distance_lines(results: dict[str, Any], bins: int = 8) -> list[str]:
    k = max(results["ks"])
    rows = [m for m in results["methods"] if not m.endswith("_sample")]
    lines = [f"## SSIM by distance to the nearest context, k = {k}", "",
             "| method | " + " | ".join(str(d) for d in range(bins)) + f" | ≥ {bins} |", "|---|" + "---|" * (bins + 1)]
    for method in rows:
        cells = by_distance(results, k, method, bins)
        lines.append(f"| {results['labels'][method]} | " + " | ".join("–" if math.isnan(c) else f"{c:.3f}" for c in cells) + " |")
    return lines + [""]


def _pose_lines(results: dict[str, Any]) -> list[str]:
    """The acquired-slices protocol's placement error per k (mean ± SE over subjects, poses and mm)."""
    records = [r for r in results["per_subject"] if "pose_error" in r]
    if not records:
        return []
    lines = ["## Pose placement of the acquired slices", "",
             f"Poses {results.get('poses_from', 'estimated')}: mean |pose − true pose| over a volume's acquired slices, "
             "then over subjects ± SE.", "", "| | " + " | ".join(f"k = {k}" for k in results["ks"]) + " |",
             "|---|" + "---|" * len(results["ks"])]
    for key, unit in (("pose_error", "poses"), ("pose_error_mm", "mm")):
        cells = []
        for k in results["ks"]:
            values = np.array([r[key] for r in records if r["k"] == k])
            se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            cells.append(f"{values.mean():.2f} ± {se:.2f}")
        lines.append(f"| error ({unit}) | " + " | ".join(cells) + " |")
    cells = []
    for k in results["ks"]:
        slices = np.concatenate([r["slice_pose_errors"] for r in records if r["k"] == k])
        cells.append(f"{np.median(slices):g} / {np.percentile(slices, 90):g} / {slices.max():g} ({np.mean(slices == 0):.0%} exact)")
    lines.append("| per slice: median / 90th percentile / max (poses) | " + " | ".join(cells) + " |")
    return lines + [""]


def results_markdown(results: dict[str, Any], title: str) -> str:
    """Tables laid out like the paper's Tables 3a/3b (one row per method, one column per k), then
    each BRUNO row against the best competitor at each k, paired per subject."""
    ks = results["ks"]
    lines = [f"# {title}", "",
             f"{results['num_subjects']} subjects"
             + (f", {results['num_samples']} samples per pose; " if results["kinds"] else "; ")
             + "mean over slices (PSNR: over the volume's voxels), then over subjects ± the standard error over subjects"
             + _kept_note(results), ""]
    for metric, name, places in METRICS:
        lines += [f"## {name}", "", "| method | " + " | ".join(f"k = {k}" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for method in results["methods"]:
            cells = [results["table"][method][str(k)] for k in ks]
            row = [f"{c[metric]:.{places}f} ± {c[metric + '_se']:.{places}f}" if math.isfinite(c[metric]) else "–" for c in cells]
            lines.append(f"| {results['labels'][method]} | " + " | ".join(row) + " |")
        lines.append("")
    lines += _pose_lines(results)
    ours = [f"{n}_{part}" for n, kind in results["kinds"].items() if kind == "bruno" for part in ("mean", "mode")]
    ours += results.get("variants", [])
    if ours:
        lines += ["## Paired differences against the best competitor at each k", "",
                  "Per subject, the row's score minus that of the best baseline at that k (mean ± SE; in brackets "
                  "the subjects where the row wins).", "",
                  "| row | metric | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
        for method in ours:
            for metric, name, places in METRICS:
                diffs = paired_differences(results, method, metric)
                cells = [f"{d['mean']:+.{places}f} ± {d['se']:.{places}f} vs {_short(results, d['against'])} ({d['wins']}/{d['n']})"
                         if (d := diffs.get(str(k))) else "–" for k in ks]
                lines.append(f"| {results['labels'][method]} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines + _distance_lines(results))


def _csv_text(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["subject", "k", "method", "ssim", "cc", "psnr"])
    for r in results["per_subject"]:
        for method in results["methods"]:
            if method in r["methods"]:
                scores = r["methods"][method]
                writer.writerow([r["subject"], r["k"], method, *(f"{scores[m]:.6f}" for m in ("ssim", "cc", "psnr"))])
    return buffer.getvalue()


def write_results(results: dict[str, Any], out_dir: str, title: str, overwrite: bool = False) -> list[str]:
    """``results.md``, ``results.csv`` and ``results.json`` in ``out_dir`` (each written atomically)."""
    texts = {"results.md": results_markdown(results, title), "results.csv": _csv_text(results),
             "results.json": json.dumps(results, indent=1)}
    return write_text_files(out_dir, texts, overwrite)


def save_curves(results: dict[str, Any], path: str, overwrite: bool = False) -> None:
    """Per-slice SSIM (mean over subjects) against the pose (Fig. 3c).

    One line per k for the first model's mean image (without models: the last classical baseline);
    the other models and every classical baseline at the largest k.
    """
    names = list(results["kinds"])
    leading, leading_label = ((f"{names[0]}_mean", _display(results["labels"], names[0])) if names else
                              (results["baselines"][-1], _short(results, results["baselines"][-1])))
    last = results["ks"][-1]

    def curve(method: str, k: int) -> tuple[np.ndarray, list[int]]:
        rows = [r for r in results["per_subject"] if r["k"] == k]
        return np.mean([r["methods"][method]["ssim_per_slice"] for r in rows], axis=0), rows[0]["contexts"]

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for k in results["ks"]:
        values, contexts = curve(leading, k)
        line, = ax.plot(values, label=f"{leading_label}, k = {k}")
        ax.plot(contexts, values[contexts], "o", color=line.get_color(), ms=4)
    for name in names[1:]:
        ax.plot(curve(f"{name}_mean", last)[0], "--", label=f"{_display(results['labels'], name)}, k = {last}")
    colours = plt.get_cmap("tab10").colors[len(results["ks"]) + len(names[1:]):]
    for key, colour in zip([b for b in [*results.get("variants", []), *results["baselines"]] if b != leading], colours):
        ax.plot(curve(key, last)[0], "--", color=colour, lw=1.0, label=f"{_short(results, key)}, k = {last}")
    ax.set_xlabel("slice position (pose)")
    ax.set_ylabel("SSIM")
    ax.set_title("Per-slice SSIM (dots: context slices" + ("; models: the mean image)" if names else ")"))
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def save_montage(subject: Subject, recons: dict[str, Reconstruction], labels: dict[str, str], path: str,
                 baselines: Optional[dict[str, ClassicalMethod]] = None, contexts: Optional[list[int]] = None,
                 num_columns: int = 10, num_sample_rows: int = 3, overwrite: bool = False) -> None:
    """Truth, then per model its samples, mean image, deterministic image and std, then each classical baseline
    (and the Gaussian model's std).

    The first model shows ``num_sample_rows`` samples, the others one; evenly spaced poses plus the
    contexts (framed red). Every spread shares one colour scale.

    Args:
        recons: model name → its reconstruction of ``subject`` (all with the same contexts; may be empty).
        labels: method key → label, as ``results["labels"]``.
        baselines: key → classical method, estimated here from the same contexts.
        contexts: the context poses (default: those of the reconstructions).
    """
    contexts = list(contexts if contexts is not None else next(iter(recons.values())).contexts)
    poses = sorted(set(np.linspace(0, len(subject.images) - 1, num_columns).round().astype(int).tolist()) | set(contexts))
    rows: list[tuple[str, np.ndarray, bool]] = [("truth", subject.images, False)]
    for index, (name, recon) in enumerate(recons.items()):
        display = _display(labels, name)
        count = min(num_sample_rows if index == 0 else 1, len(recon.samples))
        rows += [(f"{display}\nsample {i + 1}", recon.samples[i], False) for i in range(count)]
        rows += [(f"{display}\nmean", recon.mean, False), (f"{display}\n{'decoded' if name == 'bruno' else 'prior z'}", recon.mode, False),
                 (f"{display}\nstd", recon.std, True)]
    for method in (baselines or {}).values():
        if len(contexts) >= method.min_contexts:
            estimate = method.estimate(subject.images, contexts)
            rows.append((method.short.replace(" + ", "\n+ "), estimate.mean, False))
            if estimate.std is not None:
                rows.append((f"{method.short}\nstd", estimate.std, True))
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
    samples = f", {len(next(iter(recons.values())).samples)} samples per pose" if recons else ""
    fig.suptitle(f"{subject.name}: k = {len(contexts)} contexts (red){samples}; "
                 f"std on one scale, 0 to {spread_max:.0f} grey levels", fontsize=9, y=1.0 - 0.15 / fig.get_figheight())
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
