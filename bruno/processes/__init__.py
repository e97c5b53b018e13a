"""Latent processes over the slices of one subject, one interface (:class:`~bruno.processes.base.Process`):
the paper's exchangeable Student-t/Gaussian processes (:mod:`.exchangeable`, SPEC §1), our pose-aware
generalisation (:mod:`.pose_kernel`, SPEC §8) and its latent factor extension (:mod:`.latent_factor`, SPEC §9.3) and population process (:mod:`.population`,
SPEC §9.4)."""
from collections.abc import Callable

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
    "PROCESSES",
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
    "predictive_distribution",
    "process_class",
    "process_from_config",
    "sequential_log_prob",
]


def _student_t(c: ProcessConfig, num_dims: int, num_poses: int) -> Process:
    return StudentTProcess(num_dims, c.variance_init, c.correlation_init, c.df_init, name="student_t_process")


def _gaussian(c: ProcessConfig, num_dims: int, num_poses: int) -> Process:
    return GaussianProcess(num_dims, c.variance_init, c.correlation_init, name="gaussian_process")


def _pose_kernel(student: bool) -> Callable[[ProcessConfig, int, int], Process]:
    def build(c: ProcessConfig, num_dims: int, num_poses: int) -> Process:
        return PoseKernelProcess(num_dims, num_poses, c.kernel, student, c.variance_init, c.correlation_init, c.df_init,
                                 c.length_init, c.length_min, c.kernel_nugget, name="pose_kernel_process")
    return build


def _latent_factor(c: ProcessConfig, num_dims: int, num_poses: int) -> Process:
    return LatentFactorProcess(num_dims, num_poses, c.latent_factors, c.kernel, c.variance_init, c.correlation_init,
                               c.length_init, c.length_min, c.kernel_nugget, name="latent_factor_process")


def _population(c: ProcessConfig, num_dims: int, num_poses: int) -> Process:
    return PopulationProcess(num_dims, num_poses, c.kernel, c.variance_init, c.correlation_init, c.length_init,
                             c.length_min, c.kernel_nugget, c.shrinkage_init, name="population_process")


PROCESSES: dict[str, tuple[type[Process], Callable[[ProcessConfig, int, int], Process]]] = {
    "student_t": (StudentTProcess, _student_t),
    "gaussian": (GaussianProcess, _gaussian),
    "pose_student_t": (PoseKernelProcess, _pose_kernel(student=True)),
    "pose_gaussian": (PoseKernelProcess, _pose_kernel(student=False)),
    "latent_factor": (LatentFactorProcess, _latent_factor),
    "population": (PopulationProcess, _population),
}
"""The process registry: each ``model.process.kind`` (:data:`bruno.config.model_sections.PROCESS_KINDS`) → its
class (what it can do, before it is built) and how to build it from the config section."""


def process_class(config: ProcessConfig) -> type[Process]:
    """The class of the process a ``model.process`` section asks for (what it can do, before it is built)."""
    return PROCESSES[config.kind][0]


def process_from_config(config: ProcessConfig, num_dims: int, num_poses: int) -> Process:
    """The process a ``model.process`` section asks for (its ``kind``, from :data:`PROCESSES`), over
    D = ``num_dims`` latents and N = ``num_poses`` poses."""
    return PROCESSES[config.kind][1](config, num_dims, num_poses)
