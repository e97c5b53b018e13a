"""``train.init_from``: start a run from a trained run's flow (fine-tuning), checked before anything is written."""
from __future__ import annotations

import dataclasses
import os

from bruno.config import Config, FlowConfig
from bruno.errors import ConfigError, RunDirError
from bruno.models import ConditionalBruno
from bruno.runs import RunDir, restore_model

__all__ = ["check_init_source", "copy_trained_flow"]

def check_init_source(config: Config, run_dir: str) -> None:
    """Check that ``train.init_from``'s run can seed this config: a BRUNO run on the same data section
    with the same flow architecture (and, with both pose kernels, the same kernel and length floor).

    Raises:
        ConfigError: not a BRUNO run on the same data, or another flow architecture.
        RunDirError: no such run.
    """
    if not os.path.isdir(run_dir):
        raise RunDirError(f"train.init_from={run_dir!r}: no such run directory (train that run first)")
    source_config = RunDir(run_dir).config()
    if not (source_config.model.flow_is_used and config.model.flow_is_used):
        raise ConfigError(f"train.init_from={run_dir!r}: expected a BRUNO run (model.kind: bruno)")
    if source_config.data != config.data:
        raise ConfigError(f"train.init_from={run_dir!r}: its data section differs from this config's (expected the "
                          f"same table and split, so no val or test volume was trained on)")
    keys = [("flow", f.name) for f in dataclasses.fields(FlowConfig)]
    if source_config.model.process.has_pose_kernel and config.model.process.has_pose_kernel:
        # ℓ = softplus(l) + ℓ_min: the raw variable means ℓ only with the same floor
        keys += [("process", "kernel"), ("process", "length_min")]
    for section, key in keys:
        there, here = getattr(getattr(source_config.model, section), key), getattr(getattr(config.model, section), key)
        if there != here:
            raise ConfigError(f"train.init_from={run_dir!r}: model.{section}.{key}={there!r} there, expected {here!r} as here")


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
    theirs_process, ours_process = source.process.warm_start_variables(), model.process.warm_start_variables()
    pairs += [(theirs_process[role], variable) for role, variable in ours_process.items()
              if role in theirs_process and theirs_process[role].shape == variable.shape]
    for theirs, ours in pairs:
        if theirs.shape != ours.shape:
            raise ConfigError(f"train.init_from={run_dir!r}: variable {theirs.name} has shape {theirs.shape}, "
                              f"expected {ours.shape}")
        ours.assign(theirs)
    return step

