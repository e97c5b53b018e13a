"""The paper's naive conditional VAE baseline (SPEC §5.5).

* representation: every context goes through the GQN tower encoder and the r_i are **averaged**
  (order invariant, and the same scale for any number of contexts; zero without contexts);
* generator p(x | z, p, r): a U-Net without skip connections, 4 resolutions (H/8, H/4, H/2, H)
  with 2 convs 3×3 (ReLU) each and ``cvae.filters`` channels from the finest to the coarsest.
  z (N(0, I) prior) enters through a dense layer at H/8; the query pose (one-hot, broadcast)
  enters at every resolution and r (H/4 × W/4) at H/4; nearest-neighbour upsampling; a 1×1 conv
  and a sigmoid give the mean image on [0, 1];
* encoder q(z | x, p, r): the mirror image (max pooling down, r at H/4), then a dense layer to the
  mean and log-scale of z;
* likelihood: Gaussian with one learned pixel σ (``sigma_init`` on [0, 1] intensities); the ELBO
  includes −D·ln 256 so it bounds the density of the dequantised pixels on BRUNO's scale.

At test time z ~ N(0, I) and each draw returns its mean image; the "decoded mean" takes z = 0.
Noise is stateless, seeded by the training step (a resumed run draws the same noise).
"""
from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from bruno.config import ModelConfig
from bruno.models.query_generator import SCALE, QueryGenerator, TowerEncoder, broadcast_pose
from bruno.models.sequence_model import LogProb

__all__ = ["ConditionalVAE"]

tfd = tfp.distributions


def _conv_pair(filters: int, name: str) -> keras.Sequential:
    return keras.Sequential([keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
                             keras.layers.Conv2D(filters, 3, padding="same", activation="relu")], name=name)


class ConditionalVAE(QueryGenerator):
    """The C-VAE baseline; trains and samples through the same interface as :class:`~bruno.models.ConditionalBruno`.

    Args:
        image_size: H = W, a multiple of 8.
        num_poses: N.
        config: the ``model`` section; sizes from ``config.cvae``.
    """

    display_name, deterministic_label = "C-VAE", "latents at the prior mean"

    def __init__(self, image_size: int, num_poses: int, config: ModelConfig = ModelConfig(kind="cvae")) -> None:
        super().__init__(image_size, num_poses, config, name="cvae")
        if image_size % 8:
            raise ValueError(f"image_size={image_size}, expected a multiple of 8")
        cvae = self.cvae = config.cvae
        self.encoder = TowerEncoder(cvae.representation_channels)
        self.down = [_conv_pair(f, f"encoder_{i}") for i, f in enumerate(cvae.filters)]
        self.to_latent = keras.layers.Dense(2 * cvae.latent_size)
        coarse = image_size // 8
        self.from_latent = keras.layers.Dense(coarse * coarse * cvae.filters[-1], activation="relu")
        self.up = [_conv_pair(f, f"generator_{i}") for i, f in enumerate(cvae.filters)]
        self.output_conv = keras.layers.Conv2D(1, 1)
        self.log_sigma = tf.Variable(math.log(cvae.sigma_init), name="log_sigma")

    def summary(self) -> dict[str, float]:
        return {"pixel_sigma": float(tf.exp(self.log_sigma))}

    def represent(self, context_images: tf.Tensor, context_poses: tf.Tensor) -> tf.Tensor:
        """r = mean_i r_i over the contexts: [B, H/4, W/4, C] (zeros without contexts); images in [0, 256)."""
        per_context = self.encoder.encode_contexts(context_images / SCALE, context_poses)
        count = tf.cast(tf.shape(per_context)[1], tf.float32)
        return tf.reduce_sum(per_context, axis=1) / tf.maximum(count, 1.0)

    def posterior(self, targets: tf.Tensor, poses: tf.Tensor, representation: tf.Tensor) -> tfp.distributions.Normal:
        """q(z | x, p, r) for targets [n, H, W, 1] on [0, 1], poses [n, N], r [n, H/4, W/4, C]."""
        h = targets
        for level, block in enumerate(self.down):
            extra = [representation] if level == 2 else []
            h = block(tf.concat([h, broadcast_pose(poses, h.shape[1])] + extra, axis=-1))
            if level < 3:
                h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        loc, raw = tf.split(self.to_latent(tf.reshape(h, [tf.shape(h)[0], -1])), 2, axis=-1)
        return tfd.Normal(loc, tf.nn.softplus(raw) + 1e-5)

    def decode(self, z: tf.Tensor, poses: tf.Tensor, representation: tf.Tensor) -> tf.Tensor:
        """The mean image [n, H, W, 1] on [0, 1] of latents z [n, latent_size]."""
        coarse = self.image_size // 8
        h = tf.reshape(self.from_latent(z), [-1, coarse, coarse, self.cvae.filters[-1]])
        for level in (3, 2, 1, 0):
            extra = [representation] if level == 2 else []
            h = self.up[level](tf.concat([h, broadcast_pose(poses, h.shape[1])] + extra, axis=-1))
            if level > 0:
                h = tf.image.resize(h, [2 * h.shape[1], 2 * h.shape[2]], method="nearest")
        return tf.sigmoid(self.output_conv(h))

    def log_prob(self, images: tf.Tensor, poses: tf.Tensor, num_context: int) -> LogProb:
        """The ELBO of every target given the first ``num_context`` slices (as :meth:`GenerativeQueryNetwork.log_prob`)."""
        representation, targets, query_poses = self._queries(images, poses, num_context)
        posterior = self.posterior(targets, query_poses, representation)
        noise = tf.random.stateless_normal(tf.shape(posterior.loc), seed=tf.stack([self.step, tf.constant(1, tf.int64)]))
        mean = self.decode(posterior.loc + posterior.scale * noise, query_poses, representation)
        log_likelihood = tf.reduce_sum(tfd.Normal(mean, tf.exp(self.log_sigma)).log_prob(targets), axis=[1, 2, 3])
        kl = tf.reduce_sum(tfd.kl_divergence(posterior, tfd.Normal(0.0, 1.0)), axis=-1)
        return self._elbo(images, log_likelihood, kl)

    @tf.function(reduce_retracing=True)
    def _generate(self, representation: tf.Tensor, poses: tf.Tensor, seed: tf.Tensor, prior_mean: bool) -> tf.Tensor:
        shape = tf.stack([tf.shape(poses)[0], self.cvae.latent_size])
        z = tf.zeros(shape) if prior_mean else tf.random.stateless_normal(shape, seed=seed)
        return self.decode(z, poses, representation) * SCALE
