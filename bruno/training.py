"""Training Conditional BRUNO (SPEC §3): init pass, NLL steps, validation, checkpoints, resume.

The same loop trains the paper's GQN and C-VAE baselines (``model.kind``, :func:`make_model`): their
"log-prob" is the ELBO, so the loss is −ELBO and validation compares bounds; the model is told the
step before each update (:meth:`~bruno.model.SequenceModel.set_step`, the GQN's σ annealing).

Semantics (upstream ``config_conditional/train.py``):

* step 0 runs the data-dependent initialisation on the first batch (or, with ``train.init_from``,
  copies a trained run's flow: fine-tuning) and takes no gradient step; a latent factor process is
  then initialised by a PCA of the train split's latents;
  steps 1..max_steps each draw a fresh batch of B sequences of T slices;
* loss = −mean over the B·(T − n_c) targets of [log p(z_t | contexts) + J_t] (nats per image),
  reported as bits/dim = loss/(D·ln 2);
* the learning rate at step t is lr·decay^(t+1); the gradients of the process parameters
  (``prior_var``, ``prior_corr``, ``prior_nu``, and ``prior_length``/``prior_atlas`` of the pose
  process) are scaled by ``process_grad_schedule``, and their rate by ``process_learning_rate_scale``;
* with ``num_context_min`` set, step t uses n_c drawn from a generator seeded by (seed, t), so a
  resumed run draws the same n_c (one traced step per distinct n_c);
* a NaN/Inf loss stops training with :class:`~bruno.errors.TrainingDiverged`, keeping the last good
  checkpoint; Ctrl-C writes a checkpoint first.

Beyond the upstream: a validation NLL on a fixed set of ``val`` sequences every
``validate_every`` steps, with the best checkpoint kept in ``<run>/best``; checkpoints hold the
model, the optimiser slots, the step and the exact position of the data stream, so a resumed run on
CPU reproduces the losses of an uninterrupted one. The run directory holds ``config.yaml`` (the
resolved config), ``versions.json``, ``metrics.jsonl``, ``checkpoints/``, ``best/`` and
``tensorboard/``.

Several GPUs: pass a ``tf.distribute.MirroredStrategy``; each step splits the batch across the
replicas, averages the gradients across them and applies one update (the default strategy on a
single device runs the same code). ``train.mixed_precision`` (GPUs only) runs BRUNO's s/t networks
in float16 or bfloat16 (:mod:`bruno.precision`).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple, Optional

import h5py
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras
import yaml
from tqdm import tqdm

from bruno.config import Config, TrainConfig, config_to_yaml, parse_config
from bruno.data.preprocess import build_slice_table
from bruno.data.sampler import SequenceSampler
from bruno.data.table import SliceTable
from bruno.errors import ConfigError, DataFileError, OutputPathError, RunDirError, TrainingDiverged
from bruno.files import atomic_output, check_writable_folder
from bruno.baselines import ConditionalVAE, GenerativeQueryNetwork
from bruno.latent_volume import initialize_latent_factors
from bruno.model import ConditionalBruno, SequenceModel
from bruno.optimizers import make_optimizer
from bruno.processes import LatentFactorProcess
from bruno.precision import DynamicLossScale, compute_policy, require_gpu

__all__ = [
    "PROCESS_VARIABLES",
    "Trainer",
    "TrainResult",
    "TrainingInterrupted",
    "UpdateStep",
    "learning_rate_at",
    "load_slice_table",
    "make_model",
    "make_deterministic",
    "check_init_source",
    "copy_trained_flow",
    "num_context_at",
    "prepare_run_dir",
    "process_grad_scale",
    "iterate_metrics",
    "latest_step",
    "load_run_config",
    "restore_checkpoint",
    "restore_model",
    "check_run_dir",
]

logger = logging.getLogger(__name__)

PROCESS_VARIABLES = ("prior_var", "prior_corr", "prior_nu", "prior_length", "prior_atlas", "prior_loadings")
_SHARED_PROCESS_VARIABLES = ("prior_var", "prior_corr", "prior_length", "prior_atlas")  # §8 and §9.3 alike
_RUN_FILES = ("config.yaml", "versions.json", "metrics.jsonl", "checkpoints", "best", "tensorboard")


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF kernels deterministic (same seed → same numbers on CPU).

    The Python seed matters: unseeded ``tf_keras`` initializers draw their seeds from ``random``.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def learning_rate_at(step: int, learning_rate: float, decay: float) -> float:
    """lr·decay^(step+1): the upstream decays once per iteration, iteration 0 included."""
    return learning_rate * decay ** (step + 1)


def process_grad_scale(step: int, schedule: dict[int, float]) -> float:
    """The schedule value of the largest step key <= ``step``."""
    return schedule[max(k for k in schedule if k <= step)]


def num_context_at(step: int, train: TrainConfig) -> int:
    """n_c of training step ``step``: ``num_context``, or uniform in [num_context_min, num_context] seeded by (seed, step)."""
    if train.num_context_min is None:
        return train.num_context
    return int(np.random.default_rng([train.seed, step]).integers(train.num_context_min, train.num_context + 1))


def load_slice_table(config: Config, progress: bool = True) -> SliceTable:
    """Open the experiment's HDF5 table; build it first if it is the (missing) phantom table.

    Raises:
        DataFileError: the file is missing (for user data) or does not match the config.
    """
    data = config.data
    if not os.path.exists(data.output):
        if data.source != "phantom":
            raise DataFileError(f"{data.output}: no such file; preprocess the data first "
                                f"(python scripts/preprocess.py <config> --input <your NIfTI folder>)")
        logger.info("%s is missing: generating the phantom population", data.output)
        return build_slice_table(config, progress=progress)
    table = SliceTable(data.output)
    if (table.image_size, table.num_poses) != (data.image_size, data.num_poses):
        raise DataFileError(
            f"{data.output}: holds {table.num_poses} poses of {table.image_size}x{table.image_size}, but the config asks "
            f"for {data.num_poses} of {data.image_size}x{data.image_size} (preprocess again with --overwrite)")
    return table


def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix.rstrip('.')} ({a!r} there, {b!r} here)"


def _checkpoint_step(path: str) -> int:
    """The step a checkpoint was saved at (its number: ``.../ckpt-<step>``)."""
    return int(path.rsplit("-", 1)[1])


def latest_step(run_dir: str) -> Optional[int]:
    """The step of a run directory's latest checkpoint; None before the first one."""
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return None if latest is None else _checkpoint_step(latest)


def check_run_dir(run_dir: str, config: Config, resume: bool, overwrite: bool) -> None:
    """Everything :func:`prepare_run_dir` checks, writing nothing.

    A folder holds a run once it has a checkpoint; run files without one are what a start that
    failed before its first checkpoint left, and a new start replaces them.

    Raises:
        RunDirError: not writable; holds a run and neither ``resume`` nor ``overwrite``; ``resume``
            without a checkpoint, of a different experiment, or to a step the run has already reached.
    """
    reached = latest_step(run_dir)
    if resume:
        if reached is None:
            raise RunDirError(f"{run_dir}: --resume, but there is no checkpoint to resume from")
        previous = yaml.safe_load(config_to_yaml(load_run_config(run_dir)))
        here = yaml.safe_load(config_to_yaml(config))
        previous.get("train", {}).pop("max_steps", None)
        here["train"].pop("max_steps")
        difference = _first_difference(previous, here)
        if difference:
            raise RunDirError(f"{run_dir}: holds a different experiment, {difference}; use another --run-dir")
        if config.train.max_steps <= reached:
            raise RunDirError(f"{run_dir}: --resume to max_steps={config.train.max_steps}, but the run is already at step "
                              f"{reached}; pass a larger --max-steps")
        return
    if reached is not None and not overwrite:
        raise RunDirError(f"{run_dir}: already holds a run (pass --resume to continue it or --overwrite to start again)")
    existing = run_dir
    while not os.path.isdir(existing):  # the nearest folder that exists must let us create the rest
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == os.path.abspath(existing):
            break
        existing = parent
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: is a file, expected a run directory")
    if not os.access(existing, os.W_OK):
        raise RunDirError(f"{run_dir}: run directory is not writable" if existing == run_dir else
                          f"{run_dir}: cannot create the run directory ({existing} is not writable)")
    try:
        check_writable_folder(run_dir, existing)
    except OutputPathError as err:
        raise RunDirError(str(err)) from None


def prepare_run_dir(run_dir: str, config: Config, resume: bool, overwrite: bool) -> None:
    """Check the run directory (:func:`check_run_dir`); for a new run, replace what an earlier run
    wrote there (only its files: anything else stays) and write ``config.yaml`` and ``versions.json``.

    ``scripts/train.py`` calls it once the table, the model and the optimiser have been built, so
    a start that fails leaves no run directory behind.

    Raises:
        RunDirError: as :func:`check_run_dir`.
    """
    check_run_dir(run_dir, config, resume, overwrite)
    if resume:
        return
    for name in _RUN_FILES:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{run_dir}: cannot create the run directory ({err.strerror})") from None
    with atomic_output(os.path.join(run_dir, "config.yaml")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(config_to_yaml(config))
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__,
                "tf_keras": keras.__version__, "numpy": np.__version__, "h5py": h5py.__version__}
    with atomic_output(os.path.join(run_dir, "versions.json")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(versions, f, indent=1)


def load_run_config(run_dir: str) -> Config:
    """The resolved config saved in a run directory."""
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise RunDirError(f"{run_dir}: no config.yaml, not a run directory of scripts/train.py")
    with open(path, encoding="utf-8") as f:
        return parse_config(yaml.safe_load(f), path)


def make_model(config: Config, precision: Optional[str] = None) -> SequenceModel:
    """The model ``config.model.kind`` names (BRUNO or one of the paper's baselines), variables not yet built.

    Args:
        config: the experiment.
        precision: None (float32), or ``float16``/``bfloat16`` for BRUNO's s/t networks (:mod:`bruno.precision`).

    Raises:
        ConfigError: mixed precision asked for a baseline model.
    """
    kinds: dict[str, type[SequenceModel]] = {"bruno": ConditionalBruno, "gqn": GenerativeQueryNetwork,
                                             "cvae": ConditionalVAE}
    if precision is not None and config.model.kind != "bruno":
        raise ConfigError(f"train.mixed_precision={precision!r}: only BRUNO models (model.kind: bruno) support it, "
                          f"not {config.model.kind!r}")
    with compute_policy(precision):
        return kinds[config.model.kind].from_config(config)


def restore_model(run_dir: str, which: str = "best") -> tuple[SequenceModel, Config, int]:
    """The model of a run from its ``best`` or ``latest`` checkpoint, every variable restored.

    A run without a best checkpoint (no validation yet) gives its latest, with a warning.

    Returns:
        (model, config, step of the checkpoint).

    Raises:
        RunDirError: no such run or checkpoint; a checkpoint that is unreadable or does not match
            the run's ``config.yaml`` (a variable missing, left over or of another shape).
    """
    config = load_run_config(run_dir)
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    path = tf.train.latest_checkpoint(os.path.join(run_dir, "best")) if which == "best" else latest
    if path is None and which == "best" and latest is not None:
        logger.warning("%s: no best checkpoint (not validated yet); using the latest, step %d", run_dir, _checkpoint_step(latest))
        path = latest
    if path is None:
        raise RunDirError(f"{run_dir}: no checkpoint found")
    gpu = bool(tf.config.list_physical_devices("GPU"))
    model = make_model(config, config.train.mixed_precision if gpu else None)  # float32 on CPUs
    model.build()
    step = tf.Variable(-1, dtype=tf.int64)
    restore_checkpoint(tf.train.Checkpoint(model=model, step=step), path, model)
    return model, config, int(step)


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str, model: SequenceModel) -> None:
    """Restore ``path`` into every object of ``checkpoint``; the checkpoint's model values must be
    exactly ``model``'s variables (none missing, none left over, same shapes).

    Raises:
        RunDirError: the files are unreadable or truncated, or do not match (names the first culprit).
    """
    what = f"{path}: checkpoint"
    try:
        saved = [name for name, _ in tf.train.list_variables(path)
                 if name.startswith("model/") and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE") and ".OPTIMIZER_SLOT" not in name]
        checkpoint.restore(path).expect_partial().assert_existing_objects_matched()
    except AssertionError as err:
        names = re.findall(r"<tf.Variable '([^']+)'", str(err))
        culprit = f"variable {names[0]}" if names else "an object"
        raise RunDirError(f"{what} has no value for {culprit} of the model that config.yaml builds "
                          f"(was config.yaml edited after training?)") from None
    except ValueError as err:  # a shape that differs
        raise RunDirError(f"{what} does not match the model that config.yaml builds: {err}") from None
    except (tf.errors.OpError, IndexError, OSError) as err:
        message = getattr(err, "message", None) or str(err) or type(err).__name__
        raise RunDirError(f"{what} is unreadable or truncated ({message.splitlines()[0]})") from None
    expected = len({id(v) for v in model.variables})
    if len(saved) != expected:  # values the model has no place for: name the first (this costs one write of the model)
        with tempfile.TemporaryDirectory() as folder:
            written = tf.train.Checkpoint(model=model).write(os.path.join(folder, "model"))
            ours = {name for name, _ in tf.train.list_variables(written)}
        extra = sorted(set(saved) - ours)
        left_over = f": {extra[0].removesuffix('/.ATTRIBUTES/VARIABLE_VALUE')} is left over" if extra else ""
        raise RunDirError(f"{what} holds {len(saved)} model variables, but config.yaml builds {expected}{left_over} "
                          f"(was config.yaml edited after training?)")


def check_init_source(config: Config, run_dir: str) -> None:
    """Check that ``train.init_from``'s run can seed this config: a BRUNO run on the same data section
    with the same flow architecture (and, with both pose kernels, the same kernel and length floor).

    Raises:
        ConfigError: not a BRUNO run on the same data, or another flow architecture.
        RunDirError: no such run.
    """
    if not os.path.isdir(run_dir):
        raise RunDirError(f"train.init_from={run_dir!r}: no such run directory (train that run first)")
    source_config = load_run_config(run_dir)
    if source_config.model.kind != "bruno" or config.model.kind != "bruno":
        raise ConfigError(f"train.init_from={run_dir!r}: expected a BRUNO run (model.kind: bruno)")
    if source_config.data != config.data:
        raise ConfigError(f"train.init_from={run_dir!r}: its data section differs from this config's (expected the "
                          f"same table and split, so no val or test volume was trained on)")
    flow_keys: tuple[str, ...] = ("num_scales", "num_filters", "num_residual_blocks", "num_dense_couplings", "dense_units", "embedding_size",
                 "upstream_first_conv_3x3", "upstream_label_heads", "upstream_init_passes_raw", "upstream_logit_log_det")
    if source_config.model.pose_kernel is not None and config.model.pose_kernel is not None:
        flow_keys += ("pose_kernel", "length_min")  # ℓ = softplus(l) + ℓ_min: the raw variable means ℓ only with the same floor
    for key in flow_keys:
        if getattr(source_config.model, key) != getattr(config.model, key):
            raise ConfigError(f"train.init_from={run_dir!r}: model.{key}={getattr(source_config.model, key)!r} there, "
                              f"expected {getattr(config.model, key)!r} as here")


def copy_trained_flow(model: ConditionalBruno, config: Config, run_dir: str) -> int:
    """Copy a trained run's flow, pose embedding and shared process parameters into ``model`` (built).

    The source must pass :func:`check_init_source`; the process parameters both processes have
    (v, ρ, ℓ, the latent atlas) are copied where their shapes agree, the rest keep their init.
    Returns the source checkpoint's step.

    Raises:
        ConfigError: as :func:`check_init_source`.
        RunDirError: no such run or checkpoint.
    """
    check_init_source(config, run_dir)
    source, _, step = restore_model(run_dir)
    assert isinstance(source, ConditionalBruno) and isinstance(model, ConditionalBruno)
    theirs_flow = list(source.flow.variables) + list(source.embedding.variables)
    ours_flow = list(model.flow.variables) + list(model.embedding.variables)
    if len(theirs_flow) != len(ours_flow):
        raise ConfigError(f"train.init_from={run_dir!r}: {len(theirs_flow)} flow variables there, expected {len(ours_flow)}")
    pairs = list(zip(theirs_flow, ours_flow))
    pairs += [(getattr(source.process, n), getattr(model.process, n)) for n in _SHARED_PROCESS_VARIABLES
              if hasattr(source.process, n) and hasattr(model.process, n)
              and getattr(source.process, n).shape == getattr(model.process, n).shape]
    for theirs, ours in pairs:
        if theirs.shape != ours.shape:
            raise ConfigError(f"train.init_from={run_dir!r}: variable {theirs.name} has shape {theirs.shape}, "
                              f"expected {ours.shape}")
        ours.assign(theirs)
    return step


class TrainResult(NamedTuple):
    """Where a training run ended: last step, last train loss (nats/image), best val loss, seconds."""

    step: int
    train_loss: float
    best_val_loss: float
    seconds: float


class UpdateStep:
    """The parameter update of one training step, shared by :class:`Trainer` and the benchmark.

    Builds the model's variables and the optimiser in the strategy's scope. Each call splits the
    batch across the replicas, averages the gradients, scales those of the process parameters by
    the schedule value and applies one update; :meth:`compiled` traces it once per n_c. With
    ``train.mixed_precision: float16`` the gradients come from a dynamically scaled loss, and a step
    whose gradients overflow is skipped.

    Args:
        model: the model (variables not yet built).
        train: the ``train`` config section (optimiser, process learning-rate scale, batch size).
        strategy: a ``tf.distribute`` strategy (default: the current, single-device one).
    """

    def __init__(self, model: SequenceModel, train: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None) -> None:
        self.model, self.train = model, train
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            model.build()
            self.variables = model.trainable_variables
            self.optimizer = make_optimizer(train.optimizer)
            self.optimizer.build(self.variables)
            self.loss_scale = DynamicLossScale() if train.mixed_precision == "float16" else None
        self._is_process = [any(n in v.name for n in PROCESS_VARIABLES) for v in self.variables]
        self._rate_scales = [train.process_learning_rate_scale if p else 1.0 for p in self._is_process]
        self._compiled: dict[tuple[int, bool], Any] = {}

    def mean_log_prob(self, images: tf.Tensor, poses: tf.Tensor, num_context: int) -> tuple[tf.Tensor, tf.Tensor]:
        """Mean target log-probability (nats per image) and bits/dim of a batch."""
        result = self.model.log_prob(images, poses, num_context)
        return tf.reduce_mean(result.log_prob), result.bits_per_dim

    def _replica_gradients(self, images: tf.Tensor, poses: tf.Tensor, num_context: int) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            mean_log_prob, bits = self.mean_log_prob(images, poses, num_context)
            loss = -mean_log_prob
            scaled = loss if self.loss_scale is None else loss * self.loss_scale.scale
        gradients = tape.gradient(scaled, self.variables)
        return loss, bits, [tf.zeros_like(v) if g is None else g for g, v in zip(gradients, self.variables)]

    def __call__(self, images: tf.Tensor, poses: tf.Tensor, learning_rate: tf.Tensor, process_scale: tf.Tensor,
                 num_context: int) -> tuple[tf.Tensor, tf.Tensor]:
        """One update (eager unless called through :meth:`compiled`); returns (loss, bits/dim)."""
        strategy = self.strategy
        replicas = strategy.num_replicas_in_sync

        def shard(values: tf.Tensor) -> Any:
            size = self.train.batch_size // replicas
            return strategy.experimental_distribute_values_from_function(
                lambda context: values[context.replica_id_in_sync_group * size:(context.replica_id_in_sync_group + 1) * size])

        per_replica = strategy.run(self._replica_gradients, args=(shard(images), shard(poses), num_context))
        mean = tf.distribute.ReduceOp.MEAN
        loss = strategy.reduce(mean, per_replica[0], axis=None)
        bits = strategy.reduce(mean, per_replica[1], axis=None)
        gradients = [strategy.reduce(mean, g, axis=None) for g in per_replica[2]]
        gradients = [g * tf.cast(process_scale, g.dtype) if is_process else g for g, is_process in zip(gradients, self._is_process)]
        if self.loss_scale is None:
            self.optimizer.apply(gradients, self.variables, learning_rate, self._rate_scales)
            return loss, bits
        gradients, finite = self.loss_scale.unscale(gradients)

        def apply() -> tf.Tensor:
            self.optimizer.apply(gradients, self.variables, learning_rate, self._rate_scales)
            return tf.constant(True)
        tf.cond(finite, apply, lambda: tf.constant(False))  # a float16 overflow skips the update
        self.loss_scale.update(finite)
        return loss, bits

    def compiled(self, num_context: int, jit_compile: bool = False) -> Any:
        """The update as a ``tf.function`` for this n_c (XLA-compiled with ``jit_compile``), traced on first use."""
        key = (num_context, jit_compile)
        if key not in self._compiled:
            self._compiled[key] = tf.function(functools.partial(self, num_context=num_context), jit_compile=jit_compile or None)
        return self._compiled[key]


class Trainer:
    """One training run in a prepared run directory (see :func:`prepare_run_dir`).

    Args:
        config: the experiment config.
        run_dir: the run directory.
        strategy: a ``tf.distribute`` strategy (default: the current, single-device one).
        progress: show a tqdm bar.
    """

    def __init__(self, config: Config, run_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                 progress: bool = True) -> None:
        self.config, self.run_dir, self.progress = config, run_dir, progress
        self.strategy = strategy or tf.distribute.get_strategy()
        train = config.train
        table = self.table = load_slice_table(config, progress)
        replicas = self.strategy.num_replicas_in_sync
        if train.batch_size % replicas:
            raise RunDirError(f"train.batch_size={train.batch_size} does not split across {replicas} devices")
        self.sampler = SequenceSampler(table, "train", train.batch_size, train.seq_len, train.seed)
        val_split = "val" if len(table.volumes_in("val")) else None
        if val_split is None:
            logger.warning("%s has no validation volumes: no validation NLL, the best checkpoint is the latest", table.path)
        self.val_batches = ([] if val_split is None else
                            list(SequenceSampler(table, "val", train.batch_size, train.seq_len, train.seed + 1)
                                 .batches(train.num_val_batches)))
        require_gpu(train.mixed_precision)
        with self.strategy.scope():
            self.model = make_model(config, train.mixed_precision)
            self.update = UpdateStep(self.model, train, self.strategy)
            self.step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="step")
            self.best_val = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_val")
        self.optimizer = self.update.optimizer
        self.data_state = tf.Variable("", dtype=tf.string, trainable=False, name="data_state")
        extra = {} if self.update.loss_scale is None else {"loss_scale": self.update.loss_scale}
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                              best_val=self.best_val, data_state=self.data_state, **extra)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(run_dir, "checkpoints"), max_to_keep=3)
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(run_dir, "best"), max_to_keep=1)
        self._eval_step = tf.function(self.update.mean_log_prob)
        self._writer: Optional[Any] = None  # created on the first record: a start that fails writes nothing
        self._pending: list[float] = []  # train losses since the last train record (saved with the data stream)
        if train.init_from is not None:
            check_init_source(config, train.init_from)

    def _train_step(self, images: tf.Tensor, poses: tf.Tensor, learning_rate: tf.Tensor, process_scale: tf.Tensor,
                    num_context: int) -> tuple[tf.Tensor, tf.Tensor]:
        """One compiled update with n_c = ``num_context`` (XLA if ``train.jit_compile``)."""
        return self.update.compiled(num_context, self.config.train.jit_compile)(images, poses, learning_rate, process_scale)

    def validate(self) -> float:
        """Mean NLL (nats per target image) over the fixed validation batches; NaN without a val split."""
        if not self.val_batches:
            return math.nan
        num_context = self.config.train.num_context
        values = [float(self._eval_step(tf.constant(b["images"]), tf.constant(b["poses"]), num_context)[0])
                  for b in self.val_batches]
        return -float(np.mean(values))

    # ------------------------------------------------------------------------------ bookkeeping
    def bits_per_dim(self, loss: float) -> float:
        """Nats per image → bits per dimension."""
        return loss / (self.model.num_dims * math.log(2.0))

    def _log(self, record: dict[str, Any]) -> None:
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "tensorboard"))
        with self._writer.as_default(step=record["step"]):
            for key, value in record.items():
                if key not in ("step", "split", "time") and isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.scalar(f"{record['split']}/{key}", value)

    def _keep_data_state(self) -> None:
        """Put the data stream's position and the losses not yet logged into the checkpointed state."""
        self.data_state.assign(json.dumps({"sampler": self.sampler.state, "pending_losses": self._pending}))

    def save(self) -> str:
        """Write a checkpoint of everything needed to resume exactly (at the end of a step)."""
        self._keep_data_state()
        return self.manager.save(checkpoint_number=int(self.step.numpy()))

    def restore(self) -> int:
        """Restore the latest checkpoint (model, optimiser, step, data stream); returns its step.

        Raises:
            RunDirError: the checkpoint is unreadable or does not match the config.
        """
        restore_checkpoint(self.checkpoint, self.manager.latest_checkpoint, self.model)
        text = self.data_state.numpy().decode("utf-8")
        state = json.loads(text)
        if "sampler" not in state:  # written before the unlogged losses were kept: the bare stream state
            state = {"sampler": text, "pending_losses": []}
        self.sampler.state = state["sampler"]
        self._pending = [float(v) for v in state["pending_losses"]]
        return int(self.step.numpy())

    # ---------------------------------------------------------------------------------- the loop
    def _initialize(self) -> None:
        """Step 0: the data-dependent init on the first batch, or a copy of ``train.init_from``'s flow;
        then the PCA init of a latent factor process."""
        batch = self.sampler.next_batch()
        init_from = self.config.train.init_from
        if init_from is None:
            self.model.initialize(tf.constant(batch["images"]), tf.constant(batch["poses"]))
            logger.info("step 0: initialisation pass on %d images", batch["images"].shape[0] * batch["images"].shape[1])
        else:
            source_step = copy_trained_flow(self.model, self.config, init_from)  # type: ignore[arg-type]
            logger.info("step 0: flow, pose embedding and process copied from %s (step %d)", init_from, source_step)
        if isinstance(self.model, ConditionalBruno) and isinstance(self.model.process, LatentFactorProcess):
            initialize_latent_factors(self.model, self.table, self.validate, init_from is None, self.config.train.seed,
                                      self.progress)
        self.step.assign(0)

    def _validate_and_keep_best(self, step: int) -> float:
        val_loss = self.validate()
        if math.isfinite(val_loss):
            self._log({"step": step, "split": "val", "loss": val_loss, "bits_per_dim": self.bits_per_dim(val_loss), "time": time.time()})
            if val_loss < float(self.best_val.numpy()):
                self.best_val.assign(val_loss)
                self._keep_data_state()
                self.best_manager.save(checkpoint_number=step)
        return val_loss

    def train(self, max_steps: Optional[int] = None) -> TrainResult:
        """Train from the current step to ``max_steps`` (default: the config's).

        SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) end training at the end of the step they
        arrive in: a checkpoint of that step is written, then :class:`TrainingInterrupted` is raised,
        and ``--resume`` continues as if nothing had happened. A second signal stops at once.

        Raises:
            TrainingDiverged: the loss became NaN or Inf (the last good checkpoint stays).
            TrainingInterrupted: SIGINT or SIGTERM (after the checkpoint).
        """
        last = self.config.train.max_steps if max_steps is None else max_steps
        start_time = time.time()
        with _StopRequests() as stop:
            try:
                loss = self._train_until(last, stop)
            finally:
                if self._writer is not None:
                    self._writer.flush()
        if not self.val_batches and self.manager.latest_checkpoint:
            self.best_manager.save(checkpoint_number=int(self.step.numpy()))
        return TrainResult(int(self.step.numpy()), loss, float(self.best_val.numpy()), time.time() - start_time)

    def _train_until(self, last: int, stop: "_StopRequests") -> float:
        """The loop of :meth:`train`; returns the last step's loss."""
        train = self.config.train
        if int(self.step.numpy()) < 0:
            self._initialize()
            self._validate_and_keep_best(0)  # the start of the validation curve
        first = int(self.step.numpy()) + 1
        loss = math.nan
        with tqdm(range(first, last + 1), initial=first - 1, total=last, desc="train", unit="step",
                  disable=not self.progress) as bar:
            for step in bar:
                if stop.signum is not None:
                    break
                batch = self.sampler.next_batch()
                rate = learning_rate_at(step, train.learning_rate, train.learning_rate_decay)
                scale = process_grad_scale(step, train.process_grad_schedule)
                self.model.set_step(step)
                loss_t, _ = self._train_step(tf.constant(batch["images"]), tf.constant(batch["poses"]),
                                             tf.constant(rate, tf.float32), tf.constant(scale, tf.float32),
                                             num_context_at(step, train))
                loss = float(loss_t)
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"step {step}: training loss is {loss}; stopped. The last good checkpoint is "
                                           f"{self.manager.latest_checkpoint}")
                self.step.assign(step)
                self._pending.append(loss)
                bar.set_postfix(loss=f"{loss:.1f}", bpd=f"{self.bits_per_dim(loss):.3f}")
                if step % train.log_every == 0 or step == last:
                    mean_loss = float(np.mean(self._pending))
                    self._log({"step": step, "split": "train", "loss": mean_loss, "bits_per_dim": self.bits_per_dim(mean_loss),
                               "learning_rate": rate, "time": time.time(),
                               **({"process_grad_scale": scale} if self.config.model.kind == "bruno" else {}),
                               **self.model.summary()})
                    self._pending = []
                if step % train.validate_every == 0 or step == last:
                    self._validate_and_keep_best(step)
                if step % train.checkpoint_every == 0 or step == last:
                    self.save()
        if stop.signum is not None and int(self.step.numpy()) < last:
            path = self.save()
            logger.warning("%s at step %d: saved %s (--resume continues exactly)", signal.Signals(stop.signum).name,
                           int(self.step.numpy()), path)
            raise TrainingInterrupted(stop.signum)
        return loss


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopRequests:
    """While active, SIGINT and SIGTERM only set :attr:`signum` (the loop stops at the end of the
    step); a second one restores the previous handlers and interrupts at once. Outside the main
    thread (where handlers cannot be set) signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning("%s: stopping at the end of this step (again to stop at once)", signal.Signals(signum).name)

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()


def iterate_metrics(run_dir: str) -> Iterator[dict[str, Any]]:
    """The records of ``metrics.jsonl``."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)

