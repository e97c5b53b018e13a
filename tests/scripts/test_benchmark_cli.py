"""scripts/benchmark.py and its FLOP counter. Figures are checked for form and for FLOPs, never for speed."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bruno.experiments.benchmark import graph_flops
from tests.conftest import REPO, assert_one_line_error, run_script


def test_flops_of_products_and_convolutions_and_their_gradients() -> None:
    a, b = tf.ones([3, 4]), tf.ones([5, 4])
    assert graph_flops(tf.function(lambda a, b: tf.matmul(a, b, transpose_b=True)).get_concrete_function(a, b)) == 2 * 3 * 5 * 4
    x, kernel = tf.ones([2, 8, 8, 3]), tf.Variable(tf.ones([3, 3, 3, 4]))
    conv = 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)
    assert graph_flops(tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME")).get_concrete_function(x)) == conv

    @tf.function
    def both_gradients(x: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(tf.square(tf.nn.conv2d(x, kernel, 1, "SAME")))  # its gradient needs the output
        return tape.gradient(y, [x, kernel])

    assert graph_flops(both_gradients.get_concrete_function(x)) == 3 * conv  # forward, input and filter gradients
    unused = tf.function(lambda a, b: (tf.matmul(a, b, transpose_b=True), a + 1.0)[1])  # pruned: not an output
    assert graph_flops(unused.get_concrete_function(a, b)) == 0


@pytest.mark.slow
def test_benchmark_on_tiny_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    args = ("--steps", "2", "--samples", "3", "--contexts", "2", "--decode-batch", "16", "--out", str(out))
    result = run_script("benchmark.py", str(REPO / "config_rnn/tiny.yaml"), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GFLOP/s" in result.stdout and "fused forward+log-det" in result.stdout
    data = json.loads(out.read_text())
    assert data["shapes"] == {"image_size": 16, "num_poses": 8, "batch_size": 4, "seq_len": 4, "num_context": 3}
    training = data["training"]
    assert training["images_per_step"] == 16
    for mode in ("eager", "function", "xla"):
        figures = training[mode]
        assert figures["flop_per_step"] == training["function"]["flop_per_step"] > 0
        assert math.isfinite(figures["loss"]) and figures["images_per_s"] > 0 and figures["first_call_s"] > 0
        np.testing.assert_allclose(figures["gflop_per_s"], figures["flop_per_step"] / figures["seconds"] / 1e9, rtol=1e-9)
    flow = data["flow"]
    assert flow["images"] == 16 and flow["fused"]["flop"] == flow["forward"]["flop"]  # one network call per coupling
    assert 2.5 < flow["bijector_api"]["flop"] / flow["forward"]["flop"] <= 3.0  # TFP's methods: ~3 calls per coupling
    # Training = forward + two gradients of every product ≈ 3× the forward FLOPs (the process adds a little).
    assert 2.9 < training["function"]["flop_per_step"] / flow["forward"]["flop"] < 3.1
    volume = data["sampling"]["volume"]
    assert (volume["poses"], volume["samples"], volume["contexts"]) == (8, 3, 2) and volume["seconds"] > 0
    assert data["sampling"]["inverse"]["batch"] == 16 and data["peak_rss_mb"] > 100
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["tensorflow"] == tf.__version__
    assert data["command"].startswith("python ") and "--out" in data["command"]
    again = run_script("benchmark.py", str(REPO / "config_rnn/tiny.yaml"), *args)
    assert_one_line_error(again, r"tiny.json: output file exists \(pass --overwrite")


def test_benchmark_bad_arguments(tmp_path: Path) -> None:
    config = str(REPO / "config_rnn/tiny.yaml")
    assert_one_line_error(run_script("benchmark.py", config, "--modes", "eager,turbo"), r"--modes 'eager,turbo': expected .*eager,function,xla")
    assert_one_line_error(run_script("benchmark.py", config, "--steps", "0"), r"--steps 0: expected >= 1")
    assert_one_line_error(run_script("benchmark.py", config, "--contexts", "9"), r"--contexts 9: more than the config's 8 poses")
    assert_one_line_error(run_script("benchmark.py", str(REPO / "config_rnn/tiny_gqn.yaml")), r"model.kind='gqn'.*expected 'bruno'")


def test_benchmark_of_a_flow_conditioned_on_the_estimate_feeds_it_everywhere() -> None:
    from bruno.config import load_config, override
    from bruno.experiments.benchmark import benchmark

    config = override(load_config(REPO / "config_rnn/tiny.yaml"), "model.estimate", use=True)
    config = override(config, "model.process", kind="pose_gaussian")
    results = benchmark(config, steps=1, eager_steps=1, modes=("function",), num_samples=2, num_contexts=2, decode_batch=16)
    assert math.isfinite(results["training"]["function"]["loss"]) and results["training"]["function"]["flop_per_step"] > 0
    assert results["sampling"]["volume"]["poses"] == 8 and results["sampling"]["volume"]["seconds"] > 0
