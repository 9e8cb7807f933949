"""Run configuration: YAML defaults, then a user YAML, then QSOPIPE_* variables, then options."""

import os
from importlib import resources

import yaml


def defaults():
    """The shipped defaults (pipeline/config.yaml) as a dict."""
    return yaml.safe_load(resources.files("qsopipe.pipeline").joinpath("config.yaml").read_text())


def load_config(path=None, options=None, environ=None):
    """Merge the configuration layers; later layers win, None options are ignored.

    Environment values are parsed as YAML scalars, so QSOPIPE_N_TH=2 gives an int.
    Unknown keys in a file or the environment raise ValueError naming them.
    """
    config = defaults()
    environ = os.environ if environ is None else environ
    layers = []
    if path:
        with open(path) as handle:
            layers.append(("file " + str(path), yaml.safe_load(handle) or {}))
    env = {key[len("QSOPIPE_"):].lower(): yaml.safe_load(value)
           for key, value in environ.items() if key.startswith("QSOPIPE_")}
    layers.append(("environment", env))
    layers.append(("options", {k: v for k, v in (options or {}).items() if v is not None}))
    for origin, layer in layers:
        unknown = sorted(set(layer) - set(config))
        if unknown:
            raise ValueError(f"unknown configuration key(s) from {origin}: {', '.join(unknown)}")
        config.update(layer)
    return config
