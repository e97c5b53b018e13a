"""What the two neural baselines share (SPEC §5.5): the GQN tower encoder and sampling by query.

Both baselines map the contexts to a representation r (:meth:`QueryGenerator.represent`) and
generate each query's image from (r, query pose, noise) (``_generate``); sampling a volume is then
the same for both: S draws per query pose, generated in batches, returned like BRUNO's samples on
the [0, 256] intensity scale (the networks work on x = x̃/256 ∈ [0, 1)).
"""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from bruno.config import ModelConfig
from bruno.models.sequence_model import LogProb, Samples, SequenceModel
from bruno.units import bits_per_dim

__all__ = ["SCALE", "QueryGenerator", "TowerEncoder", "broadcast_pose"]

SCALE = 256.0  # dequantised pixels x̃ ∈ [0, 256) ↔ x = x̃/256 ∈ [0, 1)


def broadcast_pose(poses: tf.Tensor, height: int) -> tf.Tensor:
    """One-hot poses [n, N] → [n, height, height, N], the pose at every grid position."""
    return tf.tile(poses[:, None, None, :], [1, height, height, 1])


class TowerEncoder(tf.Module):
    """tf-gqn's tower: (image [n, H, W, 1] in [0, 1], pose [n, N]) → r_i [n, H/4, W/4, C].

    conv 2×2/2 (C, ReLU) → conv 3×3 (C/2, ReLU) + 1×1 skip (C/2) → conv 2×2/2 (C, ReLU) → concat pose
    → conv 3×3 (C/2, ReLU) + 1×1 skip (C/2) → conv 3×3 (C, ReLU) → conv 1×1 (C, ReLU). With ``pool``
    the output is replaced by its spatial mean, broadcast back over the grid.
    """

    def __init__(self, channels: int, pool: bool = False, name: str = "tower") -> None:
        super().__init__(name=name)
        layers, half = keras.layers, channels // 2
        self.channels, self.pool = channels, pool
        self.first = layers.Conv2D(channels, 2, strides=2, activation="relu")
        self.block1, self.skip1 = layers.Conv2D(half, 3, padding="same", activation="relu"), layers.Conv2D(half, 1)
        self.down = layers.Conv2D(channels, 2, strides=2, activation="relu")
        self.block2, self.skip2 = layers.Conv2D(half, 3, padding="same", activation="relu"), layers.Conv2D(half, 1)
        self.widen = layers.Conv2D(channels, 3, padding="same", activation="relu")
        self.last = layers.Conv2D(channels, 1, activation="relu")

    def __call__(self, images: tf.Tensor, poses: tf.Tensor) -> tf.Tensor:
        h = self.first(images)
        h = self.block1(h) + self.skip1(h)
        h = self.down(h)
        h = tf.concat([h, broadcast_pose(poses, h.shape[1])], axis=-1)
        h = self.block2(h) + self.skip2(h)
        h = self.last(self.widen(h))
        if self.pool:
            h = tf.broadcast_to(tf.reduce_mean(h, axis=[1, 2], keepdims=True), tf.shape(h))
        return h

    def encode_contexts(self, images: tf.Tensor, poses: tf.Tensor) -> tf.Tensor:
        """Contexts [B, k, H, W, 1] in [0, 1] with poses [B, k, N] → r_i [B, k, H/4, W/4, C] (k may be 0)."""
        batch, count = tf.shape(images)[0], tf.shape(images)[1]
        size = images.shape[2]
        if images.shape[1] == 0:  # the prior: no conv on an empty batch
            return tf.zeros(tf.stack([batch, 0, size // 4, size // 4, self.channels]))
        flat = self(tf.reshape(images, [-1, size, size, 1]), tf.reshape(poses, [-1, poses.shape[-1]]))
        return tf.reshape(flat, tf.concat([[batch, count], tf.shape(flat)[1:]], axis=0))


class QueryGenerator(SequenceModel):
    """A model that generates each query slice from a representation of the contexts.

    Subclasses define ``represent(context_images, context_poses)`` → r [B, ...] (images in [0, 256))
    and ``_generate(r [n, ...], poses [n, N], seed int64 [2], prior_mean)`` → images [n, H, W, 1] on
    [0, 256]; with ``prior_mean`` every latent sits at its prior mean (one deterministic image).
    The training step lives in ``self.step`` (checkpointed): it seeds the training noise.
    """

    def __init__(self, image_size: int, num_poses: int, config: ModelConfig, name: str) -> None:
        super().__init__(image_size, num_poses, config, name=name)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

    def set_step(self, step: int) -> None:
        self.step.assign(step)

    def _queries(self, images: tf.Tensor, poses: tf.Tensor, num_context: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Check a training batch and split it into one row per target.

        Returns:
            (r of the target's sequence [B·(T − n_c), ...], targets [B·(T − n_c), H, W, 1] on [0, 1),
            their poses [B·(T − n_c), N]).
        """
        shape = self._check_images("images", images)
        self._check_poses("poses", poses, shape[:2])
        self._check_num_context(num_context, shape[1])
        queries = tf.shape(images)[1] - num_context
        representation = tf.repeat(self.represent(images[:, :num_context], poses[:, :num_context]), queries, axis=0)
        size = self.image_size
        targets = tf.reshape(images[:, num_context:], [-1, size, size, 1]) / SCALE
        return representation, targets, tf.reshape(poses[:, num_context:], [-1, self.num_poses])

    def _elbo(self, images: tf.Tensor, log_likelihood: tf.Tensor, kl: tf.Tensor) -> LogProb:
        """Per-target ELBO [B, T − n_c] on the [0, 256) scale (−D·ln 256 for x = x̃/256) and its bits/dim."""
        elbo = tf.reshape(log_likelihood - kl, [tf.shape(images)[0], -1]) - self.num_dims * math.log(SCALE)
        return LogProb(elbo, bits_per_dim(-tf.reduce_mean(elbo), self.num_dims))

    def represent(self, context_images: tf.Tensor, context_poses: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _generate(self, representation: tf.Tensor, poses: tf.Tensor, seed: tf.Tensor, prior_mean: bool) -> tf.Tensor:
        raise NotImplementedError

    def _generate_all(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor, num_samples: int,
                      seed: int, batch_size: int, progress: bool, prior_mean: bool) -> tf.Tensor:
        """Mean images of S draws per query: [S, B, Q, H, W, 1] on [0, 256], generated ``batch_size`` at a time."""
        batch, queries = self._check_query(context_images, context_poses, query_poses)
        representation = self.represent(tf.convert_to_tensor(context_images, tf.float32),
                                         tf.convert_to_tensor(context_poses, tf.float32))
        rows = num_samples * batch * queries  # row (s, b, q) reads subject b's r and query (b, q)'s pose
        subject = tf.range(rows) // queries % batch
        query = tf.range(rows) % (batch * queries)
        flat_poses = tf.reshape(tf.convert_to_tensor(query_poses, tf.float32), [-1, self.num_poses])
        images = []
        for chunk, start in enumerate(tqdm(range(0, rows, batch_size), desc="sampling", unit="batch", disable=not progress)):
            stop = min(start + batch_size, rows)
            images.append(self._generate(tf.gather(representation, subject[start:stop]), tf.gather(flat_poses, query[start:stop]),
                                         tf.constant([seed, chunk], tf.int64), prior_mean))
        size = self.image_size
        return tf.reshape(tf.concat(images, axis=0), [num_samples, batch, queries, size, size, 1])

    def sample(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor, num_samples: int,
               seed: int = 0, decode_batch_size: int = 256, progress: bool = False) -> Samples:
        """S draws of every query's mean image given the contexts (as :meth:`ConditionalBruno.sample`)."""
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples}, expected >= 1")
        images = self._generate_all(context_images, context_poses, query_poses, num_samples, seed, decode_batch_size,
                                    progress, prior_mean=False)
        return Samples(images, tf.reduce_mean(images, axis=0))

    def decode_predictive_mean(self, context_images: tf.Tensor, context_poses: tf.Tensor, query_poses: tf.Tensor,
                               decode_batch_size: int = 256) -> tf.Tensor:
        """Every z_l at its prior mean: one deterministic image per query, [B, Q, H, W, 1] on [0, 256]."""
        return self._generate_all(context_images, context_poses, query_poses, 1, 0, decode_batch_size, False,
                                  prior_mean=True)[0]

