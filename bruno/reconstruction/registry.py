"""``--method`` key → reconstruction method: the one place that knows the kinds of method.

Adding a method: a module with a :class:`~bruno.reconstruction.method.Method` subclass, and its line here.
"""
from __future__ import annotations

from collections.abc import Sequence

from bruno.errors import ConfigError
from bruno.reconstruction.classical import PCAGP, Atlas, AtlasGP, GaussianConditional, LinearInterpolation
from bruno.reconstruction.forecasters import AtlasGPForecast, PCAForecast, PCAGPForecast
from bruno.reconstruction.latent import LatentVolumeModel
from bruno.reconstruction.method import Method, Source
from bruno.reconstruction.sampling import ModelSampling

__all__ = ["METHODS", "build_method", "check_methods"]

METHODS: dict[str, type[Method]] = {
    "bruno": ModelSampling,  # the run's model, whatever its kind (BRUNO, GQN, C-VAE)
    "latent_pca_gp": LatentVolumeModel,
    "linear": LinearInterpolation,
    "population_mean": Atlas,
    "pca": GaussianConditional,
    "atlas_gp": AtlasGP,
    "pca_gp": PCAGP,
    "pca_forecast": PCAForecast,  # the classical forecasters: spreads chosen on val by CRPS per k
    "atlas_gp_forecast": AtlasGPForecast,
    "pca_gp_forecast": PCAGPForecast,
}


def check_methods(keys: Sequence[str], has_run: bool) -> None:
    """Refuse, before anything is built, a key that is not registered or that needs a trained run when there is none.

    Raises:
        ConfigError: naming the key.
    """
    for key in keys:
        if key not in METHODS:
            raise ConfigError(f"method {key!r}: expected one of {', '.join(METHODS)}")
        if METHODS[key].needs_run and not has_run:
            raise ConfigError(f"method {key!r}: needs a trained run (a run directory), not only a config")


def build_method(key: str, source: Source) -> Method:
    """The method ``key`` built from ``source`` (checked with :func:`check_methods` first)."""
    check_methods([key], source.model is not None)
    return METHODS[key].build(source)
