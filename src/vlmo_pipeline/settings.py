"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # parameters.yml plus one parameters_<pipeline>.yml per pipeline
    "config_patterns": {"parameters": ["parameters*", "parameters*/**", "**/parameters*"]},
    # A run environment (conf/paper, conf/local) overrides base key by key, nested sections included, so
    # conf/paper holds only what differs from the demo; the default ("destructive") would replace whole sections.
    "merge_strategy": {"parameters": "soft"},
}
