"""Experiment configs: frozen dataclasses loaded from one YAML file.

One YAML file per experiment (``config_rnn/<dataset>[_<variant>].yaml``). Each top-level key is a
section that maps onto one frozen dataclass; this module reads YAML with ``yaml.safe_load`` in
exactly one place (:func:`load_config`) and checks every key:

* an unknown key is an error that lists the valid keys of its section;
* a value of the wrong type, or out of range, is an error naming the file, the dotted key, the
  value and what was expected, e.g.
  ``config_rnn/adni.yaml: data.slab_fraction=1.5, expected a number in (0, 1]``.

Sizes that follow from others are derived, never configured. Later parts of the project add their
own sections (flow, process, training) beside ``data``.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import yaml

from bruno.errors import ConfigError

__all__ = [
    "Config",
    "data_to_yaml",
    "parse_data_section",
    "CVAEConfig",
    "DataConfig",
    "GQNConfig",
    "ModelConfig",
    "PhantomConfig",
    "SplitConfig",
    "TrainConfig",
    "config_to_yaml",
    "load_config",
    "override",
    "parse_config",
]


def _fail(key: str, value: Any, expected: str) -> typing.NoReturn:
    raise ConfigError(f"{key}={value!r}, expected {expected}")


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
class GQNConfig:
    """The GQN baseline (SPEC §5.5; ogroth/tf-gqn's defaults, sizes configurable so it runs at 32×32).

    Attributes:
        representation: ``tower`` (r_i is H/4 × W/4 × C) or ``pool`` (its spatial mean, broadcast back).
        representation_channels: C of r_i (the tower's halves use C/2).
        hidden_channels: ConvLSTM state channels of the generator and the inference core.
        latent_channels: z channels per DRAW step.
        canvas_channels: channels of the full-resolution canvas.
        num_steps: L, DRAW steps.
        kernel_size: of the ConvLSTM gates and the prior/posterior heads.
        sigma_start, sigma_end, sigma_anneal_steps: the pixel σ falls linearly from start to end over
            that many steps, then stays (on [0, 1] intensities).
    """

    representation: Literal["tower", "pool"] = "tower"
    representation_channels: int = 256
    hidden_channels: int = 256
    latent_channels: int = 64
    canvas_channels: int = 256
    num_steps: int = 8
    kernel_size: int = 5
    sigma_start: float = 2.0
    sigma_end: float = 0.7
    sigma_anneal_steps: int = 200_000

    def __post_init__(self) -> None:
        for key in ("hidden_channels", "latent_channels", "canvas_channels", "num_steps", "sigma_anneal_steps"):
            if getattr(self, key) < 1:
                _fail(key, getattr(self, key), "an integer >= 1")
        if self.representation_channels < 2 or self.representation_channels % 2:
            _fail("representation_channels", self.representation_channels, "an even integer >= 2")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            _fail("kernel_size", self.kernel_size, "an odd integer >= 1")
        if not 0.0 < self.sigma_end <= self.sigma_start:
            _fail("sigma_end", self.sigma_end, f"a number in (0, sigma_start = {self.sigma_start}]")


@dataclass(frozen=True)
class CVAEConfig:
    """The paper's conditional VAE baseline (SPEC §5.5).

    Attributes:
        representation_channels: C of the GQN tower encoder whose context outputs are averaged.
        filters: conv widths of the 4 resolutions of the encoder/generator (2 convs 3×3 each).
        latent_size: size of z (N(0, I) prior).
        sigma_init: initial pixel σ of the Gaussian likelihood (learned, one scalar, on [0, 1] intensities).
    """

    representation_channels: int = 256
    filters: tuple[int, int, int, int] = (32, 64, 128, 256)
    latent_size: int = 128
    sigma_init: float = 0.1

    def __post_init__(self) -> None:
        if self.representation_channels < 2 or self.representation_channels % 2:
            _fail("representation_channels", self.representation_channels, "an even integer >= 2")
        if min(self.filters) < 1:
            _fail("filters", list(self.filters), "4 integers >= 1")
        if self.latent_size < 1:
            _fail("latent_size", self.latent_size, "an integer >= 1")
        if not 0.0 < self.sigma_init < 1.0:
            _fail("sigma_init", self.sigma_init, "a number in (0, 1)")


@dataclass(frozen=True)
class ModelConfig:
    """Conditional BRUNO: the flow's sizes, the exchangeable process, and upstream quirks (SPEC §1, §2).

    The defaults are the paper's model (upstream ``m1_shapenet``: 3 scales, 64 filters, 6 residual
    blocks, 6 dense couplings of 256 units, a 32-d pose embedding, Student-t process).

    Attributes:
        kind: ``bruno`` (this model), or one of the paper's baselines trained by the same pipeline:
            ``gqn`` (section ``gqn``) or ``cvae`` (section ``cvae``); the flow/process keys then do nothing.
        num_scales: multi-scale levels S; ``data.image_size`` must be a multiple of 2^S.
        num_filters: width F of the conv s/t networks.
        num_residual_blocks: R per conv s/t network.
        num_dense_couplings: dense couplings after the conv part.
        dense_units: width U of the dense s/t networks (even).
        embedding_size: size of the shared pose embedding.
        process: ``student_t`` (the paper) or ``gaussian`` (upstream m1_shapenet).
        variance_init, correlation_init, df_init: initial process parameters (1, 0.1, 1000).
        upstream_first_conv_3x3: quirk Q1, the first conv of each s/t network is 3×3 (not 1×1).
        upstream_label_heads: quirk Q2, the pose projections of the s/t heads start orthogonal, not 0.
        upstream_init_passes_raw: quirk Q3, the init pass hands on un-normalised activations.
        upstream_logit_log_det: quirk Q4, omit the constant D·ln(1−α) from the logit log-det.
        pose_kernel: None (the paper's exchangeable process) or ``matern32``/``rbf``: our pose-aware
            process of SPEC §8, whose covariance decays with the distance between poses and whose
            prior mean is a learned latent atlas (one row per pose).
        length_init: initial length scale ℓ of the pose kernel, in poses.
        length_min: lower bound of ℓ.
        kernel_nugget: per-slice white noise ε of the pose kernel, relative to the variance.
        latent_factors: 0, or r >= 1: the latent factor process of SPEC §9.3 (a rank-r subject code
            shared by every pose and latent dimension on top of the pose kernel; needs ``pose_kernel``
            and ``process: gaussian``), initialised by a PCA of the training latents.
        keep_contexts: reconstructions return the acquired slices unchanged at their own poses
            (instead of the model's samples there).
    """

    kind: Literal["bruno", "gqn", "cvae"] = "bruno"
    num_scales: int = 3
    num_filters: int = 64
    num_residual_blocks: int = 6
    num_dense_couplings: int = 6
    dense_units: int = 256
    embedding_size: int = 32
    process: Literal["student_t", "gaussian"] = "student_t"
    variance_init: float = 1.0
    correlation_init: float = 0.1
    df_init: float = 1000.0
    upstream_first_conv_3x3: bool = True
    upstream_label_heads: bool = True
    upstream_init_passes_raw: bool = True
    upstream_logit_log_det: bool = False
    pose_kernel: Optional[Literal["matern32", "rbf"]] = None
    length_init: float = 3.0
    length_min: float = 0.5
    kernel_nugget: float = 1e-3
    latent_factors: int = 0
    keep_contexts: bool = False
    gqn: GQNConfig = field(default_factory=GQNConfig)
    cvae: CVAEConfig = field(default_factory=CVAEConfig)

    def __post_init__(self) -> None:
        for key in ("num_scales", "num_filters", "num_residual_blocks", "embedding_size"):
            if getattr(self, key) < 1:
                _fail(key, getattr(self, key), "an integer >= 1")
        if self.num_dense_couplings < 0:
            _fail("num_dense_couplings", self.num_dense_couplings, "an integer >= 0")
        if self.dense_units < 2 or self.dense_units % 2:
            _fail("dense_units", self.dense_units, "an even integer >= 2")
        if self.variance_init <= 0:
            _fail("variance_init", self.variance_init, "a number > 0")
        if not 0.0 < self.correlation_init < 1.0:
            _fail("correlation_init", self.correlation_init, "a number in (0, 1)")
        if self.df_init <= 2.0:
            _fail("df_init", self.df_init, "a number > 2 (the variance must exist)")
        if self.length_min <= 0:
            _fail("length_min", self.length_min, "a number > 0")
        if self.length_init <= self.length_min:
            _fail("length_init", self.length_init, f"a number > length_min = {self.length_min}")
        if self.kernel_nugget < 0:
            _fail("kernel_nugget", self.kernel_nugget, "a number >= 0")
        if self.latent_factors < 0:
            _fail("latent_factors", self.latent_factors, "an integer >= 0")
        if self.latent_factors and (self.pose_kernel is None or self.process != "gaussian"):
            _fail("latent_factors", self.latent_factors, "0 unless pose_kernel is set and process is 'gaussian'")


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
        factor = 2 ** self.model.num_scales
        if self.model.kind == "bruno" and self.data.image_size % factor:  # the baselines need a multiple of 8, as data does
            _fail("data.image_size", self.data.image_size, f"a multiple of 2^model.num_scales = {factor}")
        if self.train.seq_len > self.data.num_poses:
            _fail("train.seq_len", self.train.seq_len, f"at most data.num_poses = {self.data.num_poses} (distinct slices)")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(inner[0]) + " or null"
    if origin is tuple:
        args = typing.get_args(tp)
        return f"a list of {len(args)} {_type_name(args[0]).split(' ', 1)[1]}s"
    return str(tp)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (ints to floats, lists to tuples)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(key, value, f"a mapping with keys {sorted(f.name for f in dataclasses.fields(tp))}")
        return _build(tp, value, key + ".")
    if origin is typing.Union:
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(key, value, _type_name(tp))
        return value
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            _fail(key, value, f"a mapping of {_type_name(key_type).split(' ', 1)[1]}s to {_type_name(value_type).split(' ', 1)[1]}s")
        return {_coerce(key_type, k, key): _coerce(value_type, v, key) for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            _fail(key, value, _type_name(tp))
        return tuple(_coerce(a, v, key) for a, v in zip(args, value))
    if tp is bool:
        if not isinstance(value, bool):
            _fail(key, value, _type_name(tp))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, _type_name(tp))
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, _type_name(tp))
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(key, value, _type_name(tp))
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _build(cls: Any, mapping: dict[str, Any], prefix: str, lenient: bool = False) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if lenient:  # keys this version does not know (written by a newer one, or since renamed) are dropped
        mapping = {k: v for k, v in mapping.items() if k in names}
    for key in mapping:
        if key not in names:
            where = prefix.rstrip(".") or "top level"
            raise ConfigError(
                f"unknown key {prefix}{key!s} ({where}); valid keys: {', '.join(names)}"
            )
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in mapping.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}") from None


def parse_config(mapping: Any, source: str = "<config>") -> Config:
    """Build a :class:`Config` from an already-parsed mapping (e.g. the YAML text of an HDF5 file).

    Raises:
        ConfigError: with ``source`` at the start of the one-line message.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(mapping).__name__}")
    try:
        return _build(Config, mapping, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one experiment YAML file.

    Args:
        path: the YAML file.

    Returns:
        The frozen :class:`Config`.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation; the message names the
            file, the key, the value and what was expected.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            mapping = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from None
    except yaml.YAMLError as err:
        detail = str(err).replace("\n", " ")
        raise ConfigError(f"{path}: not valid YAML ({detail})") from None
    if mapping is None:  # an empty file, or only comments: surely not meant as "all defaults"
        raise ConfigError(f"{path}: is empty, expected a mapping with data, model and train sections")
    return parse_config(mapping, path)


def override(config: Config, section: str, **values: Any) -> Config:
    """A copy of ``config`` with some keys of one section replaced (e.g. from the command line).

    Values are checked exactly as if they had been in the YAML file.

    Raises:
        ConfigError: an unknown section or key, or a bad value (named as ``section.key``).
    """
    if section not in {f.name for f in dataclasses.fields(config)}:
        raise ConfigError(f"unknown config section {section!r}")
    current = dataclasses.asdict(getattr(config, section))
    current.update(values)
    hints = typing.get_type_hints(Config)
    try:
        updated = _coerce(hints[section], current, section)
    except ConfigError as err:
        raise ConfigError(f"command line: {err}") from None
    return dataclasses.replace(config, **{section: updated})


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_data_section(mapping: Any, source: str) -> DataConfig:
    """The ``data`` section stored in a slice table, read leniently: unknown top-level keys of the
    section are ignored (its values are still checked), so tables outlive renamed config keys.

    Raises:
        ConfigError: with ``source`` at the start of the one-line message.
    """
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping (the data section), got {type(mapping).__name__}")
    try:
        return _build(DataConfig, mapping, "data.", lenient=True)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def data_to_yaml(data: DataConfig) -> str:
    """The ``data`` section as YAML text; :func:`parse_data_section` of it gives ``data`` back."""
    return yaml.safe_dump(_plain(dataclasses.asdict(data)), sort_keys=False)


def config_to_yaml(config: Config) -> str:
    """The fully resolved config as YAML text; :func:`parse_config` of it gives ``config`` back."""
    return yaml.safe_dump(_plain(dataclasses.asdict(config)), sort_keys=False)
