"""``model.kind`` → model class: the one place that knows the kinds of trainable model."""
from __future__ import annotations

from bruno.models.bruno import ConditionalBruno
from bruno.models.cvae import ConditionalVAE
from bruno.models.gqn import GenerativeQueryNetwork
from bruno.models.sequence_model import SequenceModel

__all__ = ["MODEL_KINDS"]

MODEL_KINDS: dict[str, type[SequenceModel]] = {"bruno": ConditionalBruno, "gqn": GenerativeQueryNetwork, "cvae": ConditionalVAE}

