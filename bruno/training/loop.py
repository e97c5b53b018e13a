"""The training loop (SPEC §3): init pass, NLL steps, validation, checkpoints, exact resume and stop.

The same loop trains the paper's GQN and C-VAE baselines (``model.kind``, :func:`bruno.runs.make_model`): their
"log-prob" is the ELBO, so the loss is −ELBO and validation compares bounds; the model is told the
step before each update (:meth:`~bruno.models.SequenceModel.set_step`, the GQN's σ annealing).

Semantics (upstream ``config_conditional/train.py``):

* step 0 runs the data-dependent initialisation on the first batch (or, with ``train.init_from``,
  copies a trained run's flow: fine-tuning) and takes no gradient step; a latent factor process is
  then initialised by a PCA of the train split's latents, a population process's bank filled with them (each
  step then tells the model its sequences' train subjects, so the bank leaves them out and takes their latents);
  steps 1..max_steps each draw a fresh batch of B sequences of T slices;
* loss = −mean over the B·(T − n_c) targets of [log p(z_t | contexts) + J_t] (nats per image),
  reported as bits/dim = loss/(D·ln 2);
* the learning rate at step t is lr·decay^(t+1); the gradients of the process parameters
  (``prior_var``, ``prior_corr``, ``prior_nu``, and ``prior_length``/``prior_atlas`` of the pose
  process) are scaled by ``process_grad_schedule``, and their rate by ``process_learning_rate_scale``;
* with ``num_context_min`` set, step t uses n_c drawn from a generator seeded by (seed, t), so a
  resumed run draws the same n_c (one traced step per distinct n_c);
* a NaN/Inf loss stops training with :class:`~bruno.errors.TrainingDiverged`, keeping the last good
  checkpoint; SIGINT/SIGTERM end the step in flight, save it and stop (:meth:`Trainer.train`).

Beyond the upstream: a validation NLL on a fixed set of ``val`` sequences every
``validate_every`` steps, with the best checkpoint kept in ``<run>/best``; checkpoints hold the
model, the optimiser slots, the step and the exact position of the data stream, so a resumed run on
CPU reproduces the losses of an uninterrupted one. The run directory holds ``config.yaml`` (the
resolved config), ``versions.json``, ``metrics.jsonl``, ``checkpoints/``, ``best/`` and
``tensorboard/`` and ``inference.npz`` (:class:`~bruno.runs.RunDir`; a population run's test-time state is made
after training, by the train command: :mod:`bruno.reconstruction.population_state`).

Several GPUs or workers (:mod:`bruno.training.distribute`): pass a ``MirroredStrategy`` or a
``MultiWorkerMirroredStrategy``; each step splits the global batch across the replicas of every
worker (each worker reads only its shard), averages the gradients across them and applies one
update (the default strategy on a single device runs the same code). With several workers only the
chief writes the run directory; every worker restores the chief's checkpoints, and a worker that
stops answering ends the others with :class:`~bruno.errors.WorkerLost`. ``train.mixed_precision``
(GPUs only) runs BRUNO's s/t networks in float16 or bfloat16 (:mod:`bruno.precision`).

At a little over 320 lines the module is one class and its bookkeeping (records, checkpoints, exact
resume), which share the trainer's state; signals live in :mod:`.stops`, strategies in :mod:`.distribute`.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import time
from typing import Any, NamedTuple, Optional

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from bruno.baselines import CrossFittedEstimate
from bruno.config import Config
from bruno.data.preprocess import load_slice_table
from bruno.data.sampler import SequenceSampler
from bruno.data.subjects import read_split
from bruno.errors import ConfigError, DiskFullError, RunDirError, TrainingDiverged, WorkerLost, disk_full_reason, is_disk_full
from bruno.precision import require_gpu
from bruno.runs import RunDir, check_training_fits, inference_record, make_model, restore_checkpoint
from bruno.training.distribute import WORKER_LOST, lost_worker_message, remove_scratch, scratch_dir, worker_role
from bruno.training.process_init import bank_rows, initialize_process
from bruno.training.schedules import learning_rate_at, num_context_at, process_grad_scale
from bruno.training.step import UpdateStep
from bruno.training.stops import StopRequests, TrainingInterrupted
from bruno.training.warm_start import check_init_source, copy_trained_flow
from bruno.units import bits_per_dim

__all__ = ["TrainResult", "Trainer", "open_run"]

logger = logging.getLogger(__name__)


class TrainResult(NamedTuple):
    """Where a training run ended: last step, last train loss (nats/image), best val loss, seconds, and the
    training throughput in images/s of the global batch (B·T per step, from the end of this session's
    first step, so start-up and tracing do not count; validation and checkpoints do; NaN below 2 steps)."""

    step: int
    train_loss: float
    best_val_loss: float
    seconds: float
    images_per_second: float = math.nan



class Trainer:
    """One training run in a prepared run directory (see :meth:`bruno.runs.RunDir.prepare`).

    Args:
        config: the experiment config.
        run_dir: the run directory.
        strategy: a ``tf.distribute`` strategy (default: the current, single-device one).
        progress: show a tqdm bar.
    """

    def __init__(self, config: Config, run_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                 progress: bool = True) -> None:
        self.strategy = strategy or tf.distribute.get_strategy()
        self.role = worker_role(strategy)
        self.config, self.run_dir, self.progress = config, run_dir, progress and self.role.is_chief
        self.run = RunDir(run_dir)
        train = config.train
        table = self.table = load_slice_table(config, progress)
        replicas = self.strategy.num_replicas_in_sync
        if train.batch_size % replicas:
            raise RunDirError(f"train.batch_size={train.batch_size} does not split across {replicas} devices")
        self.sampler = SequenceSampler(table, "train", train.batch_size, train.seq_len, train.seed,
                                       shard=(self.role.task_index, self.role.num_workers))
        self._bank_rows = bank_rows(table)  # a population process's row of each volume
        val_split = "val" if len(table.volumes_in("val")) else None
        if val_split is None:
            logger.warning("%s has no validation volumes: no validation NLL, the best checkpoint is the latest", table.path)
        self.val_batches = ([] if val_split is None else
                            list(SequenceSampler(table, "val", train.batch_size, train.seq_len, train.seed + 1)
                                 .batches(train.num_val_batches)))
        require_gpu(train.mixed_precision)
        with self.strategy.scope():
            self.model = make_model(config, train.mixed_precision)
            if self.model.conditioned_on_estimate:  # cross-fitted over the train subjects (SPEC §9.5)
                if self.model.process.train_latents_needed:  # type: ignore[attr-defined]
                    raise ConfigError(f"model.estimate.use with model.process.kind={config.model.process.kind!r}: expected "
                                      "a process that starts without the train latents (a latent of a conditioned flow "
                                      "depends on the acquired slices)")
                e = config.model.estimate
                if e.unset:
                    raise ConfigError(f"model.estimate.{e.unset[0]} is not set: the train command takes it from the "
                                      "table's classical search (bruno.commands.train.with_estimate_settings)")
                estimator = CrossFittedEstimate(read_split(table, "train"), e.rank, e.noise_variance, e.length, e.rho,
                                                e.folds, train.seed)
                self.model.attach_estimator(estimator)  # type: ignore[attr-defined]
            self.update = UpdateStep(self.model, train, self.strategy, self.role)
            self.step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="step")
            self.best_val = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_val")
        self.optimizer = self.update.optimizer
        self.data_state = tf.Variable("", dtype=tf.string, trainable=False, name="data_state")
        extra = {} if self.update.loss_scale is None else {"loss_scale": self.update.loss_scale}
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                              best_val=self.best_val, data_state=self.data_state, **extra)
        out = scratch_dir(run_dir, self.role)  # every worker saves (TensorFlow's rule); only the chief's count
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(out, RunDir.CHECKPOINTS), max_to_keep=3)
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(out, RunDir.BEST), max_to_keep=1)
        self._eval_step = tf.function(self.update.mean_log_prob)
        self._writer: Optional[Any] = None  # created on the first record: a start that fails writes nothing
        self._pending: list[float] = []  # train losses since the last train record (saved with the data stream)
        self._step_ends: list[tuple[int, float]] = []  # (step, wall time) at the end of this session's first and last steps
        self._agree: Optional[Any] = None  # the all-reduce of stop requests between workers, traced on first use
        if train.init_from is not None:
            check_init_source(config, train.init_from)

    def _train_step(self, images: tf.Tensor, poses: tf.Tensor, learning_rate: tf.Tensor, process_scale: tf.Tensor,
                    num_context: int, inputs: Optional[dict[str, tf.Tensor]] = None) -> tuple[tf.Tensor, tf.Tensor]:
        """One compiled update with n_c = ``num_context`` (XLA if ``train.jit_compile``); ``inputs``: the model's further
        inputs for this batch (:meth:`~bruno.models.SequenceModel.log_prob_inputs`)."""
        return self.update.compiled(num_context, self.config.train.jit_compile)(images, poses, learning_rate,
                                                                                 process_scale, inputs=inputs or {})

    def validate(self) -> float:
        """Mean NLL (nats per target image) over the fixed validation batches; NaN without a val split."""
        if not self.val_batches:
            return math.nan
        num_context = self.config.train.num_context
        values = [float(self._eval_step(tf.constant(b["images"]), tf.constant(b["poses"]), num_context,
                                        self.model.log_prob_inputs(b["images"], b["poses"], num_context))[0])
                  for b in self.val_batches]
        return -float(np.mean(values))

    # ------------------------------------------------------------------------------ bookkeeping
    def bits_per_dim(self, loss: float) -> float:
        """Nats per image → bits per dimension."""
        return float(bits_per_dim(loss, self.model.num_dims))

    def _log(self, record: dict[str, Any]) -> None:
        if not self.role.is_chief:
            return
        with open(self.run.file(RunDir.METRICS), "a", encoding="utf-8") as f:  # NaN/Inf as null: strict JSON
            f.write(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}) + "\n")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.run.file(RunDir.TENSORBOARD))
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
        return self._save(self.manager, int(self.step.numpy()))

    def _save(self, manager: tf.train.CheckpointManager, step: int) -> str:
        """``manager.save`` at ``step``; on a full disk the half-written checkpoint is removed (the ones before it stay,
        so ``--resume`` continues exactly) and the error is one line.

        Raises:
            DiskFullError: no space (or over a file-size limit) to write it.
        """
        try:
            return manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as err:
            _remove_partial_checkpoints(manager.directory)
            if not is_disk_full(err):
                raise
            latest = self.run.latest_step() if self.role.is_chief else None
            then = "run again with --overwrite (no checkpoint yet)" if latest is None else f"--resume continues from step {latest}"
            raise DiskFullError(f"{manager.directory}: no space to write the checkpoint of step {step} ({disk_full_reason(err)}); "
                                f"free some, then {then}") from None

    def restore(self) -> int:
        """Restore the latest checkpoint (model, optimiser, step, data stream); returns its step.

        Raises:
            RunDirError: the checkpoint is unreadable or does not match the config.
        """
        restore_checkpoint(self.checkpoint, self._chief_checkpoint(), self.model)
        text = self.data_state.numpy().decode("utf-8")
        state = json.loads(text)
        if "sampler" not in state:  # written before the unlogged losses were kept: the bare stream state
            state = {"sampler": text, "pending_losses": []}
        self.sampler.state = state["sampler"]
        self._pending = [float(v) for v in state["pending_losses"]]
        if self.role.is_chief:
            self.run.trim_metrics(int(self.step.numpy()))
        return int(self.step.numpy())

    # ---------------------------------------------------------------------------------- the loop
    def _initialize(self) -> None:
        """Step 0: the data-dependent init on the first batch, or a copy of ``train.init_from``'s flow;
        then the PCA init of a latent factor process."""
        batch = self.sampler.next_batch(whole=True)  # every worker initialises alike from the whole batch
        init_from = self.config.train.init_from
        if init_from is None:
            inputs = self.model.log_prob_inputs(batch["images"], batch["poses"], self.config.train.num_context,
                                                self._bank_rows[batch["volume"]])
            self.model.initialize(tf.constant(batch["images"]), tf.constant(batch["poses"]), inputs.get("estimates"))
            logger.info("step 0: initialisation pass on %d images", batch["images"].shape[0] * batch["images"].shape[1])
        else:
            source_step = copy_trained_flow(self.model, self.config, init_from)  # type: ignore[arg-type]
            logger.info("step 0: flow, pose embedding and process copied from %s (step %d)", init_from, source_step)
        initialize_process(self.model, self.table, self.config.train.seed, self.validate, init_from is None, self.progress)
        self.step.assign(0)

    def _validate_and_keep_best(self, step: int) -> float:
        val_loss = self.validate()
        if math.isfinite(val_loss):
            self._log({"step": step, "split": "val", "loss": val_loss, "bits_per_dim": self.bits_per_dim(val_loss), "time": time.time()})
            if val_loss < float(self.best_val.numpy()):
                self.best_val.assign(val_loss)
                self._keep_data_state()
                self._save(self.best_manager, step)
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
        with StopRequests() as stop:
            try:
                loss = self._train_until(last, stop)
            except WORKER_LOST as err:
                if self.role.num_workers == 1:
                    raise
                raise WorkerLost(lost_worker_message(err, self.role, int(self.step.numpy()) + 1, self._chief_checkpoint())) from None
            finally:
                if self._writer is not None:
                    self._writer.flush()
        if not self.val_batches and self.manager.latest_checkpoint:
            self._save(self.best_manager, int(self.step.numpy()))
        remove_scratch(self.run_dir, self.role)
        rate, train = math.nan, self.config.train
        if len(self._step_ends) == 2:
            (first, start), (end, stop_time) = self._step_ends
            rate = (end - first) * train.batch_size * train.seq_len / (stop_time - start)
        return TrainResult(int(self.step.numpy()), loss, float(self.best_val.numpy()), time.time() - start_time, rate)

    def _chief_checkpoint(self) -> Optional[str]:
        """The latest checkpoint in the run directory (the chief's, which every worker restores)."""
        return self.run.latest_checkpoint()

    def _agreed_stop(self, stop: "StopRequests") -> bool:
        """Whether to stop before this step: this process got SIGINT/SIGTERM or, with several workers, any
        worker did (one tiny all-reduce per step, so every worker stops after the same step)."""
        if self.role.num_workers > 1:
            if self._agree is None:
                self._agree = tf.function(lambda flag: self.strategy.reduce(
                    tf.distribute.ReduceOp.SUM, self.strategy.experimental_distribute_values_from_function(lambda _: flag), axis=None))
            total = self._agree(tf.constant([1.0, float(stop.signum)] if stop.signum else [0.0, 0.0])).numpy()
            if total[0] > 0 and stop.signum is None:
                stop.signum = int(round(total[1] / total[0]))  # another worker's signal
        return stop.signum is not None

    def _train_until(self, last: int, stop: "StopRequests") -> float:
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
                if self._agreed_stop(stop):
                    break
                batch = self.sampler.next_batch()
                rate = learning_rate_at(step, train.learning_rate, train.learning_rate_decay)
                scale = process_grad_scale(step, train.process_grad_schedule)
                self.model.set_step(step)
                num_context = num_context_at(step, train)
                inputs = self.model.log_prob_inputs(batch["images"], batch["poses"], num_context,
                                                    self._bank_rows[batch["volume"]])
                loss_t, _ = self._train_step(tf.constant(batch["images"]), tf.constant(batch["poses"]),
                                             tf.constant(rate, tf.float32), tf.constant(scale, tf.float32), num_context, inputs)
                loss = float(loss_t)
                if not math.isfinite(loss):
                    kept = self._chief_checkpoint() or "none yet (lower train.learning_rate?)"
                    raise TrainingDiverged(f"step {step}: training loss is {loss}; stopped. The last good checkpoint: {kept}")
                self.step.assign(step)
                self._pending.append(loss)
                bar.set_postfix(loss=f"{loss:.1f}", bpd=f"{self.bits_per_dim(loss):.3f}")
                if step % train.log_every == 0 or step == last:
                    mean_loss = float(np.mean(self._pending))
                    self._log({"step": step, "split": "train", "loss": mean_loss, "bits_per_dim": self.bits_per_dim(mean_loss),
                               "learning_rate": rate, "time": time.time(),
                               **({"process_grad_scale": scale} if self.model.has_process else {}),
                               **self.model.summary()})
                    self._pending = []
                if step % train.validate_every == 0 or step == last:
                    self._validate_and_keep_best(step)
                if step % train.checkpoint_every == 0 or step == last:
                    self.save()
                self._step_ends[1:] = [(step, time.time())]  # the first mark stays, the second follows the last step
        if stop.signum is not None and int(self.step.numpy()) < last:
            path = self.save()
            logger.warning("%s at step %d: saved %s (--resume continues exactly)", signal.Signals(stop.signum).name,
                           int(self.step.numpy()), path)
            raise TrainingInterrupted(stop.signum)
        return loss


def _remove_partial_checkpoints(folder: str) -> None:
    """Remove what a failed ``CheckpointManager.save`` leaves in ``folder``: its ``ckpt-<step>_temp`` folder."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if re.fullmatch(r"ckpt-\d+_temp.*", name):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def open_run(config: Config, run_dir: str, resume: bool, overwrite: bool,
             strategy: Optional[tf.distribute.Strategy] = None, progress: bool = True) -> Trainer:
    """A :class:`Trainer` for ``run_dir``, ready to :meth:`~Trainer.train`: the folder is checked, the table,
    model and optimiser are built, and only then is the run directory written (and, with ``resume``, its
    latest checkpoint restored), so a start that fails leaves nothing behind. Seed first (:func:`bruno.runs.make_deterministic`).

    Raises:
        RunDirError, DataFileError, ConfigError: as :meth:`bruno.runs.RunDir.check_for_training` and :class:`Trainer`.
    """
    run = RunDir(run_dir)
    run.check_for_training(config, resume=resume, overwrite=overwrite)
    check_training_fits(config)
    trainer = Trainer(config, run_dir, strategy=strategy, progress=progress)
    if trainer.role.is_chief:  # the other workers only read the run directory
        run.prepare(config, resume=resume, overwrite=overwrite)
        if run.inference() is None:  # a new run, or one written before inference.npz
            run.write_inference(inference_record(trainer.table))
        if trainer.model.conditioned_on_estimate and not os.path.exists(run.file(RunDir.ESTIMATE)):
            run.write_estimate(trainer.model.estimator.full)  # type: ignore[attr-defined]  # what a new patient gets
    if resume:
        logger.info("resumed %s at step %d", run_dir, trainer.restore())
    return trainer
