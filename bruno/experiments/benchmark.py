"""Speed and memory of an experiment's model on this machine (``scripts/benchmark.py``, BENCHMARKS.md).

Everything runs on synthetic batches of the config's shapes (uniform pixels, random poses), so no
data is needed and the figures depend only on the architecture, the batch and the machine:

* training: one parameter update (:class:`~bruno.training.UpdateStep`) of B sequences of T slices,
  eager, as a ``tf.function`` and XLA-compiled; the first call (tracing, compiling, one step) and
  the steady rate (in the config's ``train.mixed_precision``, which needs a GPU);
* flow: the forward pass alone, the fused forward-and-log-det that training uses, and the plain
  TFP way of getting both, ``flow.forward(x)`` and ``flow.forward_log_det_jacobian(x)``, which walks
  the couplings through their own bijector methods;
* sampling: the inverse pass in decode batches, and one dense volume (every pose × S samples) with
  :func:`~bruno.reconstruction.reconstruct`.

FLOPs are counted from the traced graphs: 2·M·N·K for every matrix product and 2·(output
size)·k_h·k_w·C_in for every convolution and each of its two gradients, with the static shapes of
the ops that produce the function's outputs (elementwise work is not counted). GFLOP/s = that count
over the measured time (the median of the timed calls).
"""
from __future__ import annotations

import functools
import math
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from bruno.baselines import ClassicalEstimate, GaussianVolumeModel
from bruno.config import Config
from bruno.errors import ConfigError
from bruno.models import ConditionalBruno
from bruno.precision import require_gpu
from bruno.reconstruction import evenly_spread, sample_volume
from bruno.runs import make_model
from bruno.training import UpdateStep, learning_rate_at

__all__ = ["MODES", "benchmark", "graph_flops", "machine", "parse_modes", "peak_rss_mb", "summary", "synthetic_batch"]

MODES = ("eager", "function", "xla")


def parse_modes(text: str) -> tuple[str, ...]:
    """``--modes "eager, xla"`` → ("eager", "xla"): a non-empty subset of :data:`MODES`."""
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes or any(m not in MODES for m in modes):
        raise ConfigError(f"--modes {text!r}: expected a comma-separated subset of {','.join(MODES)}")
    return modes


def _op_flops(op: tf.Operation) -> int:
    """Multiply-add FLOPs of one matrix product or convolution (0 for any other op)."""
    if op.type == "MatMul":
        a, out = op.inputs[0].shape, op.outputs[0].shape
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        return 2 * out[0] * out[1] * inner
    if op.type in ("BatchMatMulV2", "BatchMatMulV3"):
        a, out = op.inputs[0].shape, op.outputs[0].shape
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
        return 2 * math.prod(out) * inner
    if op.type == "Conv2D":
        kh, kw, c_in, _ = op.inputs[1].shape
        return 2 * math.prod(op.outputs[0].shape) * kh * kw * c_in
    if op.type == "Conv2DBackpropInput":  # same work as the forward conv: out_backprop × filter
        kh, kw, c_in, _ = op.inputs[1].shape
        return 2 * math.prod(op.inputs[2].shape) * kh * kw * c_in
    if op.type == "Conv2DBackpropFilter":
        kh, kw, c_in, _ = op.outputs[0].shape
        return 2 * math.prod(op.inputs[2].shape) * kh * kw * c_in
    return 0


def graph_flops(concrete: Any) -> int:
    """FLOPs of the products and convolutions a concrete function runs (those its outputs depend on).

    Raises:
        ValueError: a counted op has a shape that is not fully known (trace with fixed shapes).
    """
    graph = concrete.graph
    pending = [t.op for t in concrete.outputs] + list(graph.control_outputs)
    seen: set[str] = set()
    total = 0
    while pending:
        op = pending.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        try:
            total += _op_flops(op)
        except TypeError:  # an unknown dimension (None) in the product
            raise ValueError(f"{op.type} {op.name}: shapes not fully known, trace with fixed shapes") from None
        pending.extend(t.op for t in op.inputs)
        pending.extend(op.control_inputs)
    return total


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else (platform.processor() or platform.machine())


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
            "gpus": names, "tensorflow": tf.__version__, "python": platform.python_version()}


def _time_interleaved(functions: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, float, Any]]:
    """Per function: (seconds of the first call, median seconds of ``repeats`` timed calls, last output).

    The first calls trace and compile; one untimed warm-up each lets oneDNN and the allocator settle;
    the timed calls then alternate between the functions (so a slow spell of a shared machine hits
    them alike), and the median resists the odd slow call.
    """
    def call(fn: Callable[[], Any]) -> Any:
        return tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn())

    first = {}
    for name, fn in functions.items():
        start = time.perf_counter()
        call(fn)
        first[name] = time.perf_counter() - start
        call(fn)
    seconds: dict[str, list[float]] = {name: [] for name in functions}
    outputs: dict[str, Any] = {}
    for _ in range(max(repeats, 1)):
        for name, fn in functions.items():
            start = time.perf_counter()
            outputs[name] = call(fn)
            seconds[name].append(time.perf_counter() - start)
    return {name: (first[name], float(np.median(seconds[name])), outputs[name]) for name in functions}


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """:func:`_time_interleaved` of one function."""
    return _time_interleaved({"only": fn}, repeats)["only"]


def _rates(seconds: float, images: int, flops: int) -> dict[str, float]:
    return {"seconds": seconds, "images_per_s": images / seconds, "gflop_per_s": flops / seconds / 1e9}


def synthetic_batch(config: Config, batch: int, length: int, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Float32 images [batch, length, H, W, 1] and one-hot poses [batch, length, N] of the config's shapes.

    Smooth random images in [0, 256) (a dequantised 2D random walk per image, so the flow sees image-like
    inputs) and distinct poses within each sequence, as the sequence sampler draws them.
    """
    rng = np.random.default_rng(seed)
    size, poses = config.data.image_size, config.data.num_poses
    walk = np.cumsum(np.cumsum(rng.normal(size=(batch, length, size, size, 1)), axis=2), axis=3)
    low, high = walk.min(axis=(2, 3, 4), keepdims=True), walk.max(axis=(2, 3, 4), keepdims=True)
    images = ((walk - low) / (high - low) * 255.0 + rng.random(walk.shape)).astype(np.float32)
    index = np.stack([rng.permutation(poses)[np.arange(length) % poses] for _ in range(batch)])
    return tf.constant(images), tf.constant(np.eye(poses, dtype=np.float32)[index])


def _initialised_model(config: Config, seed: int) -> ConditionalBruno:
    """A fresh model (weights from ``seed``, the config's precision) after the data-dependent init on a synthetic batch."""
    keras.utils.set_random_seed(seed)
    model = make_model(config, config.train.mixed_precision)
    assert isinstance(model, ConditionalBruno)
    model.build()
    images, poses = synthetic_batch(config, config.train.batch_size, config.train.seq_len, seed)
    model.initialize(images, poses, _estimates(model, images))
    if model.conditioned_on_estimate:  # sampling reads it: one fitted to synthetic volumes (the timing's inputs are random)
        e = config.model.estimate
        volumes = synthetic_batch(config, 8, config.data.num_poses, seed + 1)[0].numpy()[..., 0]
        model.attach_estimator(ClassicalEstimate(GaussianVolumeModel.fit(volumes, e.rank or 4, e.noise_variance or 3000.0),
                                                 e.length or 4.0, e.rho or 0.0))
    return model


def _estimates(model: ConditionalBruno, images: tf.Tensor) -> Optional[tf.Tensor]:
    """The classical estimate a conditioned flow reads beside each image: the images themselves stand in (same shape,
    same cost through the flow); None for a flow without one."""
    return images if model.conditioned_on_estimate else None


def benchmark_training(config: Config, steps: int, eager_steps: int, modes: tuple[str, ...], seed: int,
                       report: Callable[[str], None]) -> dict[str, Any]:
    """Per mode: first-call seconds (trace/compile + one step) and the steady step rate."""
    train = config.train
    images, poses = synthetic_batch(config, train.batch_size, train.seq_len, seed)
    count = train.batch_size * train.seq_len
    arguments = (images, poses, tf.constant(learning_rate_at(1, train.learning_rate, train.learning_rate_decay)),
                 tf.constant(1.0))
    results: dict[str, Any] = {"images_per_step": count}
    for mode in modes:
        report(f"training, {mode}")
        model = _initialised_model(config, seed)
        update = UpdateStep(model, train)
        estimates = _estimates(model, images)
        inputs = {} if estimates is None else {"estimates": estimates}
        compiled = update.compiled(train.num_context, jit_compile=mode == "xla")
        flops = graph_flops(compiled.get_concrete_function(*arguments, inputs=inputs))  # eager runs the same ops, untraced
        step = functools.partial(update, num_context=train.num_context) if mode == "eager" else compiled
        call = functools.partial(step, *arguments, inputs=inputs)
        first, seconds, output = _time(call, eager_steps if mode == "eager" else steps)
        loss = float(output[0])  # finite: the timed steps did real work, not NaN propagation
        results[mode] = {"first_call_s": first, "flop_per_step": flops, "loss": loss, **_rates(seconds, count, flops)}
    results["peak_rss_mb"] = peak_rss_mb()
    return results


def benchmark_flow(config: Config, model: ConditionalBruno, repeats: int, seed: int) -> dict[str, Any]:
    """Forward alone, fused forward-and-log-det, and the per-bijector TFP methods, on one training batch."""
    train = config.train
    images, poses = synthetic_batch(config, train.batch_size * train.seq_len, 1, seed)
    x = images[:, 0]
    e = model.embedding(poses[:, 0])
    flow, estimate = model.flow, _estimates(model, x)

    def forward(x: tf.Tensor, e: tf.Tensor) -> tf.Tensor:
        return flow.forward(x, pose_embedding=e, estimate=estimate)

    def fused(x: tf.Tensor, e: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return flow.forward_and_log_det(x, e, estimate=estimate)

    def bijector_api(x: tf.Tensor, e: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return (flow.forward(x, pose_embedding=e, estimate=estimate),
                flow.forward_log_det_jacobian(x, event_ndims=3, pose_embedding=e, estimate=estimate))

    functions = {f.__name__: tf.function(f, autograph=False) for f in (forward, fused, bijector_api)}
    results: dict[str, Any] = {"images": int(x.shape[0])}
    timings = _time_interleaved({name: functools.partial(function, x, e) for name, function in functions.items()}, repeats)
    for name, function in functions.items():
        flops = graph_flops(function.get_concrete_function(x, e))
        first, seconds, _ = timings[name]
        results[name] = {"first_call_s": first, "flop": flops, **_rates(seconds, int(x.shape[0]), flops)}
    results["fused_over_forward"] = results["fused"]["seconds"] / results["forward"]["seconds"]
    results["bijector_api_over_forward"] = results["bijector_api"]["seconds"] / results["forward"]["seconds"]
    return results


def benchmark_sampling(config: Config, model: ConditionalBruno, repeats: int, decode_batch: int, num_samples: int,
                       num_contexts: int, seed: int) -> dict[str, Any]:
    """The inverse pass in decode batches, and one dense volume (N poses × S samples)."""
    _, poses = synthetic_batch(config, decode_batch, 1, seed)
    latents = tf.random.stateless_normal([decode_batch, model.num_dims], seed=[seed, 1])
    estimates = _estimates(model, tf.fill([decode_batch, model.image_size, model.image_size, 1], 128.0))
    concrete = model._decode.get_concrete_function(latents, poses[:, 0], estimates)
    flops = graph_flops(concrete)
    first, seconds, _ = _time(lambda: model._decode(latents, poses[:, 0], estimates), repeats)
    results: dict[str, Any] = {"inverse": {"batch": decode_batch, "first_call_s": first, "flop": flops,
                                           **_rates(seconds, decode_batch, flops)}}
    num_poses = config.data.num_poses
    volume = np.random.default_rng(seed).integers(0, 256, (num_poses, model.image_size, model.image_size)).astype(np.uint8)
    contexts = evenly_spread(num_contexts, num_poses)

    def dense() -> Any:
        return sample_volume(model, volume, contexts, num_samples, seed=seed, progress=False, decode_batch_size=decode_batch)
    first, seconds, _ = _time(dense, 1)
    decoded = num_poses * (num_samples + 1)  # S samples and the decoded predictive mean per pose
    results["volume"] = {"poses": num_poses, "samples": num_samples, "contexts": len(contexts), "first_call_s": first,
                         "seconds": seconds, "images_per_s": decoded / seconds}
    return results


def benchmark(config: Config, steps: int = 5, eager_steps: int = 1, modes: tuple[str, ...] = MODES, num_samples: int = 100,
              num_contexts: int = 5, decode_batch: int = 512, seed: int = 0,
              report: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """All figures for one config (BRUNO models only), as a JSON-ready dict.

    Raises:
        ConfigError: the config's model is not BRUNO, or asks for mixed precision without a GPU.
    """
    if not config.model.flow_is_used:
        raise ConfigError(f"model.kind={config.model.kind!r}: the benchmark times BRUNO's flow, expected 'bruno'")
    require_gpu(config.train.mixed_precision)
    results: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                               "shapes": {"image_size": config.data.image_size, "num_poses": config.data.num_poses,
                                          "batch_size": config.train.batch_size, "seq_len": config.train.seq_len,
                                          "num_context": config.train.num_context},
                               "training": benchmark_training(config, steps, eager_steps, modes, seed, report)}
    model = _initialised_model(config, seed)
    report("flow: forward, fused, bijector API")
    results["flow"] = benchmark_flow(config, model, steps, seed)
    report("sampling: inverse pass, dense volume")
    results["sampling"] = benchmark_sampling(config, model, steps, decode_batch, num_samples, num_contexts, seed)
    results["peak_rss_mb"] = peak_rss_mb()
    return results


def summary(results: dict[str, Any]) -> str:
    """The headline figures, one per line."""
    train, flow, sampling = results["training"], results["flow"], results["sampling"]
    lines = [f"{mode:>8} training: {train[mode]['images_per_s']:8.1f} images/s, {train[mode]['gflop_per_s']:6.1f} GFLOP/s, "
             f"first call {train[mode]['first_call_s']:.1f} s" for mode in MODES if mode in train]
    lines += [f"    flow: forward {flow['forward']['images_per_s']:.1f} images/s; fused forward+log-det "
              f"{flow['fused_over_forward']:.2f}x the forward time, TFP bijector methods {flow['bijector_api_over_forward']:.2f}x",
              f" inverse: {sampling['inverse']['images_per_s']:.1f} images/s, {sampling['inverse']['gflop_per_s']:.1f} GFLOP/s",
              f"  volume: {sampling['volume']['poses']} poses x {sampling['volume']['samples']} samples in "
              f"{sampling['volume']['seconds']:.1f} s",
              f"  memory: peak RSS {results['peak_rss_mb']:.0f} MiB"]
    return "\n".join(lines)
