"""The ``model:`` section: ``kind``, BRUNO's ``flow`` (sizes, upstream quirk switches) and ``process``
(exchangeable or pose-aware, its initial parameters), and the sub-sections of the paper's GQN and
C-VAE baselines.

Configs written before ``flow`` and ``process`` had sections (a flat ``model:`` with ``num_filters``,
``process: student_t``, ...) still load: :mod:`bruno.config.loader` moves each key of
:data:`LEGACY_MODEL_KEYS` into its section once, when the file is read. The flow's own
:class:`~bruno.flows.realnvp.FlowArchitecture` (named for behaviour: ``first_kernel_size``,
``normalize_init_output``) is built from ``flow`` in :mod:`bruno.models.bruno`, so :mod:`bruno.flows` does
not depend on configs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Optional, get_args

from bruno.errors import fail_config as _fail

__all__ = ["EXCHANGEABLE_KINDS", "LEGACY_MODEL_KEYS", "LEGACY_PROCESS_KEYS", "PROCESS_KINDS", "CVAEConfig", "EstimateConfig",
           "FlowConfig", "GQNConfig", "ModelConfig", "ProcessConfig", "ProcessKind", "process_kind_of_legacy"]


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
class FlowConfig:
    """``model.flow``: the conditional RealNVP's sizes and upstream quirk switches (SPEC §1).

    The defaults are the paper's flow (upstream ``m1_shapenet``: 3 scales, 64 filters, 6 residual
    blocks, 6 dense couplings of 256 units, a 32-d pose embedding).

    Attributes:
        num_scales: multi-scale levels S; ``data.image_size`` must be a multiple of 2^S.
        num_filters: width F of the conv s/t networks.
        num_residual_blocks: R per conv s/t network.
        num_dense_couplings: dense couplings after the conv part.
        dense_units: width U of the dense s/t networks (even).
        embedding_size: size of the shared pose embedding that conditions every coupling.
        upstream_first_conv_3x3: quirk Q1, the first conv of each s/t network is 3×3 (not 1×1).
        upstream_label_heads: quirk Q2, the pose projections of the s/t heads start orthogonal, not 0.
        upstream_init_passes_raw: quirk Q3, the init pass hands on un-normalised activations.
        upstream_logit_log_det: quirk Q4, omit the constant D·ln(1−α) from the logit log-det.
    """

    num_scales: int = 3
    num_filters: int = 64
    num_residual_blocks: int = 6
    num_dense_couplings: int = 6
    dense_units: int = 256
    embedding_size: int = 32
    upstream_first_conv_3x3: bool = True
    upstream_label_heads: bool = True
    upstream_init_passes_raw: bool = True
    upstream_logit_log_det: bool = False

    def __post_init__(self) -> None:
        for key in ("num_scales", "num_filters", "num_residual_blocks", "embedding_size"):
            if getattr(self, key) < 1:
                _fail(key, getattr(self, key), "an integer >= 1")
        if self.num_dense_couplings < 0:
            _fail("num_dense_couplings", self.num_dense_couplings, "an integer >= 0")
        if self.dense_units < 2 or self.dense_units % 2:
            _fail("dense_units", self.dense_units, "an even integer >= 2")


ProcessKind = Literal["student_t", "gaussian", "pose_student_t", "pose_gaussian", "latent_factor", "population"]
PROCESS_KINDS: tuple[str, ...] = get_args(ProcessKind)
"""Every ``model.process.kind``: the paper's exchangeable processes (SPEC §1), the pose-kernel process with
Student-t or Gaussian marginals (SPEC §8), the latent factor process (SPEC §9.3) and the population process
(SPEC §9.4). The last four have a pose kernel; :mod:`bruno.processes` maps each kind to its class."""
EXCHANGEABLE_KINDS = PROCESS_KINDS[:2]
LEGACY_PROCESS_KEYS = ("pose_kernel", "population")
"""Keys of ``model.process`` before the one ``kind`` (run format 1, configs before issue 35): the loader maps
``pose_kernel`` / ``population`` / ``latent_factors`` to ``kind`` and ``kernel`` once, when a config is read."""


@dataclass(frozen=True)
class ProcessConfig:
    """``model.process``: the process over the latents of a subject's slices (SPEC §2, §8, §9.3, §9.4).

    Attributes:
        kind: one of :data:`PROCESS_KINDS`: ``student_t`` (the paper), ``gaussian`` (upstream m1_shapenet),
            ``pose_student_t`` / ``pose_gaussian`` (our pose-aware process of SPEC §8, whose covariance decays
            with the distance between poses and whose prior mean is a learned latent atlas, one row per pose),
            ``latent_factor`` (SPEC §9.3: a rank-r subject code shared by every pose and latent dimension on top
            of the Gaussian pose kernel, initialised by a PCA of the training latents) or ``population``
            (SPEC §9.4: the subject code's loadings are the other training subjects' latents).
        variance_init, correlation_init, df_init: initial process parameters (1, 0.1, 1000; ν only for the
            Student-t kinds).
        kernel: the pose kernel, ``matern32`` or ``rbf`` (every kind but the two exchangeable ones).
        length_init: initial length scale ℓ of the pose kernel, in poses.
        length_min: lower bound of ℓ.
        kernel_nugget: per-slice white noise ε of the pose kernel, relative to the variance.
        latent_factors: r >= 1, the rank of the ``latent_factor`` kind's subject code.
        shrinkage_init: the ``population`` kind's initial shrinkage c of its loadings (> 0).
    """

    kind: ProcessKind = "student_t"
    variance_init: float = 1.0
    correlation_init: float = 0.1
    df_init: float = 1000.0
    kernel: Literal["matern32", "rbf"] = "matern32"
    length_init: float = 3.0
    length_min: float = 0.5
    kernel_nugget: float = 1e-3
    latent_factors: int = 8
    shrinkage_init: float = 0.5

    @property
    def has_pose_kernel(self) -> bool:
        """The process's covariance decays with the distance between poses (every kind but the paper's two)."""
        return self.kind not in EXCHANGEABLE_KINDS

    def __post_init__(self) -> None:
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
        if self.latent_factors < 1:
            _fail("latent_factors", self.latent_factors, "an integer >= 1")
        if self.shrinkage_init <= 0:
            _fail("shrinkage_init", self.shrinkage_init, "a number > 0")


def process_kind_of_legacy(process: dict[str, Any]) -> dict[str, Any]:
    """A ``model.process`` mapping written before the one ``kind`` (``pose_kernel``, ``latent_factors``,
    ``population`` beside ``kind: student_t | gaussian``) as the same process in today's keys; others as given.

    Raises:
        ConfigError: a combination the old loader refused too (a latent factor or population process without a
            pose kernel or with Student-t marginals, or both at once).
    """
    if not any(key in process for key in LEGACY_PROCESS_KEYS):
        return process
    mapped = {k: v for k, v in process.items() if k not in LEGACY_PROCESS_KEYS}
    kernel, population = process.get("pose_kernel"), process.get("population", False)
    factors, marginals = process.get("latent_factors", 0), process.get("kind", "student_t")
    if kernel is None:
        if population or factors:
            key = "population" if population else "latent_factors"
            _fail(f"model.process.{key}", process[key],
                  "false or 0 without a pose_kernel (old keys; today: kind: population or latent_factor)")
        mapped.pop("latent_factors", None)
        return mapped
    if (population or factors) and marginals != "gaussian" or population and factors:
        key = "population" if population else "latent_factors"
        _fail(f"model.process.{key}", process[key],
              "a pose_kernel with kind: gaussian and only one of latent_factors and population (old keys)")
    mapped["kernel"] = kernel
    mapped["kind"] = "population" if population else "latent_factor" if factors else f"pose_{marginals}"
    if not factors:
        mapped.pop("latent_factors", None)
    return mapped


@dataclass(frozen=True)
class EstimateConfig:
    """``model.estimate``: condition every coupling of BRUNO's flow on the classical estimate of its slice (SPEC §9.5):
    the PCA + GP mean of its pose from the sequence's contexts (the acquired slices at test time), cross-fitted over
    the train subjects in training (:mod:`bruno.baselines.crossfit`).

    Attributes:
        use: whether the flow is conditioned on it (false: the flow of SPEC §2).
        rank, noise_variance: the PCA's r and σ²; length, rho: the residual GP's ℓ and ρ. None (the default): the ones
            the PCA and PCA + GP mean images chose on the table's val split (``data/<table>.baselines.json``, searched
            on first use); the train command writes the numbers into the run's ``config.yaml``.
        folds: K of the cross-fitting (>= 2).
    """

    use: bool = False
    rank: Optional[int] = None
    noise_variance: Optional[float] = None
    length: Optional[float] = None
    rho: Optional[float] = None
    folds: int = 5

    def __post_init__(self) -> None:
        if self.rank is not None and self.rank < 1:
            _fail("rank", self.rank, "an integer >= 1")
        if self.noise_variance is not None and not 0 < self.noise_variance < math.inf:
            _fail("noise_variance", self.noise_variance, "a finite number > 0 (grey levels²)")
        if self.length is not None and not 0 < self.length < math.inf:
            _fail("length", self.length, "a finite number > 0 (poses)")
        if self.rho is not None and not 0 <= self.rho < 1:
            _fail("rho", self.rho, "a number in [0, 1)")
        if self.folds < 2:
            _fail("folds", self.folds, "an integer >= 2")

    @property
    def unset(self) -> list[str]:
        """The settings left to the table's classical search (None here), in declaration order."""
        return [key for key in ("rank", "noise_variance", "length", "rho") if getattr(self, key) is None]


@dataclass(frozen=True)
class ModelConfig:
    """The ``model:`` section: which model, its flow and process (BRUNO) or its own sub-section (baselines).

    Attributes:
        kind: ``bruno`` (this model), or one of the paper's baselines trained by the same pipeline:
            ``gqn`` (section ``gqn``) or ``cvae`` (section ``cvae``); ``flow`` and ``process`` then do nothing.
        flow: the conditional RealNVP (:class:`FlowConfig`).
        process: the process over its latents (:class:`ProcessConfig`).
        keep_contexts: reconstructions return the acquired slices unchanged at their own poses
            (instead of the model's samples there).
        estimate: whether BRUNO's flow is conditioned on the classical estimate (:class:`EstimateConfig`).
        gqn, cvae: the baselines' sizes.
    """

    kind: Literal["bruno", "gqn", "cvae"] = "bruno"
    flow: FlowConfig = field(default_factory=FlowConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    keep_contexts: bool = False
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    gqn: GQNConfig = field(default_factory=GQNConfig)
    cvae: CVAEConfig = field(default_factory=CVAEConfig)

    @property
    def flow_is_used(self) -> bool:
        """Whether ``flow`` and ``process`` describe the model (BRUNO), rather than a baseline's own section."""
        return self.kind not in ("gqn", "cvae")


# Keys of the flat ``model:`` section written before the flow and process had sections of their own
# (every run's stored config.yaml and format-1 slice tables up to then): where each one lives now.
LEGACY_MODEL_KEYS = {**{f.name: ("flow", f.name) for f in fields(FlowConfig)},
                     **{f.name: ("process", f.name) for f in fields(ProcessConfig) if f.name not in ("kind", "kernel")},
                     **{key: ("process", key) for key in LEGACY_PROCESS_KEYS}}
