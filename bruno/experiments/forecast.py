"""Every method with a distribution scored as a forecast of the voxels it did not see (SPEC §10; the scores:
:mod:`bruno.metrics.forecast`): coverage of central intervals (the reliability curve), CRPS and the
conditional NLL, per subject and k, then their table, markdown and reliability diagram.

Rows: a sampling method (BRUNO, GQN, C-VAE) is scored by its S samples (``<key>_samples``); a method with a
closed-form Gaussian (the Gaussian volume model, ``pca``) by that law (``<key>_gaussian``) and by its samples.
The conditional NLL belongs to the method's density, so it fills the samples row of a sampling method and the
closed-form row of a Gaussian one; methods whose ``log_prob`` is only a bound (GQN, C-VAE) have none.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bruno.experiments.results import Evaluation, mean_se  # noqa: E402
from bruno.files import atomic_output  # noqa: E402
from bruno.metrics import LEVELS, crps_gaussian, crps_samples, head_mask, pit_coverage_gaussian, pit_coverage_samples  # noqa: E402
from bruno.reconstruction import Method, Result  # noqa: E402

__all__ = ["FORECAST_FIGURE", "forecast_markdown", "forecast_rows", "forecast_scores", "forecast_table",
           "paired_forecast_differences", "save_reliability"]

FORECAST_FIGURE = "reliability.png"
SCORES = (("cov50", "50 % interval covers", 3), ("cov90", "90 % interval covers", 3), ("crps", "CRPS (grey levels)", 2),
          ("nll", "conditional NLL (bits/dim)", 3))


def forecast_rows(method: Method, num_samples: int) -> dict[str, str]:
    """Forecast row key → label of one method (none without a distribution)."""
    if not method.has_distribution:
        return {}
    rows = {} if method.sampled else {f"{method.key}_gaussian": f"{method.label}, closed form"}
    if num_samples >= 2:
        rows[f"{method.key}_samples"] = f"{method.label}, {num_samples} samples"
    return rows


def forecast_scores(method: Method, result: Result, truth: np.ndarray, contexts: Sequence[int],
                    nll: Optional[np.ndarray] = None, closed_form: bool = True) -> dict[str, dict[str, Any]]:
    """Scores of a method's forecast rows for one subject and k over :func:`~bruno.metrics.head_mask`:
    ``coverage`` (per :data:`~bruno.metrics.LEVELS`), ``cov50``, ``cov90``, ``crps`` and ``nll`` (NaN where none).
    ``closed_form`` False: ``result.std`` is not the method's own (a result mapped onto another grid), so only its
    samples are scored."""
    if not method.has_distribution:
        return {}
    mask = head_mask(truth, contexts)
    y = truth[mask]
    scores: dict[str, dict[str, Any]] = {}
    nll_value = float(np.mean(nll)) if nll is not None and len(nll) else math.nan
    if closed_form and not method.sampled and result.std is not None:
        scores[f"{method.key}_gaussian"] = _row(pit_coverage_gaussian(result.mean[mask], result.std[mask], y),
                                                crps_gaussian(result.mean[mask], result.std[mask], y), nll_value)
    if result.samples is not None and len(result.samples) >= 2:
        samples = result.samples[:, mask]
        scores[f"{method.key}_samples"] = _row(pit_coverage_samples(samples, y), crps_samples(samples, y),
                                               nll_value if method.sampled else math.nan)
    return scores


def _row(coverage: np.ndarray, crps: float, nll: float) -> dict[str, Any]:
    return {"coverage": coverage.tolist(), "cov50": float(coverage[LEVELS.index(0.5)]),
            "cov90": float(coverage[LEVELS.index(0.9)]), "crps": crps, "nll": nll}


def forecast_table(per_subject: Sequence[dict[str, Any]], rows: Sequence[str], ks: Sequence[int]) -> dict[str, Any]:
    """table[row][k]: each score's mean over subjects and its standard error, and the mean reliability curve."""
    table: dict[str, Any] = {}
    for row in rows:
        table[row] = {}
        for k in ks:
            records = [r["forecast"][row] for r in per_subject if r["k"] == k and row in r.get("forecast", {})]
            if not records:
                continue
            cell: dict[str, Any] = {"coverage": np.mean([r["coverage"] for r in records], axis=0).tolist()}
            for score, _, _ in SCORES:
                values = np.array([r[score] for r in records], np.float64)
                values = values[np.isfinite(values)]
                cell[score] = float(values.mean()) if len(values) else math.nan
                cell[f"{score}_se"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
            table[row][str(k)] = cell
    return table


def forecast_markdown(results: Evaluation) -> list[str]:
    """The forecast tables of results.md (none when no method has a distribution)."""
    rows, ks = results.forecast_rows, results.ks
    if not rows:
        return []
    lines = ["## The predictive law as a forecast", "",
             "Over the voxels of the non-acquired slices with truth > 10 grey levels; coverage from the rank of the truth "
             "among the samples (PIT: unbiased whatever S for a calibrated forecast, S-dependent for a miscalibrated one) "
             "or from the closed-form Gaussian, nominal .50 and .90; CRPS in grey "
             "levels; conditional NLL of each non-acquired slice given the acquired ones, dequantised, in bits/dim. "
             "Mean over subjects ± SE. The reliability curves over every level are in reliability.png.", ""]
    for score, name, places in SCORES:
        lines += [f"### {name}", "", "| forecast | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for row, label in rows.items():
            cells = [results.forecast[row].get(str(k)) for k in ks]
            text = [mean_se(c[score], c[score + '_se'], places) if c and math.isfinite(c[score]) else "–"
                    for c in cells]
            lines.append(f"| {label} | " + " | ".join(text) + " |")
        lines.append("")
    return lines + _paired_lines(results)


NOMINAL = {"cov50": 0.5, "cov90": 0.9}


def _loss(score: str, value: float) -> float:
    """What is minimised: CRPS and NLL themselves; for a coverage, its distance to the nominal level."""
    return abs(value - NOMINAL[score]) if score in NOMINAL else value


def paired_forecast_differences(results: Evaluation, row: str, score: str) -> dict[str, dict[str, Any]]:
    """Per k: forecast ``row`` against the best classical forecaster at that k for ``score`` (the baselines' forecast
    rows, ``results.forecast_rivals``; best: lowest mean CRPS / NLL, or coverage nearest its nominal level), paired
    per subject. The difference is ours − theirs of CRPS / NLL, or of |coverage − nominal|: below 0, ours is better.

    Returns:
        Per k: ``against`` (the rival row), ``mean``, ``se`` (NaN with one subject), ``wins`` (subjects where ours is
        better) and ``n``; a k where either side has no finite score is left out.
    """
    out = {}
    for k in results.ks:
        cells = {r: results.forecast.get(r, {}).get(str(k)) for r in results.forecast_rivals}
        scored = [r for r, c in cells.items() if c and math.isfinite(c[score])]
        if not scored:
            continue
        best = min(scored, key=lambda r: _loss(score, cells[r][score]))  # type: ignore[index]
        pairs = [(s["forecast"][row][score], s["forecast"][best][score]) for s in results.per_subject
                 if s["k"] == k and row in s.get("forecast", {}) and best in s["forecast"]]
        diff = np.array([_loss(score, ours) - _loss(score, theirs) for ours, theirs in pairs], np.float64)
        diff = diff[np.isfinite(diff)]
        if not len(diff):
            continue
        out[str(k)] = {"against": best, "mean": float(diff.mean()),
                       "se": float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan,
                       "wins": int((diff < 0).sum()), "n": int(len(diff))}
    return out


def _forecast_short(results: Evaluation, row: str) -> str:
    """``pca_gaussian`` → ``PCA, closed form``; ``bruno_samples`` → ``BRUNO, samples`` (the method's short name)."""
    method, kind = row.rsplit("_", 1)
    name = results.short.get(method) or results.short.get(f"{method}_mean") or method
    return f"{name}, {({'gaussian': 'closed form'}).get(kind, kind)}"


def _paired_lines(results: Evaluation) -> list[str]:
    if not results.forecast_ours or not results.forecast_rivals:
        return []
    ks = results.ks
    lines = ["### Paired differences against the best classical forecaster at each k", "",
             "Ours − the competitor with the best mean at that k (named), per subject: CRPS and NLL themselves, "
             "coverage as |coverage − nominal|; below 0 ours is better; ± SE over subjects (wins / n).", "",
             "| forecast | score | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    short = {row: _forecast_short(results, row) for row in results.forecast_rows}
    for row in results.forecast_ours:
        for score, name, places in SCORES:
            diffs = paired_forecast_differences(results, row, score)
            if not diffs:
                continue
            cells = []
            for k in ks:
                d = diffs.get(str(k))
                cells.append(f"{mean_se(d['mean'], d['se'], places, signed=True)} vs {short[d['against']]} "
                             f"({d['wins']}/{d['n']})" if d else "–")
            lines.append(f"| {short[row]} | {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def save_reliability(results: Evaluation, path: str, overwrite: bool = False) -> bool:
    """The reliability diagram: observed against nominal coverage of central intervals, one panel per k, one line
    per forecast row. False (nothing written) when no method has a distribution."""
    rows, ks = results.forecast_rows, results.ks
    if not rows:
        return False
    fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks) + 1.5, 3.6), dpi=110, squeeze=False)
    for ax, k in zip(axes[0], ks):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        for row, label in rows.items():
            cell = results.forecast[row].get(str(k))
            if cell:
                ax.plot(LEVELS, cell["coverage"], marker="o", ms=3, label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"k = {k}", xlabel="nominal coverage")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("observed coverage")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.legend(handles, labels, fontsize=7, loc="upper center", ncol=min(len(labels), 2), bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Reliability of the central intervals (on the diagonal: calibrated; above: too wide)", fontsize=10)
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return True
