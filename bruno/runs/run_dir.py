"""A run directory, the one owner of its files: what a trained model is once it leaves ``scripts/train.py``.

A run directory holds

* ``config.yaml``: the resolved config (sizes, process, the data section's slab and intensity conventions);
* ``versions.json``: the packages that trained it and ``run_format`` (:data:`RUN_FORMAT`; runs before it have
  none and read as format 1);
* ``inference.npz``: what reconstruction needs from the training data (format 2 on): the pose spacing (mm) of
  every training volume, whose range pose estimation searches, and the training population's mean slice at every
  pose (the atlas);
* ``metrics.jsonl``, ``tensorboard/``: the training log; ``checkpoints/`` (the latest three) and ``best/`` (the
  best by validation NLL);
* ``population.npz`` / ``population.json``: a population process's test-time state and its search
  (:mod:`bruno.runs.population_state`); ``latent_volume.json``: the latent volume model's settings.

So a run directory copied alone reconstructs acquired slices with its own model (``reconstruct.py --run COPY``):
no slice table, no data folder. Methods fitted on the training volumes (the classical baselines, the latent
volume model) still need the table. A folder holds a run once it has any run file.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import zipfile
from collections.abc import Iterator
from typing import Any, NamedTuple, Optional

import numpy as np
import yaml

from bruno.baselines import ClassicalEstimate, GaussianVolumeModel
from bruno.baselines.simple import population_mean
from bruno.config import Config, config_to_yaml, parse_config
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import pose_spacings, read_split
from bruno.data.table import SliceTable
from bruno.errors import OutputPathError, RunDirError
from bruno.files import atomic_output, check_writable_folder, existing_folder_above

__all__ = ["RUN_FORMAT", "InferenceRecord", "RunDir", "checkpoint_step", "inference_record", "latest_checkpoint", "reference_affine"]

RUN_FORMAT = 2  # 2: inference.npz and run_format in versions.json; 1: neither (read through the table)

_CHECKPOINT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")


def checkpoint_step(path: str) -> int:
    """The step a checkpoint was saved at (its number: ``.../ckpt-<step>``)."""
    return int(path.rsplit("-", 1)[1])


def latest_checkpoint(folder: str) -> Optional[str]:
    """The newest complete checkpoint in ``folder`` (``checkpoints`` or ``best`` of a run); None if there is none.

    TensorFlow names the latest in an index file (``checkpoint``) written after the checkpoint's own files, so a
    kill in between leaves a complete ``ckpt-<step>`` that the index does not name yet: the files themselves
    count, a checkpoint being complete once its ``.index`` and data files are there.
    """
    names = os.listdir(folder) if os.path.isdir(folder) else []
    steps = [int(found.group(1)) for found in map(_CHECKPOINT_INDEX.match, names)
             if found and os.path.exists(os.path.join(folder, f"ckpt-{found.group(1)}.data-00000-of-00001"))]
    named = _named_checkpoint(folder) if "checkpoint" in names else None
    if not steps or (named is not None and checkpoint_step(named) >= max(steps)):
        return named
    return os.path.join(folder, f"ckpt-{max(steps)}")


def _named_checkpoint(folder: str) -> Optional[str]:
    import tensorflow as tf  # only where a checkpoint index is there: RunDir itself loads no TensorFlow

    return tf.train.latest_checkpoint(folder)


class InferenceRecord(NamedTuple):
    """What reconstruction needs from the training data: the pose spacing in mm of every training volume
    (float64 [V]), the atlas, the training volumes' mean slice at each pose (float64 [N, H, W], 0..255), and the
    slab's voxel → world affine of the first training volume (float64 [4, 4]; the geometry a sample of the prior is
    written with; None in records written before it was stored)."""

    pose_spacing_mm: np.ndarray
    atlas: np.ndarray
    reference_affine: Optional[np.ndarray] = None

    @property
    def spacing_range(self) -> tuple[float, float]:
        return float(self.pose_spacing_mm.min()), float(self.pose_spacing_mm.max())


class RunDir:
    """The files of one run directory (module docstring): names, checks, reads and writes.

    Args:
        path: the folder (need not exist yet).
    """

    CONFIG, VERSIONS, INFERENCE, METRICS = "config.yaml", "versions.json", "inference.npz", "metrics.jsonl"
    CHECKPOINTS, BEST, TENSORBOARD = "checkpoints", "best", "tensorboard"
    POPULATION_STATE, POPULATION_SEARCH, LATENT_VOLUME = "population.npz", "population.json", "latent_volume.json"
    ESTIMATE, BLEND, SPREAD = "estimate.npz", "blend.json", "spread.json"
    TRAINING_FILES = (CONFIG, VERSIONS, INFERENCE, METRICS, CHECKPOINTS, BEST, TENSORBOARD, POPULATION_STATE, POPULATION_SEARCH,
                      ESTIMATE, BLEND, SPREAD)

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def file(self, name: str) -> str:
        """The path of the run file ``name`` (one of the class's names)."""
        return os.path.join(self.path, name)

    # ------------------------------------------------------------------------------------- reading
    def config(self) -> Config:
        """The resolved config saved in the run."""
        path = self.file(self.CONFIG)
        if not os.path.isfile(path):
            raise RunDirError(f"{self.path}: no {self.CONFIG}, not a run directory of scripts/train.py")
        with open(path, encoding="utf-8") as f:
            return parse_config(yaml.safe_load(f), path)

    def has_config(self) -> bool:
        return os.path.isfile(self.file(self.CONFIG))

    def format(self) -> int:
        """The run's format: ``run_format`` of ``versions.json``, 1 for runs written before it."""
        try:
            with open(self.file(self.VERSIONS), encoding="utf-8") as f:
                found = json.load(f).get("run_format", 1)
        except (OSError, ValueError, AttributeError):
            return 1
        if not isinstance(found, int) or not 1 <= found <= RUN_FORMAT:
            raise RunDirError(f"{self.file(self.VERSIONS)}: run_format {found!r}, expected 1..{RUN_FORMAT} "
                              "(a run of a newer mental-maps? update this one)")
        return found

    def latest_checkpoint(self, which: str = "latest") -> Optional[str]:
        """The newest complete checkpoint of ``checkpoints/`` (``latest``) or ``best/`` (``best``)."""
        return latest_checkpoint(self.file(self.BEST if which == "best" else self.CHECKPOINTS))

    def latest_step(self) -> Optional[int]:
        """The step of the latest checkpoint; None before the first one."""
        latest = self.latest_checkpoint()
        return None if latest is None else checkpoint_step(latest)

    def metrics(self) -> Iterator[dict[str, Any]]:
        """The records of ``metrics.jsonl``."""
        with open(self.file(self.METRICS), encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def inference(self) -> Optional[InferenceRecord]:
        """The stored :class:`InferenceRecord`; None for a run written before format 2.

        Raises:
            RunDirError: the file is unreadable, or holds arrays of other shapes or non-finite values.
        """
        path = self.file(self.INFERENCE)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                spacing, atlas = np.asarray(stored["pose_spacing_mm"], np.float64), np.asarray(stored["atlas"], np.float64)
                affine = np.asarray(stored["reference_affine"], np.float64) if "reference_affine" in stored.files else None
            if spacing.ndim != 1 or not len(spacing) or atlas.ndim != 3 or not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)
                                                                                and np.all(np.isfinite(atlas))):
                raise ValueError(f"pose_spacing_mm {spacing.shape}, atlas {atlas.shape}: expected finite spacings > 0 [V] "
                                 "and a finite atlas [N, H, W]")
            if affine is not None and (affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9):
                raise ValueError(f"reference_affine {affine.shape}: expected a finite, invertible 4 x 4 affine")
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            raise RunDirError(f"{path}: not a readable inference record ({type(err).__name__}: {err})") from None
        return InferenceRecord(spacing, atlas, affine)

    # ----------------------------------------------------------------------------- training's side
    def check_for_training(self, config: Config, resume: bool, overwrite: bool) -> None:
        """Everything :meth:`prepare` checks, writing nothing.

        A folder holds a run once it has any run file (``config.yaml``, ``metrics.jsonl``, ...): a run killed before
        its first checkpoint still has its log and config, and only ``overwrite`` replaces them.

        Raises:
            RunDirError: not writable; holds a run and neither ``resume`` nor ``overwrite``; both; ``resume``
                without a checkpoint, of a different experiment, or to a step the run has already passed (resuming at
                the step reached trains nothing but finishes the run: a population run makes its test-time state).
        """
        run_dir = self.path
        if resume and overwrite:
            raise RunDirError(f"{run_dir}: --resume and --overwrite together; pass one (continue the run, or delete it and start again)")
        reached = self.latest_step()
        if resume:
            if reached is None:
                raise RunDirError(f"{run_dir}: --resume, but there is no checkpoint to resume from")
            previous = yaml.safe_load(config_to_yaml(self.config()))
            here = yaml.safe_load(config_to_yaml(config))
            for key in ("max_steps", "choose_blend", "choose_spread"):  # where training stops, and steps after it
                previous.get("train", {}).pop(key, None)
                here["train"].pop(key)
            difference = _first_difference(previous, here)
            if difference:
                raise RunDirError(f"{run_dir}: holds a different experiment, {difference}; use another --run-dir")
            if config.train.max_steps < reached:
                raise RunDirError(f"{run_dir}: --resume to max_steps={config.train.max_steps}, but the run is already at step "
                                  f"{reached}; pass a larger --max-steps")
            return
        if not overwrite and reached is not None:
            raise RunDirError(f"{run_dir}: already holds a run (pass --resume to continue it or --overwrite to start again)")
        found = [name for name in self.TRAINING_FILES if os.path.exists(self.file(name))]
        if not overwrite and found:
            raise RunDirError(f"{run_dir}: holds a run that stopped before its first checkpoint ({found[0]}); "
                              "pass --overwrite to delete it and start again")
        if os.path.exists(run_dir) and not os.path.isdir(run_dir):
            raise RunDirError(f"{run_dir}: is a file, expected a run directory")
        try:
            existing = run_dir if os.path.isdir(run_dir) else existing_folder_above(run_dir)
        except OutputPathError as err:
            raise RunDirError(str(err)) from None
        if not os.access(existing, os.W_OK):
            raise RunDirError(f"{run_dir}: run directory is not writable" if existing == run_dir else
                              f"{run_dir}: cannot create the run directory ({existing} is not writable)")
        try:
            check_writable_folder(run_dir, existing)
        except OutputPathError as err:
            raise RunDirError(str(err)) from None

    def prepare(self, config: Config, resume: bool, overwrite: bool) -> None:
        """Check the folder (:meth:`check_for_training`); for a new run, replace what an earlier run wrote there
        (only its files: anything else stays) and write ``config.yaml`` and ``versions.json`` (:data:`RUN_FORMAT`
        and the packages that train it).

        Training calls it once the table, the model and the optimiser have been built, so a start that fails
        leaves no run directory behind.
        """
        self.check_for_training(config, resume, overwrite)
        if resume:
            return
        for name in self.TRAINING_FILES:
            path = self.file(name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"{self.path}: cannot create the run directory ({err.strerror})") from None
        with atomic_output(self.file(self.CONFIG)) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(config_to_yaml(config))
        with atomic_output(self.file(self.VERSIONS)) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump({"run_format": RUN_FORMAT, **_package_versions()}, f, indent=1)

    def write_inference(self, record: InferenceRecord) -> str:
        """Store (atomically, replacing an older one) what reconstruction needs from the training data."""
        path = self.file(self.INFERENCE)
        with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, pose_spacing_mm=np.asarray(record.pose_spacing_mm, np.float64),
                     atlas=np.asarray(record.atlas, np.float32),
                     **({} if record.reference_affine is None else {"reference_affine": np.asarray(record.reference_affine, np.float64)}))
        return path

    def write_estimate(self, estimate: ClassicalEstimate) -> str:
        """Store (atomically) the classical estimate a new patient's slices get (every train subject's PCA, float32,
        and the GP's ℓ, ρ), for a flow conditioned on it (``model.estimate.use``)."""
        model = estimate.model
        path = self.file(self.ESTIMATE)
        with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, mean=model.mean.astype(np.float32), directions=model.directions[:model.rank].astype(np.float32),
                     variances=model.variances[:model.rank], noise_variance=model.noise_variance,
                     length=estimate.length, rho=estimate.rho)
        return path

    def estimate(self) -> ClassicalEstimate:
        """The stored classical estimate (:meth:`write_estimate`).

        Raises:
            RunDirError: missing, unreadable, or of inconsistent shapes or non-finite values.
        """
        path = self.file(self.ESTIMATE)
        try:
            with np.load(path, allow_pickle=False) as stored:
                mean, directions = np.asarray(stored["mean"], np.float64), np.asarray(stored["directions"], np.float64)
                variances = np.asarray(stored["variances"], np.float64)
                noise, length, rho = (float(stored[key]) for key in ("noise_variance", "length", "rho"))
            if (mean.ndim != 3 or directions.shape != (len(variances), mean.size)
                    or not all(np.all(np.isfinite(a)) for a in (mean, directions, variances))):
                raise ValueError(f"mean {mean.shape}, directions {directions.shape}, variances {variances.shape}: "
                                 "expected [N, H, W], [r, N·H·W], [r], finite")
            return ClassicalEstimate(GaussianVolumeModel(mean, directions, variances, len(variances), noise), length, rho)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            raise RunDirError(f"{path}: not a readable classical estimate ({type(err).__name__}: {err})") from None

    def trim_metrics(self, step: int) -> None:
        """Keep the ``metrics.jsonl`` records up to ``step`` (those after it, written before a kill, come again as the
        resumed run retrains those steps), and drop a last line that a killed run left half-written."""
        path = self.file(self.METRICS)
        if not os.path.exists(path):
            return
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        kept = []
        for line in lines[:-1]:  # the part after the last newline is empty, or half a record
            try:
                if json.loads(line)["step"] > step:
                    break
            except (ValueError, KeyError, TypeError):
                break
            kept.append(line + b"\n")
        if len(kept) < len(lines) - 1 or lines[-1]:
            with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
                f.writelines(kept)


def reference_affine(run_dir: str, config: Config, progress: bool = True) -> np.ndarray:
    """The slab affine of the run's first training volume (float64 [4, 4]): from its inference record, or for a run
    written before the record held it, from its table (read, never made).

    Raises:
        RunDirError: an unreadable record; DataFileError: no affine in the record and no table.
    """
    record = RunDir(run_dir).inference()
    if record is not None and record.reference_affine is not None:
        return record.reference_affine
    table = load_slice_table(config, progress, build=False)
    return np.asarray(table.info(int(table.volumes_in("train")[0])).affine, np.float64)


def inference_record(table: SliceTable) -> InferenceRecord:
    """What reconstruction needs from a slice table's train split: each volume's pose spacing and the atlas."""
    first = table.info(int(table.volumes_in("train")[0]))
    return InferenceRecord(pose_spacings(table, "train"), population_mean(read_split(table, "train")), np.asarray(first.affine, np.float64))


def _package_versions() -> dict[str, str]:
    import h5py
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras as keras

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__,
            "tf_keras": keras.__version__, "numpy": np.__version__, "h5py": h5py.__version__}


def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix.rstrip('.')} ({a!r} there, {b!r} here)"
