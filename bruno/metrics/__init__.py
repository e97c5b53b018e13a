"""Scores of reconstructions, numpy only: of the mean image (:mod:`.images`: SSIM, CC, PSNR) and of the whole
predictive law, as a forecast (:mod:`.forecast`: interval coverage from the PIT, CRPS; bits/dim: :mod:`bruno.units`)."""
from bruno.metrics.forecast import (
           LEVELS,
           crps_gaussian,
           crps_samples,
           head_mask,
           pit_coverage_gaussian,
           pit_coverage_samples,
)
from bruno.metrics.images import SliceScores, cross_correlation, pearson, psnr, slice_scores, ssim

__all__ = ["LEVELS", "SliceScores", "cross_correlation", "crps_gaussian", "crps_samples", "head_mask", "pearson",
           "pit_coverage_gaussian", "pit_coverage_samples", "psnr", "slice_scores", "ssim"]
