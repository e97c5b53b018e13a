"""Trainable models of (slice, pose) sequences: Conditional BRUNO and the paper's neural baselines.

* :mod:`~bruno.models.sequence_model`: the interface they share (:class:`SequenceModel`);
* :mod:`~bruno.models.bruno`: :class:`ConditionalBruno` (pose embedding + conditional RealNVP + process);
* :mod:`~bruno.models.gqn`, :mod:`~bruno.models.cvae` over :mod:`~bruno.models.query_generator`: the GQN and C-VAE;
* :mod:`~bruno.models.encoder`: a trained flow's latents of whole volumes;
* :mod:`~bruno.models.nll`: the NLL of random sequences of a split;
* :mod:`~bruno.models.registry`: ``model.kind`` → class.
"""
from bruno.models.bruno import ConditionalBruno
from bruno.models.cvae import ConditionalVAE
from bruno.models.gqn import GenerativeQueryNetwork
from bruno.models.registry import MODEL_KINDS
from bruno.models.sequence_model import LogProb, Samples, SequenceModel, bits_per_dim

__all__ = ["MODEL_KINDS", "ConditionalBruno", "ConditionalVAE", "GenerativeQueryNetwork", "LogProb", "Samples",
           "SequenceModel", "bits_per_dim"]
