"""The ``data:`` and ``train:`` sections and the experiment (:class:`Config`): frozen dataclasses whose
``__post_init__`` checks each value (ranges, relations between keys). Sizes that follow from others
are derived, never configured. The ``model:`` section is in :mod:`bruno.config.model_sections`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Optional

from bruno.config.model_sections import ModelConfig
from bruno.errors import fail_config as _fail

__all__ = ["Config", "DataConfig", "PhantomConfig", "SplitConfig", "TrainConfig"]


@dataclass(frozen=True)
class SplitConfig:
    """How volumes are assigned to the train/val/test splits.

    Assignment is by subject (all volumes of one subject land in one split), shuffled with ``seed``.
    The three fractions must sum to 1; ``train`` must be positive.
    """

    train: float = 0.7
    val: float = 0.15
    test: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("train", "val", "test"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                _fail(key, value, "a fraction in [0, 1]")
        if self.train <= 0.0:
            _fail("train", self.train, "a fraction > 0 (the model needs training volumes)")
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            _fail("train+val+test", round(total, 6), "fractions that sum to 1")


@dataclass(frozen=True)
class PhantomConfig:
    """The built-in synthetic head population (:mod:`bruno.data.phantom`).

    ``size`` is the side of the cubic volume in voxels (at ``spacing_mm``), ``num_subjects`` the
    population size and ``seed`` makes the population reproducible.
    """

    num_subjects: int = 64
    size: int = 64
    spacing_mm: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_subjects < 1:
            _fail("num_subjects", self.num_subjects, "an integer >= 1")
        if self.size < 16:
            _fail("size", self.size, "an integer >= 16 (voxels per side)")
        if self.spacing_mm <= 0:
            _fail("spacing_mm", self.spacing_mm, "a positive voxel size in mm")


@dataclass(frozen=True)
class DataConfig:
    """From volumes to the HDF5 slice-pose table (SPEC §5.2, §7).

    Attributes:
        source: ``"nifti"`` (the user's files, see ``input``) or ``"phantom"`` (built-in data).
        input: a folder of ``.nii``/``.nii.gz`` files, a glob pattern, or one file. Relative paths
            are taken from the working directory. May be left unset and given on the command line.
        subject_pattern: optional regular expression searched in the file name; its first group
            (or the whole match) is the subject id. Default: the file name without extension.
        slab_fraction: the middle fraction φ of the axial extent kept, φ ∈ (0, 1].
        slab_reference: ``"volume"`` takes the middle of the whole field of view (the paper);
            ``"foreground"`` takes the middle of the axial extent of the foreground (voxels above
            10 % of the intensity range), which aligns subjects scanned with different coverage.
        num_poses: N, the number of slice positions the slab is resampled to (one-hot length).
        image_size: H = W of each slice in pixels; a multiple of 8 (three flow scales).
        intensity: ``"percentile"`` clips each volume to its own percentiles ``intensity_range``;
            ``"window"`` clips to the fixed values ``intensity_range`` (e.g. a CT HU window).
            Either way the clipped range maps linearly to [0, 255] and is rounded to uint8.
        intensity_range: (low, high) percentiles in [0, 100], or window bounds.
        split: subject-level train/val/test split.
        output: path of the HDF5 file written by preprocessing.
        phantom: settings of the built-in phantom population (used when ``source == "phantom"``).
    """

    source: Literal["nifti", "phantom"] = "nifti"
    input: Optional[str] = None
    subject_pattern: Optional[str] = None
    slab_fraction: float = 0.75
    slab_reference: Literal["volume", "foreground"] = "volume"
    num_poses: int = 64
    image_size: int = 64
    intensity: Literal["percentile", "window"] = "percentile"
    intensity_range: tuple[float, float] = (0.5, 99.5)
    split: SplitConfig = field(default_factory=SplitConfig)
    output: str = "data/dataset.h5"
    phantom: PhantomConfig = field(default_factory=PhantomConfig)

    def __post_init__(self) -> None:
        if not 0.0 < self.slab_fraction <= 1.0:
            _fail("slab_fraction", self.slab_fraction, "a number in (0, 1]")
        if self.num_poses < 2:
            _fail("num_poses", self.num_poses, "an integer >= 2")
        if self.image_size < 8 or self.image_size % 8:
            _fail("image_size", self.image_size, "a positive multiple of 8")
        low, high = self.intensity_range
        if not low < high:
            _fail("intensity_range", list(self.intensity_range), "[low, high] with low < high")
        if self.intensity == "percentile" and not (0.0 <= low and high <= 100.0):
            _fail("intensity_range", list(self.intensity_range), "percentiles within [0, 100]")
        if self.source == "phantom" and self.input is not None:
            _fail("input", self.input, "null when data.source is 'phantom' (set source: nifti to read files)")
        if self.subject_pattern is not None:
            try:
                re.compile(self.subject_pattern)
            except re.error as err:
                _fail("subject_pattern", self.subject_pattern, f"a regular expression ({err})")
        if not self.output.endswith((".h5", ".hdf5")):
            _fail("output", self.output, "a path ending in .h5 or .hdf5")


@dataclass(frozen=True)
class TrainConfig:
    """Training (SPEC §3, §5.1).

    Attributes:
        batch_size: B, sequences per step (split across GPUs when several are used).
        seq_len: T, slices per sequence (the paper: 9).
        num_context: n_c, the first n_c slices of a sequence are contexts (the paper: 8); 0 trains
            the unconditional BRUNO chain.
        num_context_min: None (every step uses ``num_context``) or the smallest n_c: each step then
            draws n_c uniformly from [num_context_min, num_context], so poses far from every context
            are in the loss too (validation always uses ``num_context``).
        optimizer: ``rmsprop`` (TF1 semantics: accumulator starting at ones, ε = 1e-10, decay 0.9)
            or ``adam`` (β1 = 0.9, β2 = 0.999, ε = 1e-8).
        learning_rate: initial learning rate.
        learning_rate_decay: multiplicative decay per step; the rate at step t is lr·decay^(t+1).
        process_grad_schedule: {step: scale}; the gradients of the process parameters are scaled by
            the value of the largest step key <= the current step (upstream {0: 0, 500: 0.5, 1000: 1}).
        max_steps: the last training step; step 0 is the data-dependent init (no update).
        validate_every: steps between validation NLL evaluations (on ``num_val_batches`` fixed batches).
        num_val_batches: size of the fixed validation set, in batches.
        checkpoint_every: steps between checkpoints (one is also written at the end).
        log_every: steps between ``metrics.jsonl``/TensorBoard training records.
        process_learning_rate_scale: the process parameters learn at this multiple of the learning rate.
        seed: seed of the weights and of the data stream (``--seed`` overrides it).
        init_from: None, or a run directory (relative to the working directory) with the same flow
            architecture and slice table: step 0 copies its best checkpoint's flow, pose embedding and
            shared process parameters instead of the data-dependent init (fine-tuning a trained flow).
        jit_compile: compile the training step with XLA.
        mixed_precision: None (float32), ``float16`` or ``bfloat16``: the s/t networks and the pose
            embedding compute in that precision on GPUs (log-dets, process and loss stay float32;
            float16 with dynamic loss scaling). Refused where no GPU is visible; BRUNO models only.
        choose_blend: once training ends, choose on the val split by SSIM the weight w(k) of the mean image that a BRUNO
            flow conditioned on the classical estimate decodes, against that estimate (:mod:`bruno.reconstruction.blend`);
            off: w = 1. After training, like ``choose_spread``, and before it: τ is chosen for the blended samples.
        choose_spread: once training ends, choose the temperature τ(k) of BRUNO's predictive on the val split by
            CRPS (:mod:`bruno.reconstruction.spread`); off: τ = 1. Not part of the training itself, so a finished
            run may be resumed with it switched on.
    """

    batch_size: int = 8
    seq_len: int = 9
    num_context: int = 8
    num_context_min: Optional[int] = None
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    learning_rate: float = 1e-3
    learning_rate_decay: float = 0.999995
    process_grad_schedule: dict[int, float] = field(default_factory=lambda: {0: 0.0, 500: 0.5, 1000: 1.0})
    process_learning_rate_scale: float = 1.0
    max_steps: int = 200_000
    validate_every: int = 1000
    num_val_batches: int = 8
    checkpoint_every: int = 5000
    log_every: int = 100
    seed: int = 0
    init_from: Optional[str] = None
    jit_compile: bool = False
    mixed_precision: Optional[Literal["float16", "bfloat16"]] = None
    choose_blend: bool = False
    choose_spread: bool = False

    def __post_init__(self) -> None:
        for key in ("batch_size", "seq_len", "max_steps", "validate_every", "num_val_batches", "checkpoint_every", "log_every"):
            if getattr(self, key) < 1:
                _fail(key, getattr(self, key), "an integer >= 1")
        if not 0 <= self.num_context < self.seq_len:
            _fail("num_context", self.num_context, f"an integer in [0, seq_len) = [0, {self.seq_len})")
        if self.learning_rate <= 0:
            _fail("learning_rate", self.learning_rate, "a number > 0")
        if not 0.0 < self.learning_rate_decay <= 1.0:
            _fail("learning_rate_decay", self.learning_rate_decay, "a number in (0, 1]")
        if 0 not in self.process_grad_schedule or any(k < 0 or v < 0 for k, v in self.process_grad_schedule.items()):
            _fail("process_grad_schedule", self.process_grad_schedule, "a mapping {step >= 0: scale >= 0} with a step 0")
        if self.num_context_min is not None and not 0 <= self.num_context_min <= self.num_context:
            _fail("num_context_min", self.num_context_min, f"an integer in [0, num_context = {self.num_context}]")
        if self.process_learning_rate_scale <= 0:
            _fail("process_learning_rate_scale", self.process_learning_rate_scale, "a number > 0")


@dataclass(frozen=True)
class Config:
    """One experiment: every section of its YAML file."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        factor = 2 ** self.model.flow.num_scales
        if self.model.flow_is_used and self.data.image_size % factor:  # the baselines need a multiple of 8, as data does
            _fail("data.image_size", self.data.image_size, f"a multiple of 2^model.flow.num_scales = {factor}")
        if self.train.seq_len > self.data.num_poses:
            _fail("train.seq_len", self.train.seq_len, f"at most data.num_poses = {self.data.num_poses} (distinct slices)")
