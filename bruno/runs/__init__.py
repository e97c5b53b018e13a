"""Run directories: the one owner of their files (:mod:`.run_dir`), a run's model restored (:mod:`.restore`) and a
population process's test-time state (:mod:`.population_state`)."""
from bruno.runs.population_state import apply_population_state, read_population_state, write_population_state
from bruno.runs.restore import check_training_fits, make_deterministic, make_model, restore_checkpoint, restore_model
from bruno.runs.run_dir import RUN_FORMAT, InferenceRecord, RunDir, checkpoint_step, inference_record, latest_checkpoint

__all__ = ["RUN_FORMAT", "InferenceRecord", "RunDir", "apply_population_state", "check_training_fits", "checkpoint_step",
           "inference_record", "latest_checkpoint", "make_deterministic", "make_model", "read_population_state",
           "restore_checkpoint", "restore_model", "write_population_state"]
