"""Training: the loop (:mod:`.loop`), one update (:mod:`.step`), schedules, optimisers, warm starts, clean stops
(:mod:`.stops`) and where it runs (:mod:`.distribute`: one device, several GPUs, several workers).

Run directories, model building and restoring live in :mod:`bruno.runs`, which inference uses
without importing this package; the train command (:mod:`bruno.commands.train`) completes a run with its
test-time state after training.
"""
from bruno.training.loop import Trainer, TrainResult, open_run
from bruno.training.schedules import learning_rate_at, num_context_at, process_grad_scale
from bruno.training.step import UpdateStep
from bruno.training.stops import TrainingInterrupted
from bruno.training.warm_start import check_init_source, copy_trained_flow

__all__ = ["TrainResult", "Trainer", "TrainingInterrupted", "UpdateStep", "check_init_source",
           "copy_trained_flow", "learning_rate_at", "num_context_at", "open_run", "process_grad_scale"]
