"""Training sequences from a slice table, as a ``tf.data`` pipeline (SPEC §3, "batch construction").

Each sequence is drawn from one volume of a split: the volume uniformly at random (with
replacement across the batch), then ``seq_len`` distinct slices of it uniformly without
replacement, in random order. The first ``num_context_slices`` of a sequence are the contexts,
so the contexts are a random subset. Images get U[0, 1) dequantisation noise from the same
random stream. Only the slices of the current batch are read from the HDF5 file.

The stream depends only on the table and ``seed``: iterating the dataset again restarts it, and
skipping ``k`` batches (``dataset.skip(k)``) replays exactly what a resumed run would have seen.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import numpy as np
import tensorflow as tf

from bruno.data.table import SliceTable

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

    Raises:
        ValueError: an empty split, or ``batch_size``/``seq_len`` out of range.
    """

    def __init__(self, table: SliceTable | str, split: str, batch_size: int, seq_len: int, seed: int) -> None:
        self.table = table if isinstance(table, SliceTable) else SliceTable(table)
        self.volumes = self.table.volumes_in(split)
        if len(self.volumes) == 0:
            raise ValueError(f"{self.table.path}: split {split!r} has no volumes")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}, expected >= 1")
        if not 1 <= seq_len <= self.table.num_poses:
            raise ValueError(f"seq_len={seq_len}, expected 1..{self.table.num_poses} (the number of poses)")
        self.split, self.batch_size, self.seq_len, self.seed = split, batch_size, seq_len, seed

    def batches(self, num_batches: Optional[int] = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield numpy batches (endless if ``num_batches`` is None); a new call restarts the stream."""
        rng = np.random.default_rng(self.seed)
        poses, size = self.table.num_poses, self.table.image_size
        one_hot = np.eye(poses, dtype=np.float32)
        with self.table.reader() as read:
            count = 0
            while num_batches is None or count < num_batches:
                volumes = rng.choice(self.volumes, size=self.batch_size, replace=True)
                pose = np.stack([rng.permutation(poses)[: self.seq_len] for _ in volumes])
                rows = volumes[:, None] * poses + pose
                noise = rng.random((self.batch_size, self.seq_len, size, size), dtype=np.float32)
                images = read(rows).astype(np.float32) + noise
                yield {
                    "images": images[..., None],
                    "poses": one_hot[pose],
                    "volume": volumes.astype(np.int32),
                }
                count += 1

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
