"""Trainable models of (slice, pose) sequences: Conditional BRUNO and the paper's neural baselines.

* :mod:`~bruno.models.sequence_model`: the interface they share (:class:`SequenceModel`);
* :mod:`~bruno.models.bruno`: :class:`ConditionalBruno` (pose embedding + conditional RealNVP + process);
* :mod:`~bruno.models.gqn`, :mod:`~bruno.models.cvae` over :mod:`~bruno.models.query_generator`: the GQN and C-VAE;
* :mod:`~bruno.models.encoder`: a trained flow's latents of whole volumes;
* :data:`MODEL_KINDS`: ``model.kind`` → class, the one place that knows the kinds. What a kind can do (an exact
  likelihood, mixed precision, a memory estimate, a test-time state) its class declares
  (:class:`~bruno.models.sequence_model.SequenceModel`'s capabilities): no code outside asks for a kind.
"""
from bruno.models.bruno import ConditionalBruno
from bruno.models.cvae import ConditionalVAE
from bruno.models.gqn import GenerativeQueryNetwork
from bruno.models.sequence_model import LogProb, Samples, SequenceModel

MODEL_KINDS: dict[str, type[SequenceModel]] = {"bruno": ConditionalBruno, "gqn": GenerativeQueryNetwork, "cvae": ConditionalVAE}

__all__ = ["MODEL_KINDS", "ConditionalBruno", "ConditionalVAE", "GenerativeQueryNetwork", "LogProb", "Samples",
           "SequenceModel"]
