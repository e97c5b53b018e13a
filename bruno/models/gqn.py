"""The paper's GQN baseline (SPEC §5.5): a Generative Query Network with a DRAW-style ConvLSTM generator.

Written from the description of ogroth/tf-gqn's "baseline architecture", with the sizes in the
``model.gqn`` config section (its defaults are tf-gqn's) so it also runs at 32×32 on a CPU:

* representation: every context (x_i, p_i) goes through the tower encoder
  (:class:`TowerEncoder`, H/4 × W/4 × C; or its spatial mean, broadcast back: ``pool``), and the
  scene is r = Σ_i r_i (a sum, as in the GQN; zero without contexts);
* generation: L DRAW steps on the H/4 grid. At step l the prior π_l = N(μ, σ) comes from the
  generator state h_g by a k×k conv, with σ = softplus(σ̂ + 0.5) + 1e-8; z_l ~ π_l (training: from
  the posterior q_l, whose inference ConvLSTM reads r, the query pose, h_g and a 4×4/4 conv of
  [target, canvas]); the generator ConvLSTM (k×k gates, forget bias 1) reads [r, pose, z_l]; the
  full-resolution canvas grows by a 4×4 stride-4 transposed conv of h_g; after L steps the mean
  image is a 1×1 conv of the canvas;
* loss: −ELBO = −Σ_pixels log N(x | μ, σ_t) + Σ_l KL(q_l ‖ π_l), with the pixel σ_t falling
  linearly from ``sigma_start`` to ``sigma_end`` over ``sigma_anneal_steps`` training steps.

The pose is the one-hot of length N broadcast over the grid (tf-gqn hard-codes 7 pose channels).

Choices where tf-gqn is loose or inconsistent:

* the prior of step l is read from h_g *before* that step's generator update, in training and in
  generation alike (tf-gqn takes it after the update in training, before it in generation);
* each ConvLSTM computes its gates with one k×k conv over the concatenated inputs and state, which
  is the same function as tf-gqn's one conv per input summed;
* intensities: x = x̃/256 for dequantised pixels x̃ ∈ [0, 256); the reported ELBO is a bound on
  the density of x̃ (it includes −D·ln 256), so its bits/dim sit on BRUNO's scale;
* noise is stateless, seeded by the training step, so a resumed run draws the same noise.

At test time the output of a draw is its mean image μ (clipped to [0, 1]), as in tf-gqn; the
"decoded mean" takes every z_l at its prior mean.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from bruno.config import GQNConfig, ModelConfig
from bruno.models.query_generator import SCALE, QueryGenerator, TowerEncoder, broadcast_pose
from bruno.models.sequence_model import LogProb

__all__ = ["ConvLSTMCell", "GaussianHead", "GenerativeQueryNetwork", "pixel_sigma_at"]

tfd = tfp.distributions


def pixel_sigma_at(step: tf.Tensor | int, config: GQNConfig) -> tf.Tensor:
    """σ_t = σ_end + (σ_start − σ_end)·max(0, 1 − t/anneal_steps): linear, then flat."""
    fraction = tf.minimum(tf.cast(step, tf.float32) / float(config.sigma_anneal_steps), 1.0)
    return config.sigma_start + (config.sigma_end - config.sigma_start) * tf.maximum(fraction, 0.0)


class ConvLSTMCell(tf.Module):
    """A convolutional LSTM: gates = conv_k×k([inputs, h]); forget bias 1."""

    def __init__(self, channels: int, kernel_size: int, name: str = "conv_lstm") -> None:
        super().__init__(name=name)
        self.gates = keras.layers.Conv2D(4 * channels, kernel_size, padding="same")

    def __call__(self, inputs: tf.Tensor, state: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        hidden, cell = state
        i, f, o, g = tf.split(self.gates(tf.concat([inputs, hidden], axis=-1)), 4, axis=-1)
        cell = tf.sigmoid(f + 1.0) * cell + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(cell), cell


class GaussianHead(tf.Module):
    """conv_k×k(h) → (μ, σ = softplus(σ̂ + 0.5) + 1e-8), each with ``channels`` channels."""

    def __init__(self, channels: int, kernel_size: int, name: str = "gaussian_head") -> None:
        super().__init__(name=name)
        self.conv = keras.layers.Conv2D(2 * channels, kernel_size, padding="same")

    def __call__(self, hidden: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        mean, raw = tf.split(self.conv(hidden), 2, axis=-1)
        return mean, tf.nn.softplus(raw + 0.5) + 1e-8


class GenerativeQueryNetwork(QueryGenerator):
    """The GQN baseline; trains and samples through the same interface as :class:`~bruno.models.ConditionalBruno`.

    Args:
        image_size: H = W, a multiple of 4.
        num_poses: N.
        config: the ``model`` section; sizes from ``config.gqn``.
    """

    display_name, deterministic_label = "GQN", "latents at the prior mean"

    def __init__(self, image_size: int, num_poses: int, config: ModelConfig = ModelConfig(kind="gqn")) -> None:
        super().__init__(image_size, num_poses, config, name="gqn")
        if image_size % 4:
            raise ValueError(f"image_size={image_size}, expected a multiple of 4")
        gqn = self.gqn = config.gqn
        self.grid = image_size // 4
        self.encoder = TowerEncoder(gqn.representation_channels, gqn.representation == "pool")
        self.generator_core = ConvLSTMCell(gqn.hidden_channels, gqn.kernel_size, name="generator_core")
        self.inference_core = ConvLSTMCell(gqn.hidden_channels, gqn.kernel_size, name="inference_core")
        self.prior_head = GaussianHead(gqn.latent_channels, gqn.kernel_size, name="prior_head")
        self.posterior_head = GaussianHead(gqn.latent_channels, gqn.kernel_size, name="posterior_head")
        self.read_target = keras.layers.Conv2D(gqn.hidden_channels, 4, strides=4)
        self.write_canvas = keras.layers.Conv2DTranspose(gqn.canvas_channels, 4, strides=4)
        self.output_conv = keras.layers.Conv2D(1, 1)

    @property
    def pixel_sigma(self) -> tf.Tensor:
        """σ_t of the current step."""
        return pixel_sigma_at(self.step, self.gqn)

    def summary(self) -> dict[str, float]:
        return {"pixel_sigma": float(self.pixel_sigma)}

    # ---------------------------------------------------------------------------------- parts
    def represent(self, context_images: tf.Tensor, context_poses: tf.Tensor) -> tf.Tensor:
        """r = Σ_i r_i over the contexts: [B, H/4, W/4, C] (zeros without contexts); images in [0, 256)."""
        per_context = self.encoder.encode_contexts(context_images / SCALE, context_poses)
        return tf.reduce_sum(per_context, axis=1)

    def _zeros(self, count: tf.Tensor, channels: int, size: int) -> tf.Tensor:
        return tf.zeros(tf.stack([count, size, size, channels]))

    def _draw(self, representation: tf.Tensor, poses: tf.Tensor, seed: tf.Tensor, target: Optional[tf.Tensor] = None,
              prior_mean: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """L DRAW steps for n queries → (mean image [n, H, W, 1] on [0, 1] scale, Σ_l KL [n]; 0 without target).

        Args:
            representation: r [n, H/4, W/4, C] per query; poses: [n, N] one-hot.
            seed: int64 [2], the stateless seed of the z draws (step l uses (seed[0], seed[1]·L + l)).
            target: [n, H, W, 1] in [0, 1]: z from the posterior (training); None: from the prior.
            prior_mean: with no target, take every z_l at its prior mean.
        """
        gqn, count = self.gqn, tf.shape(representation)[0]
        pose_map = broadcast_pose(poses, self.grid)
        h_g = c_g = self._zeros(count, gqn.hidden_channels, self.grid)
        h_e = c_e = h_g
        canvas = self._zeros(count, gqn.canvas_channels, self.image_size)
        kl = tf.zeros([count])
        for step in range(gqn.num_steps):
            prior_loc, prior_scale = self.prior_head(h_g)
            noise_seed = tf.stack([seed[0], seed[1] * gqn.num_steps + step])
            if target is None:
                z = prior_loc
                if not prior_mean:
                    z += prior_scale * tf.random.stateless_normal(tf.shape(prior_loc), seed=noise_seed)
            else:
                read = self.read_target(tf.concat([target, canvas], axis=-1))
                h_e, c_e = self.inference_core(tf.concat([representation, pose_map, h_g, read], axis=-1), (h_e, c_e))
                post_loc, post_scale = self.posterior_head(h_e)
                z = post_loc + post_scale * tf.random.stateless_normal(tf.shape(post_loc), seed=noise_seed)
                kl += tf.reduce_sum(tfd.kl_divergence(tfd.Normal(post_loc, post_scale), tfd.Normal(prior_loc, prior_scale)),
                                    axis=[1, 2, 3])
            h_g, c_g = self.generator_core(tf.concat([representation, pose_map, z], axis=-1), (h_g, c_g))
            canvas += self.write_canvas(h_g)
        return self.output_conv(canvas), kl

    # ------------------------------------------------------------------------------- training
    def log_prob(self, images: tf.Tensor, poses: tf.Tensor, num_context: int) -> LogProb:
        """The ELBO of every target given the first ``num_context`` slices of its sequence.

        Args:
            images: float32 [batch, T, H, W, 1], dequantised pixels in [0, 256); poses: [batch, T, N] one-hot.
            num_context: n_c in [0, T).

        Returns:
            :class:`~bruno.model.LogProb`: ``log_prob`` [batch, T − n_c] is the ELBO in nats on the
            [0, 256) scale (a lower bound of log p(x̃)), ``bits_per_dim`` its negative mean per pixel in bits.
        """
        representation, targets, query_poses = self._queries(images, poses, num_context)
        mean, kl = self._draw(representation, query_poses, tf.stack([self.step, tf.constant(0, tf.int64)]), target=targets)
        log_likelihood = tf.reduce_sum(tfd.Normal(mean, self.pixel_sigma).log_prob(targets), axis=[1, 2, 3])
        return self._elbo(images, log_likelihood, kl)

    @tf.function(reduce_retracing=True)
    def _generate(self, representation: tf.Tensor, poses: tf.Tensor, seed: tf.Tensor, prior_mean: bool) -> tf.Tensor:
        mean, _ = self._draw(representation, poses, seed, prior_mean=prior_mean)
        return tf.clip_by_value(mean, 0.0, 1.0) * SCALE
