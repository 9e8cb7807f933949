"""Run configuration: YAML defaults, then a user YAML, then QSOPIPE_* variables, then options.

Every command that takes settings merges the same layers (`load_config`)
and checks every value once, before any work (`SETTINGS`): a wrong type, a
value out of range or an unknown key is one line naming it, and exit 2.
The defaults live in pipeline/config.yaml alone; the click options of
every command are made from `SETTINGS` (`config_options`).
"""

import functools
import math
import os
from importlib import resources

import click
import yaml
from click.core import ParameterSource

from qsopipe.pipeline import exit_status

ENV_PREFIX = "QSOPIPE_"


class ConfigError(click.ClickException):
    """A configuration value that cannot be used: one line 'Error: ...', exit status 2, before any work."""

    exit_code = exit_status.USAGE


def _fraction(value):
    return math.isfinite(value) and 0.0 <= value <= 1.0


def _positive(value):
    return value >= 1


def _non_negative(value):
    return value >= 0


#: key -> (type, whether null is allowed, check or None, what the check asks, option help)
SETTINGS = {
    "c_th": (float, False, _fraction, "in [0, 1]", "QuasarNET line-confidence threshold."),
    "n_th": (int, False, _positive, ">= 1", "Lines above c_th needed for a quasar."),
    "c_th_single": (float, False, _fraction, "in [0, 1]",
                    "Confidence a quasar that rests on one line above c_th needs."),
    "bal_th": (float, False, _fraction, "in [0, 1]", "BAL_FLAG_QN where a quasar's C_BAL_CIV exceeds this."),
    "bal_prob_th": (float, False, _fraction, "in [0, 1]",
                    "BAL_FLAG where a quasar's BAL_PROB exceeds this (BAL_FLAG_QN where BAL_PROB = -1)."),
    "mgii_threshold": (float, False, _fraction, "in [0, 1]",
                       "Fit doublets on sightlines with MGII_PROB >= this (0: every searched one)."),
    "qn_model": (str, True, None, "", "QuasarNET .keras file."),
    "bal_model": (str, True, None, "", "BAL CNN .keras file."),
    "mgii_model": (str, True, None, "", "MgII CNN .keras file."),
    "mgii_vetter": (str, True, None, "", "MgII candidate vetter .json file ('none': the doublet finder's rules)."),
    "batch_size": (int, False, _positive, ">= 1", "Fixed batch of the compiled forward passes."),
    "workers": (int, True, _positive, ">= 1", "Dask workers."),
    "tf_threads": (int, False, _non_negative, ">= 0", "TensorFlow intra-op threads per worker."),
    "memory_limit": (str, False, None, "", "Memory limit per Dask worker."),
    "keep_shards": (bool, False, None, "", "Also write each plate's shard to OUTDIR/shards."),
}

#: What a null default (pipeline/config.yaml) means, for the options' help.
NULL_DEFAULTS = {"qn_model": "the shipped weights", "bal_model": "the shipped weights",
                 "mgii_model": "the shipped weights", "mgii_vetter": "the shipped vetter", "workers": "one per core"}


def defaults():
    """The shipped defaults (pipeline/config.yaml) as a dict."""
    return yaml.safe_load(resources.files("qsopipe.pipeline").joinpath("config.yaml").read_text())


def check_value(key, value, origin):
    """`value` as the type of setting `key`; ConfigError naming key, value and origin if it cannot be."""
    kind, nullable, check, wanted, _ = SETTINGS[key]
    if value is None and nullable:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{key} = {value!r} (from {origin}): expected {kind.__name__}")
    if check is not None and not check(value):
        raise ConfigError(f"{key} = {value!r} (from {origin}): must be {wanted}")
    return value


def load_config(path=None, options=None, environ=None):
    """Merge and check the configuration layers; later layers win, None options are ignored.

    Environment values are parsed as YAML scalars, so QSOPIPE_N_TH=2 gives
    an int; variables named QSOPIPE_* that are not settings are left alone.
    Unknown keys in a file, and any value of the wrong type or out of range,
    raise ConfigError naming them and where they came from.
    """
    config = defaults()
    environ = os.environ if environ is None else environ
    layers = []
    if path:
        with open(path) as handle:
            try:
                layer = yaml.safe_load(handle) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not YAML ({err})") from None
        if not isinstance(layer, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        unknown = sorted(set(layer) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"unknown configuration key(s) in {path}: {', '.join(map(str, unknown))}")
        layers.append((f"file {path}", layer))
    env = {}
    for variable, text in environ.items():
        key = variable[len(ENV_PREFIX):].lower()
        if variable.startswith(ENV_PREFIX) and key in SETTINGS:
            try:
                env[key] = yaml.safe_load(text)
            except yaml.YAMLError:
                env[key] = text
    layers.append(("environment", env))
    layers.append(("options", {key: value for key, value in (options or {}).items() if value is not None}))
    for origin, layer in layers:
        for key, value in layer.items():
            config[key] = check_value(key, value, f"{origin} {ENV_PREFIX}{key.upper()}"
                                      if origin == "environment" else origin)
    return config


def config_options(*keys, aliases=None):
    """A decorator adding `--config FILE` and one option per setting in `keys` to a click command.

    The help shows config.yaml's default the way click shows every default;
    an option not given on the command line reaches the command as None, so
    that --config and QSOPIPE_* decide it (`load_config`).
    aliases : {key: extra option name}, e.g. {"qn_model": "--model"}.
    """
    shipped = defaults()
    aliases = aliases or {}

    def decorate(command):
        @functools.wraps(command)
        def given_options_only(**kwargs):
            ctx = click.get_current_context()
            for key in keys:
                if ctx.get_parameter_source(key) is not ParameterSource.COMMANDLINE:
                    kwargs[key] = None
            return command(**kwargs)

        decorated = given_options_only
        for key in reversed(keys):
            decorated = click.option(*_option_names(key, aliases), **_option_settings(key, shipped[key]))(decorated)
        return click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                            help="YAML file of settings (see pipeline/config.yaml).")(decorated)

    return decorate


def _option_names(key, aliases):
    """--the-key, its alias if any, and the parameter name `key`."""
    return [f"--{key.replace('_', '-')}", *([aliases[key]] if key in aliases else []), key]


def _option_settings(key, default):
    """click.option keyword arguments of setting `key` whose config.yaml value is `default`."""
    kind, _, _, _, help_text = SETTINGS[key]
    if kind is bool:
        return {"is_flag": True, "default": None, "help": help_text}
    if kind is str and key.endswith("_model"):
        kind = click.Path(exists=True, dir_okay=False)
    if default is None:
        return {"type": kind, "default": None, "show_default": NULL_DEFAULTS[key], "help": help_text}
    return {"type": kind, "default": default, "show_default": True, "help": help_text}
