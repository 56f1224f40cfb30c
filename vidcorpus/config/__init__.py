"""Typed build configuration: one section per stage (this package's modules), assembled into
`BuildConfig` and loaded from a YAML recipe plus `--set key=value` overrides."""

from vidcorpus.config.build import BuildConfig, ConfigError, config_to_dict, load_config

__all__ = ["BuildConfig", "ConfigError", "config_to_dict", "load_config"]
