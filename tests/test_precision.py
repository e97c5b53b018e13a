"""Mixed precision (train.mixed_precision): low-precision s/t networks, float32 log-dets, process and loss.

The option is for GPUs; these tests build the mixed model directly (make_model with a precision) to
check the numerics on CPU, and check that training refuses it where no GPU is visible.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bruno.config import Config, load_config, override
from bruno.errors import ConfigError
from bruno.experiments.benchmark import synthetic_batch
from bruno.models import ConditionalBruno
from bruno.precision import DynamicLossScale
from bruno.runs import RunDir, make_deterministic, make_model
from bruno.training import Trainer, UpdateStep
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="checks the CPU refusal and CPU numerics")


@pytest.fixture(scope="module")
def tiny() -> Config:
    return load_config(str(REPO / "config_rnn/tiny.yaml"))


def batch(config: Config) -> tuple[tf.Tensor, tf.Tensor]:
    return synthetic_batch(config, 4, config.train.seq_len, seed=0)


def mixed_copy(config: Config, precision: str, reference: ConditionalBruno) -> ConditionalBruno:
    model = make_model(config, precision)
    assert isinstance(model, ConditionalBruno)
    model.build()
    for target, source in zip(model.variables, reference.variables):
        target.assign(source)
    return model


@pytest.mark.parametrize("precision, compute", [("float16", tf.float16), ("bfloat16", tf.bfloat16)])
def test_networks_compute_low_while_log_det_and_process_stay_float32(tiny: Config, precision: str, compute: tf.DType) -> None:
    make_deterministic(0)
    reference = make_model(tiny)
    assert isinstance(reference, ConditionalBruno)
    images, poses = batch(tiny)
    reference.build()
    reference.initialize(images, poses)
    model = mixed_copy(tiny, precision, reference)
    conv = model.flow.scales[0].checkerboard[0].net.first.conv
    assert conv.compute_dtype == compute.name and conv.v.true_dtype == tf.float32  # float32 weights, low compute
    assert model.embedding(poses[0]).dtype == compute
    z, log_det = model.encode(images, poses)
    assert z.dtype == tf.float32 and log_det.dtype == tf.float32
    low, full = model.log_prob(images, poses, 3), reference.log_prob(images, poses, 3)
    assert low.log_prob.dtype == tf.float32
    # Same weights: the densities agree to the precision's rounding (bits/dim within 1 %, float16 much closer).
    tolerance = 2e-3 if precision == "float16" else 1e-2
    assert float(low.bits_per_dim) == pytest.approx(float(full.bits_per_dim), rel=tolerance)
    assert float(full.bits_per_dim) > 0.5  # not a trivially small number that any error would match


def test_float16_update_scales_the_loss_and_trains(tiny: Config) -> None:
    make_deterministic(0)
    config = override(tiny, "train", mixed_precision="float16")
    model = make_model(config, "float16")
    update = UpdateStep(model, config.train)
    images, poses = batch(config)
    model.initialize(images, poses)
    assert update.loss_scale is not None and float(update.loss_scale.scale) == 2.0 ** 15
    before = [v.numpy().copy() for v in update.variables]
    step = update.compiled(3)
    losses, scales = [], []
    for _ in range(24):
        losses.append(float(step(images, poses, tf.constant(3e-3), tf.constant(1.0))[0]))
        scales.append(float(update.loss_scale.scale))
    # The loss is in nats per image (~1,750 here), so the starting scale 2^15 overflows float16 gradients:
    # that step is skipped (the next loss is the same) and the scale halves until gradients are finite.
    assert losses[1] == losses[0] and scales[0] == 2.0 ** 14 and scales[-1] < 2.0 ** 10
    assert int(update.loss_scale.good_steps) >= 5 and all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0]
    assert sum(not np.array_equal(v.numpy(), b) for v, b in zip(update.variables, before)) > 10


def test_dynamic_loss_scale_halves_skips_and_grows() -> None:
    scale = DynamicLossScale(initial=8.0, growth_interval=2)
    gradients, finite = scale.unscale([tf.constant([8.0, 16.0]), tf.constant([np.inf])])
    np.testing.assert_allclose(gradients[0].numpy(), [1.0, 2.0])
    assert not bool(finite)
    scale.update(finite)
    assert float(scale.scale) == 4.0 and int(scale.good_steps) == 0
    for expected_scale, expected_steps in [(4.0, 1), (8.0, 0), (8.0, 1)]:
        scale.update(tf.constant(True))
        assert (float(scale.scale), int(scale.good_steps)) == (expected_scale, expected_steps)


def test_training_refuses_mixed_precision_without_a_gpu(tiny: Config, tmp_path: Path) -> None:
    config = override(override(tiny, "data", output=str(tmp_path / "tiny.h5")), "train", mixed_precision="bfloat16")
    RunDir(str(tmp_path / "run")).prepare(config, False, False)
    with pytest.raises(ConfigError, match=r"train.mixed_precision='bfloat16' needs a GPU and none is visible"):
        Trainer(config, str(tmp_path / "run"), progress=False)
    with pytest.raises(ConfigError, match=r"only BRUNO models .* not 'gqn'"):
        make_model(override(config, "model", kind="gqn"), "float16")
