"""Run directories: the one owner of their files (:mod:`.run_dir`), a run's model restored (:mod:`.restore`), a
population process's test-time state (:mod:`.population_state`) and a BRUNO model's test-time mean and spread
(:mod:`.spread`)."""
from bruno.runs.population_state import apply_population_state, read_population_state, write_population_state
from bruno.runs.restore import check_training_fits, make_deterministic, make_model, restore_checkpoint, restore_model
from bruno.runs.run_dir import (
           RUN_FORMAT,
           InferenceRecord,
           RunDir,
           checkpoint_step,
           inference_record,
           latest_checkpoint,
           reference_affine,
)
from bruno.runs.spread import apply_blend, apply_spread, blend_search, spread_search

__all__ = ["RUN_FORMAT", "InferenceRecord", "RunDir", "apply_blend", "apply_population_state", "apply_spread", "blend_search",
           "check_training_fits", "checkpoint_step",
           "inference_record", "latest_checkpoint", "make_deterministic", "make_model", "read_population_state", "reference_affine",
           "restore_checkpoint", "restore_model", "spread_search", "write_population_state"]
