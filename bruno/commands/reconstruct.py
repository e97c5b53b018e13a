"""``scripts/reconstruct.py`` after parsing: its options checked against each other, then files in → files out
(:mod:`bruno.reconstruction.pipeline`).

With ``--run``, what the training data says (pose spacings, atlas) comes from the run's ``inference.npz``, so a
run directory alone reconstructs with its model; the slice table is opened only for methods fitted on it
(``needs_table``), or for a run written before ``inference.npz`` where the table is still there.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple, Optional

from bruno.commands.options import parse_contexts, parse_integers
from bruno.config import Config, load_config
from bruno.data.preprocess import load_slice_table
from bruno.data.table import SliceTable
from bruno.errors import ConfigError
from bruno.files import check_outputs, png_beside
from bruno.reconstruction.contexts import evenly_spread
from bruno.reconstruction.method import Result, Source
from bruno.reconstruction.pipeline import check_method_outputs, prepare_acquired, prepare_volume, reconstruct_and_write
from bruno.reconstruction.registry import METHODS, build_method
from bruno.runs import InferenceRecord, RunDir, inference_record, make_deterministic, restore_model

__all__ = ["Request", "run_reconstruction"]

OUTPUT_FLAGS = {"mean": "--output", "decoded_mean": "--decoded-mean", "std": "--std", "samples": "--samples-out"}


class Request(NamedTuple):
    """``scripts/reconstruct.py``'s options (their argparse names); ``num_samples`` already read."""

    run: Optional[str]
    config: Optional[str]
    method: str
    input: list[str]
    slab_mm: Optional[list[float]]
    poses: Optional[str]
    contexts: Optional[str]
    num_contexts: Optional[int]
    slices: Optional[str]
    intensity_window: Optional[list[float]]
    output: str
    png: Optional[str]
    decoded_mean: Optional[str]
    std: Optional[str]
    samples_out: Optional[str]
    num_samples: int
    keep_contexts: Optional[bool] = None
    checkpoint: str = "best"
    seed: int = 0
    overwrite: bool = False

    @property
    def acquired(self) -> bool:
        """Acquired slices (the default), not a whole volume with chosen contexts."""
        return self.contexts is None and self.num_contexts is None


def check_request(r: Request) -> None:
    """The rules between options, before anything is loaded; :class:`ConfigError` naming the flag otherwise."""
    method = METHODS[r.method]
    if method.needs_run and r.run is None:
        raise ConfigError(f"--method {r.method} needs --run (a trained model); with --config choose a classical --method")
    if r.keep_contexts is not None and not method.sampled:
        raise ConfigError(f"--keep-contexts: --method {r.method} always returns the given slices unchanged (or ignores them)")
    if not r.acquired and (r.slices or r.intensity_window):
        raise ConfigError("--slices / --intensity-window: only for acquired slices, not with --contexts / --num-contexts")
    if r.std and method.sampled and r.num_samples < 2:
        raise ConfigError(f"--std {r.std}: a standard deviation needs at least 2 samples per slice, got --samples {r.num_samples}")
    if r.intensity_window and not (math.isfinite(r.intensity_window[0]) and math.isfinite(r.intensity_window[1])
                                   and r.intensity_window[0] < r.intensity_window[1]):
        raise ConfigError(f"--intensity-window {' '.join(f'{v:g}' for v in r.intensity_window)}: expected two finite "
                          "intensities LOW < HIGH")
    if not r.acquired and len(r.input) != 1:
        raise ConfigError(f"--input: {len(r.input)} files; --contexts/--num-contexts take one whole volume "
                          "(for acquired slices in several files, leave those two out)")


def run_reconstruction(r: Request, progress: bool = True) -> Result:
    """Check ``r`` and every output path, load the run (or config), prepare the input, reconstruct and write."""
    check_request(r)
    paths = {"mean": r.output, "decoded_mean": r.decoded_mean, "std": r.std, "samples": r.samples_out}
    check_method_outputs(r.method, METHODS[r.method], paths)
    png = r.png or (png_beside(r.output) if r.acquired else None)
    check_outputs({OUTPUT_FLAGS[kind]: path for kind, path in paths.items()}, {"--png": png}, r.overwrite, r.input)
    model, config, _ = restore_model(r.run, r.checkpoint) if r.run else (None, load_config(r.config), None)
    make_deterministic(r.seed)
    table = load_slice_table(config, progress, build=False) if METHODS[r.method].needs_table else None
    if r.acquired:
        training = _training_record(r.run, config, table, progress)
        prepared = prepare_acquired(r.input, config.data, training, model, r.slices and parse_integers("--slices", r.slices),
                                    r.intensity_window, r.slab_mm and tuple(r.slab_mm),
                                    r.poses and parse_integers("--poses", r.poses))
    else:
        num_poses = config.data.num_poses
        contexts = parse_contexts(r.contexts, num_poses) if r.contexts is not None else evenly_spread(r.num_contexts, num_poses)
        prepared = prepare_volume(r.input[0], config.data, contexts)
    built = build_method(r.method, Source(table, model, r.run, keep_contexts=r.keep_contexts, progress=progress))
    return reconstruct_and_write(built, prepared, paths, png, r.num_samples, r.seed, r.overwrite, progress)


def _training_record(run: Optional[str], config: Config, table: Optional[SliceTable], progress: bool) -> Optional[InferenceRecord]:
    """The run's record of its training data; else the table's (a config, or a run written before the record,
    whose table is there); None where neither is."""
    stored = RunDir(run).inference() if run else None
    if stored is not None:
        return stored
    if table is None and (run is None or os.path.exists(config.data.output)):
        table = load_slice_table(config, progress, build=False)
    return None if table is None else inference_record(table)
