"""The statistics behind the classical reconstructions a statistician builds first (SPEC §5.5, §9), numpy only.

* :mod:`~bruno.baselines.simple`: linear interpolation along the pose, the population-mean atlas;
* :mod:`~bruno.baselines.gaussian`: the Gaussian volume model (probabilistic PCA) conditioned on slices;
* :mod:`~bruno.baselines.kernels`: GP interpolation of a prior's residuals along the pose;
* :mod:`~bruno.baselines.crossfit`: the PCA + GP estimate cross-fitted over the train subjects (what BRUNO may be
  conditioned on: a train subject's estimate never comes from a PCA that saw it).

They become reconstruction methods in :mod:`bruno.reconstruction.classical`; the paper's neural
baselines (GQN, C-VAE) are trainable models in :mod:`bruno.models`. Nothing here imports TensorFlow.
"""
from bruno.baselines.crossfit import FOLDS, ClassicalEstimate, CrossFittedEstimate
from bruno.baselines.gaussian import GaussianVolumeModel, Posterior
from bruno.baselines.kernels import gp_residual, matern32, residual_weights
from bruno.baselines.simple import interpolate_along_pose, linear_interpolation, population_mean

__all__ = ["FOLDS", "ClassicalEstimate", "CrossFittedEstimate", "GaussianVolumeModel", "Posterior", "gp_residual", "interpolate_along_pose",
           "linear_interpolation", "matern32", "population_mean", "residual_weights"]
