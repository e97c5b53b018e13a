"""Baselines: the classical ones a statistician builds first, and the paper's neural ones (SPEC §5.5, §9).

* classical, no training (:mod:`bruno.baselines.classical`, one interface, :class:`ClassicalMethod`):
  linear interpolation, the population-mean atlas, the Gaussian volume model (probabilistic PCA,
  :mod:`bruno.baselines.gaussian`) and GP interpolation of a prior's residuals; their settings are
  chosen on the val split and stored (:mod:`bruno.baselines.tuning`);
* :class:`GenerativeQueryNetwork` (:mod:`bruno.baselines.gqn`) and :class:`ConditionalVAE`
  (:mod:`bruno.baselines.cvae`), trained and sampled through the same interface as BRUNO
  (``model.kind: gqn`` or ``cvae`` in an experiment config).
"""
from bruno.baselines.classical import ClassicalMethod, Estimate
from bruno.baselines.cvae import ConditionalVAE
from bruno.baselines.gaussian import GaussianVolumeModel
from bruno.baselines.gqn import GenerativeQueryNetwork
from bruno.baselines.simple import linear_interpolation, population_mean
from bruno.baselines.tuning import load_methods

__all__ = ["ClassicalMethod", "ConditionalVAE", "Estimate", "GaussianVolumeModel", "GenerativeQueryNetwork",
           "linear_interpolation", "load_methods", "population_mean"]
