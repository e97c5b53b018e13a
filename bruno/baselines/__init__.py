"""Baselines: the simple ones a user tries first, and the paper's neural ones (SPEC §5.5).

* :func:`linear_interpolation`, :func:`population_mean` (:mod:`bruno.baselines.simple`);
* :class:`GenerativeQueryNetwork` (:mod:`bruno.baselines.gqn`) and :class:`ConditionalVAE`
  (:mod:`bruno.baselines.cvae`), trained and sampled through the same interface as BRUNO
  (``model.kind: gqn`` or ``cvae`` in an experiment config).
"""
from bruno.baselines.cvae import ConditionalVAE
from bruno.baselines.gqn import GenerativeQueryNetwork
from bruno.baselines.simple import linear_interpolation, population_mean

__all__ = ["ConditionalVAE", "GenerativeQueryNetwork", "linear_interpolation", "population_mean"]
