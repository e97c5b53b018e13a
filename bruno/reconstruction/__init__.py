"""Reconstructing whole volumes from a few slices, by every method, behind one interface.

* :mod:`~bruno.reconstruction.method`: :class:`Method` (``reconstruct(images, contexts, ...)`` → :class:`Result`)
  and :class:`Source` (what methods are built from);
* :mod:`~bruno.reconstruction.registry`: ``--method`` key → method (:data:`METHODS`, :func:`build_method`);
* :mod:`~bruno.reconstruction.sampling`: a trained model's samples (BRUNO, GQN, C-VAE);
* :mod:`~bruno.reconstruction.latent`: the flow with a Gaussian model of its latents;
* :mod:`~bruno.reconstruction.classical`: linear interpolation, the atlas, the Gaussian volume model, GP residuals;
* :mod:`~bruno.reconstruction.tuning`: settings chosen on the val split, stored once;
* :mod:`~bruno.reconstruction.contexts`: which poses to condition on;
* :mod:`~bruno.reconstruction.placement`: acquired slices placed on the pose grid;
* :mod:`~bruno.reconstruction.io`: NIfTI writing; :mod:`~bruno.reconstruction.pipeline`: files → files.
"""
from bruno.reconstruction.contexts import FAST_SAMPLES, FETAL_CONTEXTS, check_contexts, evenly_spread, fetal_contexts
from bruno.reconstruction.io import save_nifti, write_reconstruction, write_volume
from bruno.reconstruction.method import Method, Result, Source
from bruno.reconstruction.registry import METHODS, build_method, check_methods
from bruno.reconstruction.sampling import ModelSampling, sample_volume

__all__ = ["FAST_SAMPLES", "FETAL_CONTEXTS", "METHODS", "Method", "ModelSampling", "Result", "Source", "build_method",
           "check_contexts", "check_methods", "evenly_spread", "fetal_contexts", "sample_volume", "save_nifti",
           "write_reconstruction", "write_volume"]
