"""Forecast scores on forecasts whose answer is known: calibrated samples cover at the nominal rate, the ensemble
CRPS tends to the Gaussian closed form, over- and under-dispersed forecasts miss in the expected direction."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from bruno.metrics import LEVELS, crps_gaussian, crps_samples, head_mask, pit_coverage_gaussian, pit_coverage_samples


def test_samples_from_the_true_law_cover_at_the_nominal_rate_whatever_s() -> None:
    rng = np.random.default_rng(0)
    m = 200_000
    mean, std = rng.uniform(50, 200, m), rng.uniform(2, 30, m)
    truth = mean + std * rng.standard_normal(m)
    for count in (5, 30):
        samples = mean + std * rng.standard_normal((count, m))
        coverage = pit_coverage_samples(samples, truth)
        # binomial sampling error of a share over 200,000 voxels: < 0.0012 sd
        np.testing.assert_allclose(coverage, LEVELS, atol=0.005)
    np.testing.assert_allclose(pit_coverage_gaussian(mean, std, truth), LEVELS, atol=0.005)
    # a forecast twice too wide covers more, one half too wide less: 50 % intervals cover 2Φ(±0.674·k) − 1
    wide = pit_coverage_gaussian(mean, 2 * std, truth, (0.5,))[0]
    narrow = pit_coverage_gaussian(mean, std / 2, truth, (0.5,))[0]
    assert wide == pytest.approx(2 * norm.cdf(2 * norm.ppf(0.75)) - 1, abs=0.005)
    assert narrow == pytest.approx(2 * norm.cdf(norm.ppf(0.75) / 2) - 1, abs=0.005)


def test_ranks_with_ties_split_the_coverage_exactly() -> None:
    # four samples, all equal to the truth: u is uniform on [0, 1], so the 50 % interval covers exactly half
    assert pit_coverage_samples(np.full((4, 1), 7.0), np.array([7.0]), (0.5, 0.9)) == pytest.approx([0.5, 0.9])
    # the truth above every one of 3 samples: u uniform on [3/4, 1]: the 90 % interval [.05, .95] covers (0.95 − 0.75)/0.25
    assert pit_coverage_samples(np.array([[1.0], [2.0], [3.0]]), np.array([9.0]), (0.9, 0.5)) == pytest.approx([0.8, 0.0])


def test_ensemble_crps_tends_to_the_gaussian_closed_form() -> None:
    rng = np.random.default_rng(1)
    m = 2000
    mean, std, truth = rng.uniform(0, 100, m), rng.uniform(1, 20, m), rng.uniform(0, 100, m)
    closed = crps_gaussian(mean, std, truth)
    z = (truth - mean) / std
    by_hand = np.mean(std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi)))
    assert closed == pytest.approx(by_hand, rel=1e-10)
    samples = mean + std * rng.standard_normal((4000, m))
    assert crps_samples(samples, truth) == pytest.approx(closed, rel=1e-3)


def test_fair_crps_of_a_small_ensemble_matches_its_formula() -> None:
    samples, truth = np.array([[1.0], [4.0], [6.0]]), np.array([3.0])
    # (1/3)(2 + 1 + 3) − (1/(2·3·2))·2·(3 + 5 + 2) = 2 − 10/6
    assert crps_samples(samples, truth) == pytest.approx(2 - 10 / 6, rel=1e-12)


def test_head_mask_leaves_out_the_acquired_slices_and_the_background() -> None:
    truth = np.zeros((3, 2, 2))
    truth[:, 0, 0] = 11.0
    truth[:, 1, 1] = 10.0
    mask = head_mask(truth, [1])
    assert mask.sum() == 2 and mask[0, 0, 0] and mask[2, 0, 0] and not mask[1].any()


def test_bad_forecasts_are_refused() -> None:
    with pytest.raises(ValueError, match=r"std .*expected values > 0"):
        pit_coverage_gaussian(np.zeros(3), np.array([1.0, 0.0, 1.0]), np.zeros(3))
    with pytest.raises(ValueError, match=r"forecast \(3,\) and truth \(2,\)"):
        crps_gaussian(np.zeros(3), np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"fair CRPS needs at least 2 samples"):
        crps_samples(np.zeros((1, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"levels \(1.0,\)"):
        pit_coverage_samples(np.zeros((3, 2)), np.zeros(2), (1.0,))
