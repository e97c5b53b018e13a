"""Latent processes over the slices of one subject, one interface (:class:`~bruno.processes.base.Process`):
the paper's exchangeable Student-t/Gaussian processes (:mod:`.exchangeable`, SPEC §1), our pose-aware
generalisation (:mod:`.pose_kernel`, SPEC §8) and its latent factor extension (:mod:`.latent_factor`, SPEC §9.3) and population process (:mod:`.population`,
SPEC §9.4)."""
from bruno.config import ProcessConfig
from bruno.processes.base import DF_MIN, Process
from bruno.processes.exchangeable import (
    ExchangeableProcess,
    GaussianProcess,
    Predictive,
    ProcessState,
    StudentTProcess,
    predictive_distribution,
    sequential_log_prob,
)
from bruno.processes.latent_factor import FactorPredictive, LatentFactorProcess
from bruno.processes.population import PopulationProcess
from bruno.processes.pose_kernel import KERNELS, PoseKernelProcess

__all__ = [
    "DF_MIN",
    "KERNELS",
    "ExchangeableProcess",
    "FactorPredictive",
    "GaussianProcess",
    "LatentFactorProcess",
    "PopulationProcess",
    "PoseKernelProcess",
    "Predictive",
    "Process",
    "ProcessState",
    "StudentTProcess",
    "process_class",
    "process_from_config",
    "predictive_distribution",
    "sequential_log_prob",
]


def process_class(config: ProcessConfig) -> type[Process]:
    """The class of the process a ``model.process`` section asks for (what it can do, before it is built)."""
    if config.pose_kernel is None:
        return StudentTProcess if config.kind == "student_t" else GaussianProcess
    return PopulationProcess if config.population else LatentFactorProcess if config.latent_factors else PoseKernelProcess


def process_from_config(config: ProcessConfig, num_dims: int, num_poses: int) -> Process:
    """The process a ``model.process`` config section asks for: exchangeable (no ``pose_kernel``), pose-kernel,
    latent factor (``latent_factors``) or population (``population``), over D = ``num_dims`` latents and N = ``num_poses`` poses."""
    if config.pose_kernel is None:
        if config.kind == "student_t":
            return StudentTProcess(num_dims, config.variance_init, config.correlation_init, config.df_init, name="student_t_process")
        return GaussianProcess(num_dims, config.variance_init, config.correlation_init, name="gaussian_process")
    if config.population:
        return PopulationProcess(num_dims, num_poses, config.pose_kernel, config.variance_init, config.correlation_init,
                                 config.length_init, config.length_min, config.kernel_nugget, config.shrinkage_init,
                                 name="population_process")
    if config.latent_factors:
        return LatentFactorProcess(num_dims, num_poses, config.latent_factors, config.pose_kernel, config.variance_init,
                                   config.correlation_init, config.length_init, config.length_min, config.kernel_nugget,
                                   name="latent_factor_process")
    return PoseKernelProcess(num_dims, num_poses, config.pose_kernel, config.kind == "student_t", config.variance_init,
                             config.correlation_init, config.df_init, config.length_init, config.length_min,
                             config.kernel_nugget, name="pose_kernel_process")
