"""The evaluation report: paired differences against the best competitor, SSIM by distance to a context."""
from __future__ import annotations

import numpy as np
import pytest

from bruno.data.subjects import Subject
from bruno.experiments.report import by_distance, montage_rows, paired_differences
from bruno.experiments.results import Evaluation
from bruno.reconstruction import Result


def test_paired_differences_and_distance_table() -> None:
    def subject(ours: float, pca: float, linear: float) -> dict:
        per_slice = [1.0, ours, ours, 1.0, ours]
        return {"k": 2, "contexts": [0, 3], "methods": {
            "bruno_mean": {"ssim": ours, "ssim_per_slice": per_slice},
            "pca": {"ssim": pca, "ssim_per_slice": per_slice}, "linear": {"ssim": linear, "ssim_per_slice": per_slice}}}

    results = Evaluation(ks=[2], rivals=["linear", "pca"], table={"linear": {"2": {"ssim": 0.5}}, "pca": {"2": {"ssim": 0.7}}},
                         per_subject=[subject(0.8, 0.7, 0.5), subject(0.6, 0.7, 0.4), subject(0.9, 0.7, 0.6)])
    diff = paired_differences(results, "bruno_mean", "ssim")["2"]
    assert diff["against"] == "pca" and diff["wins"] == 2 and diff["n"] == 3
    assert diff["mean"] == pytest.approx(0.2 / 3) and diff["se"] == pytest.approx(np.std([0.1, -0.1, 0.2], ddof=1) / np.sqrt(3))
    # poses 0..4 with contexts 0 and 3: distances 0, 1, 1, 0, 1
    np.testing.assert_allclose(by_distance(results, 2, "bruno_mean", bins=2)[:2], [1.0, (0.8 + 0.6 + 0.9) / 3])


def test_montage_rows_name_each_runs_deterministic_image_by_its_method() -> None:
    """Two BRUNO runs scored together (named after their folders) and a GQN run: each decoded row is labelled
    by its own model, not by whether the run's name is 'bruno'."""
    stack = np.zeros((4, 2, 2))
    sampled = Result(stack, stack, np.stack([stack, stack]), [1], stack)
    labels = {"pca": "Gaussian volume model", "gqn_mode": "GQN, latents at the prior mean", "gqn_mean": "GQN, mean image"}
    for run in ("ixi_a", "ixi_b"):
        labels.update({f"{run}_mode": f"BRUNO ({run}), decoded predictive mean", f"{run}_mean": f"BRUNO ({run}), mean image"})
    results = Evaluation(ks=[1], sampled=["ixi_a", "ixi_b", "gqn"], single=["pca"], short={"pca": "PCA"}, labels=labels)
    recons = {"ixi_a": sampled, "ixi_b": sampled, "gqn": sampled, "pca": Result(stack, stack, None, [1])}
    names = [name for name, _, _ in montage_rows(Subject("s", stack), recons, results)]
    assert names == ["truth", "BRUNO (ixi_a)\nsample 1", "BRUNO (ixi_a)\nsample 2", "BRUNO (ixi_a)\nmean",
                     "BRUNO (ixi_a)\ndecoded predictive mean", "BRUNO (ixi_a)\nstd",
                     "BRUNO (ixi_b)\nsample 1", "BRUNO (ixi_b)\nmean", "BRUNO (ixi_b)\ndecoded predictive mean", "BRUNO (ixi_b)\nstd",
                     "GQN\nsample 1", "GQN\nmean", "GQN\nlatents at the prior mean", "GQN\nstd", "PCA", "PCA\nstd"]


def test_mean_se_never_prints_nan() -> None:
    from bruno.experiments.results import mean_se

    assert mean_se(0.81234, 0.0041, 3) == "0.812 ± 0.004"
    assert mean_se(0.01234, 0.002, 3, signed=True) == "+0.012 ± 0.002"
    assert mean_se(0.81234, float("nan"), 3) == "0.812 (n = 1)"  # one subject: no standard error
