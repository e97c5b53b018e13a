"""One parameter update, shared by the training loop and the benchmark."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Optional

import tensorflow as tf

from bruno.config import TrainConfig
from bruno.models import SequenceModel
from bruno.precision import DynamicLossScale
from bruno.training.distribute import WorkerRole
from bruno.training.optimizers import make_optimizer

__all__ = ["UpdateStep"]


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
        role: this worker's place: with several workers each call gets only this worker's rows of the
            global batch (B / workers), split across its own replicas.
    """

    def __init__(self, model: SequenceModel, train: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None,
                 role: WorkerRole = WorkerRole()) -> None:
        self.model, self.train, self.role = model, train, role
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            model.build()
            self.variables = model.trainable_variables
            self.optimizer = make_optimizer(train.optimizer)
            self.optimizer.build(self.variables)
            self.loss_scale = DynamicLossScale() if train.mixed_precision == "float16" else None
        process = {v.ref() for v in model.process_variables}
        self._is_process = [v.ref() in process for v in self.variables]
        self._rate_scales = [train.process_learning_rate_scale if p else 1.0 for p in self._is_process]
        self._compiled: dict[tuple[int, bool], Any] = {}

    def mean_log_prob(self, images: tf.Tensor, poses: tf.Tensor, num_context: int,
                      inputs: Optional[Mapping[str, tf.Tensor]] = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Mean target log-probability (nats per image) and bits/dim of a batch. ``inputs``: the model's further
        per-sequence inputs, as keywords of its ``log_prob`` (``subjects``: each sequence's training subject, for a
        model that :attr:`~bruno.models.SequenceModel.uses_subjects`; ``estimates``: the classical estimate of each
        slice, for a flow conditioned on it)."""
        result = self.model.log_prob(images, poses, num_context, **dict(inputs or {}))
        return tf.reduce_mean(result.log_prob), result.bits_per_dim

    def _replica_gradients(self, images: tf.Tensor, poses: tf.Tensor, num_context: int,
                           inputs: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        with tf.GradientTape() as tape:
            mean_log_prob, bits = self.mean_log_prob(images, poses, num_context, inputs)
            loss = -mean_log_prob
            scaled = loss if self.loss_scale is None else loss * self.loss_scale.scale
        gradients = [tf.zeros_like(v) if g is None else g for g, v in zip(tape.gradient(scaled, self.variables), self.variables)]
        # One batched all-reduce of everything (the collective packs the tensors): with several workers, one
        # round trip per step instead of one per variable; with one replica it is the identity.
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, (loss, bits, gradients))

    def __call__(self, images: tf.Tensor, poses: tf.Tensor, learning_rate: tf.Tensor, process_scale: tf.Tensor,
                 num_context: int, inputs: Optional[Mapping[str, tf.Tensor]] = None) -> tuple[tf.Tensor, tf.Tensor]:
        """One update (eager unless called through :meth:`compiled`) on this worker's rows of the batch; returns
        the (loss, bits/dim) of the whole global batch. ``inputs``: as :meth:`mean_log_prob`, each sharded as the batch."""
        strategy = self.strategy
        replicas = strategy.num_replicas_in_sync

        size = self.train.batch_size // replicas
        first = self.role.task_index * (replicas // self.role.num_workers)  # replica ids of worker i: i·R .. i·R + R − 1

        def shard(values: tf.Tensor) -> Any:
            def rows(context: tf.distribute.experimental.ValueContext) -> tf.Tensor:
                local = context.replica_id_in_sync_group - first
                return values[local * size:(local + 1) * size]
            return strategy.experimental_distribute_values_from_function(rows)

        sharded = {key: shard(value) for key, value in (inputs or {}).items()}
        per_replica = strategy.run(self._replica_gradients, args=(shard(images), shard(poses), num_context, sharded))
        loss, bits, gradients = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], per_replica)
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

