"""The paper's neural baselines (issue 7): GQN and C-VAE shapes, ELBO terms, invariances, training, scoring."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bruno.config import CVAEConfig, GQNConfig, ModelConfig, load_config, override, parse_config
from bruno.errors import ConfigError
from bruno.models import ConditionalVAE, GenerativeQueryNetwork
from bruno.models.gqn import pixel_sigma_at
from bruno.reconstruction import ModelSampling
from bruno.runs import RunDir, make_deterministic, restore_model
from bruno.training import Trainer
from bruno.training.optimizers import make_optimizer
from tests.conftest import REPO, assert_one_line_error, losses, run_script, tiny_config, trainer

SIZE, POSES = 16, 8
GQN_SMALL = ModelConfig(kind="gqn", gqn=GQNConfig(representation_channels=8, hidden_channels=8, latent_channels=4,
                                                  canvas_channels=8, num_steps=3, kernel_size=3, sigma_anneal_steps=10))
CVAE_SMALL = ModelConfig(kind="cvae", cvae=CVAEConfig(representation_channels=8, filters=(4, 8, 8, 16), latent_size=6))


def _batch(batch: int = 2, length: int = 5, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 256, (batch, length, SIZE, SIZE, 1)).astype(np.float32)
    poses = np.stack([np.eye(POSES, dtype=np.float32)[rng.permutation(POSES)[:length]] for _ in range(batch)])
    return tf.constant(images), tf.constant(poses)


@pytest.fixture(scope="module", params=["gqn", "cvae"])
def model(request: pytest.FixtureRequest) -> GenerativeQueryNetwork | ConditionalVAE:
    tf.keras.utils.set_random_seed(0)
    built = (GenerativeQueryNetwork(SIZE, POSES, GQN_SMALL) if request.param == "gqn" else
             ConditionalVAE(SIZE, POSES, CVAE_SMALL))
    built.build()
    return built


def test_shapes_ranges_and_seeds(model: GenerativeQueryNetwork | ConditionalVAE) -> None:
    images, poses = _batch()
    result = model.log_prob(images, poses, 3)
    assert result.log_prob.shape == (2, 2) and np.all(np.isfinite(result.log_prob.numpy()))
    np.testing.assert_allclose(result.bits_per_dim.numpy(), -result.log_prob.numpy().mean() / (SIZE * SIZE * math.log(2)), rtol=1e-5)
    queries = tf.constant(np.eye(POSES, dtype=np.float32)[None].repeat(2, 0))
    samples = model.sample(images[:, :3], poses[:, :3], queries, 4, seed=1, decode_batch_size=5)
    assert samples.images.shape == (4, 2, POSES, SIZE, SIZE, 1) and samples.mean.shape == (2, POSES, SIZE, SIZE, 1)
    values = samples.images.numpy()
    assert values.min() >= 0.0 and values.max() <= 256.0 and values.std() > 0
    np.testing.assert_allclose(model.sample(images[:, :3], poses[:, :3], queries, 4, seed=1, decode_batch_size=5).images, values)
    assert not np.allclose(model.sample(images[:, :3], poses[:, :3], queries, 4, seed=2, decode_batch_size=5).images, values)
    deterministic = model.decode_predictive_mean(images[:, :3], poses[:, :3], queries)
    assert deterministic.shape == (2, POSES, SIZE, SIZE, 1)
    prior = model.sample(images[:, :0], poses[:, :0], queries, 2)  # no contexts: r = 0
    assert prior.images.shape == (2, 2, POSES, SIZE, SIZE, 1)
    with pytest.raises(ValueError, match=r"num_context=5, expected an integer in \[0, T\) with T=5"):
        model.log_prob(images, poses, 5)
    # its log_prob is a bound, not a density: no conditional NLL in the forecast tables
    assert ModelSampling(model).conditional_nll(np.full((POSES, SIZE, SIZE), 100.0), [1, 3]) is None
    with pytest.raises(ValueError, match=r"poses: shape \(2, 5, 7\), expected \[2, 5, 8\]"):
        model.log_prob(images, poses[..., :7], 3)


def test_representation_is_order_invariant_gqn_sums_cvae_averages(model: GenerativeQueryNetwork | ConditionalVAE) -> None:
    images, poses = _batch(length=4, seed=3)
    r = model.represent(images, poses).numpy()
    order = [2, 0, 3, 1]
    np.testing.assert_allclose(model.represent(tf.gather(images, order, axis=1), tf.gather(poses, order, axis=1)), r,
                               rtol=1e-5, atol=1e-6)
    doubled = model.represent(tf.concat([images, images], 1), tf.concat([poses, poses], 1)).numpy()
    np.testing.assert_allclose(doubled, 2 * r if isinstance(model, GenerativeQueryNetwork) else r, rtol=1e-5, atol=1e-6)
    one = [model.represent(images[:, i:i + 1], poses[:, i:i + 1]).numpy() for i in range(4)]
    expected = np.sum(one, 0) if isinstance(model, GenerativeQueryNetwork) else np.mean(one, 0)
    np.testing.assert_allclose(r, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.represent(images[:, :0], poses[:, :0]), np.zeros_like(r))
    assert np.abs(r).max() > 0


def _set_conv(layer: tf.keras.layers.Layer, bias: np.ndarray) -> None:
    kernel, _ = layer.weights
    kernel.assign(tf.zeros_like(kernel))
    layer.weights[1].assign(bias)


def _normal_kl(q_loc: float, q_scale: float, p_loc: float, p_scale: float) -> float:
    """KL(N(q_loc, q_scale²) ‖ N(p_loc, p_scale²)), written out."""
    return math.log(p_scale / q_scale) + (q_scale ** 2 + (q_loc - p_loc) ** 2) / (2 * p_scale ** 2) - 0.5


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_gqn_kl_term_matches_the_closed_form() -> None:
    """Heads with zero kernels: every q_l = N(a, σ_q), π_l = N(c, σ_p), so Σ_l KL = L·(H/4)²·C_z·KL(q ‖ π)."""
    tf.keras.utils.set_random_seed(1)
    model = GenerativeQueryNetwork(SIZE, POSES, GQN_SMALL)
    model.build()
    channels = GQN_SMALL.gqn.latent_channels
    _set_conv(model.posterior_head.conv, np.r_[np.full(channels, 0.3), np.full(channels, -0.2)].astype(np.float32))
    _set_conv(model.prior_head.conv, np.r_[np.full(channels, -0.1), np.full(channels, 0.4)].astype(np.float32))
    images, poses = _batch()
    targets = tf.reshape(images[:, 3:], [-1, SIZE, SIZE, 1]) / 256.0
    representation = tf.repeat(model.represent(images[:, :3], poses[:, :3]), 2, axis=0)
    _, kl = model._draw(representation, tf.reshape(poses[:, 3:], [-1, POSES]), tf.constant([0, 0], tf.int64), target=targets)
    per_element = _normal_kl(0.3, _softplus(0.3) + 1e-8, -0.1, _softplus(0.9) + 1e-8)
    np.testing.assert_allclose(kl.numpy(), GQN_SMALL.gqn.num_steps * (SIZE // 4) ** 2 * channels * per_element, rtol=1e-5)


def test_cvae_elbo_matches_the_closed_form() -> None:
    """q(z | ·) = N(a, σ) for every input (zero kernel): ELBO = Σ log N(x | μ(z), σ_x) − KL(q ‖ N(0, I)) − D·ln 256."""
    tf.keras.utils.set_random_seed(2)
    model = ConditionalVAE(SIZE, POSES, CVAE_SMALL)
    model.build()
    latent = CVAE_SMALL.cvae.latent_size
    _set_conv(model.to_latent, np.r_[np.full(latent, 0.5), np.full(latent, -1.0)].astype(np.float32))
    model.set_step(7)
    images, poses = _batch(batch=1, length=4)
    elbo = model.log_prob(images, poses, 3).log_prob.numpy()[0, 0]
    scale = _softplus(-1.0) + 1e-5
    z = 0.5 + scale * tf.random.stateless_normal([1, latent], seed=tf.constant([7, 1], tf.int64))
    mean = model.decode(z, poses[:, 3], model.represent(images[:, :3], poses[:, :3])).numpy()
    x, sigma = images.numpy()[0, 3] / 256.0, float(tf.exp(model.log_sigma))
    log_likelihood = np.sum(-0.5 * ((x - mean[0]) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi))
    kl = latent * _normal_kl(0.5, scale, 0.0, 1.0)
    np.testing.assert_allclose(elbo, log_likelihood - kl - SIZE * SIZE * math.log(256.0), rtol=1e-5)


def test_pixel_sigma_anneals_linearly_then_stays() -> None:
    config = GQNConfig(sigma_start=2.0, sigma_end=0.7, sigma_anneal_steps=100)
    values = [float(pixel_sigma_at(step, config)) for step in (0, 25, 50, 100, 1000)]
    np.testing.assert_allclose(values, [2.0, 1.675, 1.35, 0.7, 0.7], rtol=1e-6)
    model = GenerativeQueryNetwork(SIZE, POSES, GQN_SMALL)
    model.set_step(5)
    assert float(model.pixel_sigma) == pytest.approx(1.35) and model.summary() == {"pixel_sigma": pytest.approx(1.35)}


@pytest.mark.parametrize("kind", ["gqn", "cvae"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(kind: str) -> None:
    tf.keras.utils.set_random_seed(0)
    model = GenerativeQueryNetwork(SIZE, POSES, GQN_SMALL) if kind == "gqn" else ConditionalVAE(SIZE, POSES, CVAE_SMALL)
    model.build()
    model.set_step(100)  # the GQN's σ at its end value
    optimizer = make_optimizer("adam")
    optimizer.build(model.trainable_variables)
    images, poses = _batch(batch=4, seed=5)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(images, poses, 3).log_prob)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables, tf.constant(3e-3))
        return loss

    losses = [float(step()) for _ in range(40)]
    assert np.mean(losses[-5:]) < losses[0] - 0.02 * abs(losses[0]), losses


def test_configs_load_and_check_sizes() -> None:
    for name, kind in (("ixi_gqn", "gqn"), ("ixi_cvae", "cvae"), ("fetal_gqn", "gqn"), ("fetal_cvae", "cvae"),
                       ("tiny_gqn", "gqn"), ("tiny_cvae", "cvae")):
        config = load_config(REPO / f"config_rnn/{name}.yaml")
        assert config.model.kind == kind and config.train.num_context == 4
    assert load_config(REPO / "config_rnn/fetal_gqn.yaml").model.gqn.hidden_channels == 256  # tf-gqn's sizes
    assert load_config(REPO / "config_rnn/adni.yaml").model.kind == "bruno"
    with pytest.raises(ConfigError, match=r"model.kind='flow', expected one of 'bruno', 'gqn', 'cvae'"):
        parse_config({"model": {"kind": "flow"}})
    assert parse_config({"data": {"image_size": 8}, "model": {"kind": "cvae"}}).data.image_size == 8  # the flow's 2^3 need not apply
    with pytest.raises(ConfigError, match=r"model.gqn.kernel_size=4, expected an odd integer >= 1"):
        parse_config({"model": {"kind": "gqn", "gqn": {"kernel_size": 4}}})
    with pytest.raises(ConfigError, match=r"model.gqn.sigma_end=3.0, expected a number in \(0, sigma_start = 2.0\]"):
        parse_config({"model": {"gqn": {"sigma_end": 3.0}}})
    with pytest.raises(ConfigError, match=r"model.cvae.filters=\[8, 8\], expected a list of 4 integers"):
        parse_config({"model": {"cvae": {"filters": [8, 8]}}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny.yaml, tiny_gqn.yaml and tiny_cvae.yaml trained for 3 steps on one phantom table."""
    folder = tmp_path_factory.mktemp("baselines")
    made = {}
    for name in ("tiny", "tiny_gqn", "tiny_cvae"):
        config = tiny_config(folder, name)
        made[name] = folder / name
        RunDir(str(made[name])).prepare(config, False, False)
        make_deterministic(0)
        Trainer(config, str(made[name]), progress=False).train(max_steps=3)
    return made


def test_trained_baselines_restore_with_their_kind(runs: dict[str, Path]) -> None:
    images, poses = _batch(length=5)
    for name, cls in (("tiny_gqn", GenerativeQueryNetwork), ("tiny_cvae", ConditionalVAE)):
        model, config, step = restore_model(str(runs[name]))
        assert isinstance(model, cls) and step == 3 and config.model.kind == name[5:]
        again, _, _ = restore_model(str(runs[name]))
        model.set_step(3)
        again.set_step(3)
        np.testing.assert_allclose(model.log_prob(images, poses, 4).log_prob, again.log_prob(images, poses, 4).log_prob, rtol=1e-6)


def test_evaluate_scores_bruno_and_baselines_in_one_table(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run_script("evaluate.py", "--run", str(runs["tiny"]), str(runs["tiny_gqn"]), str(runs["tiny_cvae"]),
                        "--samples", "2", "--contexts-list", "1,3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    table = (out / "results.md").read_text()
    for label in ("BRUNO, mean image", "GQN, mean image", "GQN, latents at the prior mean", "C-VAE, mean image",
                  "C-VAE, single sample", "linear interpolation", "population mean (atlas)"):
        assert f"| {label} |" in table
    assert (out / "montage.png").stat().st_size > 1000
    config = override(load_config(REPO / "config_rnn/tiny_cvae.yaml"), "data", num_poses=6)
    run = tmp_path / "other"
    RunDir(str(run)).prepare(override(config, "data", output=str(tmp_path / "six.h5")), False, False)
    Trainer(override(config, "data", output=str(tmp_path / "six.h5")), str(run), progress=False).train(max_steps=1)
    assert_one_line_error(run_script("evaluate.py", "--run", str(runs["tiny"]), str(run), "--out", str(tmp_path / "e2")),
                          r"other: trained on .*six\.h5 \(6 poses of 16x16\), but .*tiny on .*tiny\.h5 \(8 of 16x16\)")


def test_gqn_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    """The step-seeded noise and the σ schedule live in the checkpoint: a resumed run repeats the losses."""

    config = tiny_config(tmp_path, "tiny_gqn")
    trainer(config, tmp_path / "full", checkpoint_every=3, log_every=1).train(max_steps=6)
    trainer(config, tmp_path / "split", checkpoint_every=3, log_every=1).train(max_steps=4)
    trainer(config, tmp_path / "split", resume=True, checkpoint_every=3, log_every=1).train(max_steps=6)
    full = losses(tmp_path / "full")
    assert [s for s, _ in full] == list(range(1, 7)) and full == losses(tmp_path / "split")
    assert len({loss for _, loss in full}) == 6
