"""The test NLL of a model: random sequences of one split, scored as in training (SPEC §4)."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from bruno.data.sampler import SequenceSampler
from bruno.data.table import SliceTable
from bruno.models import SequenceModel
from bruno.units import bits_per_dim

__all__ = ["NLL", "sequence_nll"]


class NLL(NamedTuple):
    """Mean negative log-likelihood of target slices: nats per image and bits per dimension."""

    nats_per_image: float
    bits_per_dim: float
    num_sequences: int


def sequence_nll(model: SequenceModel, table: SliceTable, split: str, seq_len: int, num_context: int,
                 num_sequences: int, batch_size: int = 8, seed: int = 317070, progress: bool = True) -> NLL:
    """−mean log p of the targets of random sequences of one split (same n_c/T semantics as training).

    Args:
        model: a trained model.
        table: the slice table.
        split: ``train``, ``val`` or ``test``.
        seq_len: T; num_context: n_c (0 <= n_c < T).
        num_sequences: how many random sequences (rounded up to whole batches).
        batch_size: sequences per forward pass.
        seed: seed of the sequences and their dequantisation noise (upstream test seed 317070).
    """
    sampler = SequenceSampler(table, split, batch_size, seq_len, seed)
    batches = math.ceil(num_sequences / batch_size)
    score = tf.function(lambda images, poses, inputs: model.log_prob(images, poses, num_context, **inputs).log_prob)
    values = [score(tf.constant(b["images"]), tf.constant(b["poses"]),
                    model.log_prob_inputs(b["images"], b["poses"], num_context)).numpy()  # e.g. the classical estimate
              for b in tqdm(sampler.batches(batches), total=batches, desc=f"NLL {split}", disable=not progress)]
    nats = -float(np.mean(values))
    return NLL(nats, float(bits_per_dim(nats, model.num_dims)), batches * batch_size)
