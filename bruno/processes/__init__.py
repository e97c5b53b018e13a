"""Latent processes over the slices of one subject: the paper's exchangeable Student-t/Gaussian
processes (:mod:`.exchangeable`, SPEC §1), our pose-aware generalisation (:mod:`.pose_kernel`, SPEC §8)
and its latent factor extension (:mod:`.latent_factor`, SPEC §9.3)."""
from bruno.processes.exchangeable import (
    DF_MIN,
    ExchangeableProcess,
    GaussianProcess,
    Predictive,
    ProcessState,
    StudentTProcess,
    make_process,
    predictive_distribution,
    sequential_log_prob,
)
from bruno.processes.latent_factor import FactorPredictive, LatentFactorProcess
from bruno.processes.pose_kernel import KERNELS, PoseKernelProcess

__all__ = [
    "DF_MIN",
    "KERNELS",
    "ExchangeableProcess",
    "FactorPredictive",
    "GaussianProcess",
    "LatentFactorProcess",
    "PoseKernelProcess",
    "Predictive",
    "ProcessState",
    "StudentTProcess",
    "make_process",
    "predictive_distribution",
    "sequential_log_prob",
]
