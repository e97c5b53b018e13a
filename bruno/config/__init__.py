"""Experiment configs: frozen dataclasses (:mod:`.schema`, :mod:`.model_sections`) loaded from YAML
(:mod:`.loader`: strict, one-line errors, ``base:`` to share sections between files)."""
from bruno.config.loader import config_to_yaml, data_to_yaml, load_config, override, parse_config, parse_data_section
from bruno.config.model_sections import CVAEConfig, EstimateConfig, FlowConfig, GQNConfig, ModelConfig, ProcessConfig
from bruno.config.schema import Config, DataConfig, PhantomConfig, SplitConfig, TrainConfig

__all__ = ["CVAEConfig", "Config", "EstimateConfig", "DataConfig", "FlowConfig", "GQNConfig", "ModelConfig", "PhantomConfig", "ProcessConfig",
           "SplitConfig", "TrainConfig",
           "config_to_yaml", "data_to_yaml", "load_config", "override", "parse_config", "parse_data_section"]
