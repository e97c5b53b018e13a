"""Training sequences from a slice table, as a ``tf.data`` pipeline (SPEC §3, "batch construction").

Each sequence is drawn from one volume of a split: the volume uniformly at random (with
replacement across the batch), then ``seq_len`` distinct slices of it uniformly without
replacement, in random order. The first ``num_context_slices`` of a sequence are the contexts,
so the contexts are a random subset. Images get U[0, 1) dequantisation noise from the same
random stream. Only the slices of the current batch are read from the HDF5 file.

The stream depends only on the table and ``seed``: iterating the dataset again restarts it, and
skipping ``k`` batches (``dataset.skip(k)``) replays it. Training instead pulls
:meth:`SequenceSampler.next_batch` from a persistent stream whose exact position
(:attr:`SequenceSampler.state`) is saved in every checkpoint.

Sharding (multi-worker training): with ``shard=(i, W)`` every worker advances the same stream (it
draws the random numbers of the whole global batch, which costs microseconds) but reads and returns
only its own B/W sequences, rows i·B/W .. (i+1)·B/W − 1. So no two workers train on the same
sequences, the union over workers is exactly the one-worker batch whatever W is, and every worker's
stream position is the same (one checkpointed state resumes them all).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Optional

import numpy as np
import tensorflow as tf

from bruno.data.table import SliceTable
from bruno.errors import DataFileError

__all__ = ["SequenceSampler"]


class SequenceSampler:
    """Batches of image–pose sequences from one split of a slice table.

    Each batch is a dict:

    * ``images``: float32 [batch_size, seq_len, H, W, 1], the uint8 value plus U[0, 1) noise;
    * ``poses``: float32 [batch_size, seq_len, N], one-hot slice positions;
    * ``volume``: int32 [batch_size], the table row of each sequence's volume.

    Args:
        table: the slice table (or its path).
        split: ``"train"``, ``"val"`` or ``"test"``.
        batch_size: B, sequences per batch.
        seq_len: T, slices per sequence, 1 <= T <= N.
        seed: seed of the sampling and dequantisation stream.
        shard: (index i, count W): :meth:`next_batch` returns only this worker's B/W sequences (module docstring).

    Raises:
        ValueError: an empty split, or ``batch_size``/``seq_len``/``shard`` out of range.
    """

    def __init__(self, table: SliceTable | str, split: str, batch_size: int, seq_len: int, seed: int,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.table = table if isinstance(table, SliceTable) else SliceTable(table)
        self.volumes = self.table.volumes_in(split)
        if len(self.volumes) == 0:
            raise DataFileError(f"{self.table.path}: the {split} split has no volumes (preprocess again with a data.split "
                                f"that gives it some, or more subjects)")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}, expected >= 1")
        if not 1 <= seq_len <= self.table.num_poses:
            raise ValueError(f"seq_len={seq_len}, expected 1..{self.table.num_poses} (the number of poses)")
        index, count = shard
        if count < 1 or not 0 <= index < count or batch_size % count:
            raise ValueError(f"shard={shard}, expected (index, count) with 0 <= index < count and count dividing batch_size={batch_size}")
        self.split, self.batch_size, self.seq_len, self.seed = split, batch_size, seq_len, seed
        size = batch_size // count
        self._shard = slice(index * size, (index + 1) * size)
        self._one_hot = np.eye(self.table.num_poses, dtype=np.float32)
        self._rng = np.random.default_rng(seed)

    def _draw(self, rng: np.random.Generator, read: Callable[[np.ndarray], np.ndarray],
              rows: slice = slice(None)) -> dict[str, np.ndarray]:
        """One batch from ``rng``; only the sequences ``rows`` are read and returned (the stream advances by a whole batch)."""
        poses, size = self.table.num_poses, self.table.image_size
        volumes = rng.choice(self.volumes, size=self.batch_size, replace=True)
        pose = np.stack([rng.permutation(poses)[: self.seq_len] for _ in volumes])
        noise = rng.random((self.batch_size, self.seq_len, size, size), dtype=np.float32)
        volumes, pose, noise = volumes[rows], pose[rows], noise[rows]
        images = read(volumes[:, None] * poses + pose).astype(np.float32) + noise
        return {"images": images[..., None], "poses": self._one_hot[pose], "volume": volumes.astype(np.int32)}

    def batches(self, num_batches: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield numpy batches (endless if ``num_batches`` is None); a new call restarts the stream."""
        rng = np.random.default_rng(self.seed)
        with self.table.reader() as read:
            count = 0
            while num_batches is None or count < num_batches:
                yield self._draw(rng, read)
                count += 1

    def next_batch(self, whole: bool = False) -> dict[str, np.ndarray]:
        """The next batch of this sampler's own stream (see :attr:`state`), for checkpointed training:
        this worker's shard of it, or with ``whole`` every sequence (the data-dependent init, which each
        worker computes alike)."""
        with self.table.reader() as read:
            return self._draw(self._rng, read, slice(None) if whole else self._shard)

    @property
    def state(self) -> str:
        """The position of the :meth:`next_batch` stream as JSON text (store it in a checkpoint)."""
        return json.dumps(self._rng.bit_generator.state)

    @state.setter
    def state(self, text: str) -> None:
        self._rng.bit_generator.state = json.loads(text)

    def dataset(self, num_batches: Optional[int] = None, prefetch: int = 2) -> tf.data.Dataset:
        """The batches as a ``tf.data.Dataset`` (deterministic; prefetched in the background)."""
        size, poses = self.table.image_size, self.table.num_poses
        signature = {
            "images": tf.TensorSpec((self.batch_size, self.seq_len, size, size, 1), tf.float32),
            "poses": tf.TensorSpec((self.batch_size, self.seq_len, poses), tf.float32),
            "volume": tf.TensorSpec((self.batch_size,), tf.int32),
        }
        dataset = tf.data.Dataset.from_generator(lambda: self.batches(num_batches), output_signature=signature)
        return dataset.prefetch(prefetch)
