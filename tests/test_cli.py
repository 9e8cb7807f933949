"""The command group: every subcommand's help works without importing TensorFlow; one CLI style; settings
checked once for every command; errors a user can meet are one line with their exit status (issue 23)."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from qsopipe.pipeline.cli import COMMANDS, cli
from qsopipe.pipeline.config import SETTINGS, defaults, load_config
from qsopipe.pipeline.layout import product_path

#: An option's default when it has none (click 8.2 and later mark it UNSET).
NO_DEFAULT = (None, getattr(click.core, "UNSET", None))


def test_help_of_every_command_imports_no_tensorflow():
    names = sorted(COMMANDS) + ["train quasarnet", "train mgii"]
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from qsopipe.pipeline.cli import cli\n"
        "for args in [[]] + [name.split() for name in sys.argv[1:]]:\n"
        "    result = CliRunner().invoke(cli, args + ['--help'])\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code, *names], check=True)


def all_commands():
    """{"name" or "group name": click command} of every qsopipe command, groups' subcommands included."""
    commands = {}
    for name in COMMANDS:
        command = cli.get_command(None, name)
        commands[name] = command
        for sub in getattr(command, "lazy_commands", {}):
            commands[f"{name} {sub}"] = command.get_command(None, sub)
    return commands


@pytest.fixture()
def inputs(tmp_path):
    """Folders where each command would find one plate: SPECTRA (an spPlate name), SHARDS and RESULTS."""
    (tmp_path / "spectra").mkdir()
    (tmp_path / "spectra" / "spPlate-7000-57000.fits").touch()
    for path in (product_path("shard", tmp_path / "shards", "7000-57000"),
                 product_path("quasarnet", tmp_path / "results", "7000-57000"),
                 product_path("zfit", tmp_path / "results", "7000-57000")):
        path.parent.mkdir(parents=True)
        path.touch()
    return tmp_path


def invoke(args, env=None):
    return CliRunner().invoke(cli, [str(arg) for arg in args], env=env)


def assert_one_line_error(result, exit_code):
    assert result.exit_code == exit_code, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output


@pytest.mark.parametrize("args, env", [
    (["run", "{spectra}", "--out", "{out}"], {"QSOPIPE_C_TH": "abc"}),
    (["run", "{spectra}", "--out", "{out}", "--workers", "-1"], {}),
    (["run", "{spectra}", "--out", "{out}", "--cluster", "lcoal"], {}),
    (["run", "{spectra}", "--out", "{out}", "--c-th", "1.5"], {}),
    (["quasarnet", "{shards}", "--out", "{out}"], {"QSOPIPE_N_TH": "0"}),
    (["mgii", "{shards}", "--qn", "{results}", "--out", "{out}"], {"QSOPIPE_MGII_THRESHOLD": "2"}),
], ids=["c_th-abc", "workers-negative", "cluster-typo", "c_th-range", "quasarnet-n_th", "mgii-threshold"])
def test_unusable_setting_is_one_line_and_exit_2_before_any_work(inputs, args, env):
    folders = {"spectra": inputs / "spectra", "shards": inputs / "shards", "results": inputs / "results",
               "out": inputs / "out"}
    result = invoke([arg.format(**folders) for arg in args], env=env)
    assert_one_line_error(result, 2)
    assert not (inputs / "out").exists()


def test_unrelated_qsopipe_variable_is_ignored():
    assert load_config(environ={"QSOPIPE_PYTHON": "/usr/bin/python3"}) == defaults()


@pytest.mark.parametrize("command, receiver", [
    (["quasarnet", "{shards}", "--out", "{out}"], "qsopipe.stages.quasarnet.run_stage_on_plates"),
    (["mgii", "{shards}", "--qn", "{results}", "--out", "{out}"], "qsopipe.stages.mgii.run_stage_on_plates"),
    (["run", "{spectra}", "--out", "{out}"], "qsopipe.pipeline.run.dask_client"),
], ids=["quasarnet", "mgii", "run"])
def test_config_file_and_environment_reach_every_command_with_settings(inputs, monkeypatch, command, receiver):
    """The configuration the command hands on (to its stage loop or Dask) has QSOPIPE_C_TH and --config's values."""
    received = []

    def receive(*args):
        received.append(next(arg for arg in args if isinstance(arg, dict) and "c_th" in arg))
        raise SystemExit(0)

    monkeypatch.setattr(receiver, receive)
    settings = inputs / "settings.yaml"
    settings.write_text("mgii_threshold: 0.3\n")
    folders = {"spectra": inputs / "spectra", "shards": inputs / "shards", "results": inputs / "results",
               "out": inputs / "out"}
    result = invoke([arg.format(**folders) for arg in command] + ["--config", settings], env={"QSOPIPE_C_TH": "0.99"})
    assert result.exit_code == 0, result.output
    assert (received[0]["c_th"], received[0]["mgii_threshold"]) == (0.99, 0.3)


@pytest.mark.parametrize("command", ["run", "preprocess"])
@pytest.mark.parametrize("where", ["empty", "missing"])
def test_nothing_found_is_one_line_and_exit_1(tmp_path, command, where):
    (tmp_path / "empty").mkdir()
    result = invoke([command, tmp_path / where, "--out", tmp_path / "out", "-q"])
    assert_one_line_error(result, 1)
    assert "no plate to process" in result.output and not (tmp_path / "out").exists()


def test_catalog_of_an_empty_folder_is_one_line_and_exit_1(tmp_path):
    result = invoke(["catalog", tmp_path, "--out", tmp_path / "catalog.fits"])
    assert_one_line_error(result, 1)
    assert "no quasarnet/qn-*.parquet results" in result.output


def test_every_command_has_one_style():
    """-v/-q after the name, a setting's option named after it, defaults shown by click, exit statuses in the help."""
    for name, command in all_commands().items():
        options = [param for param in command.params if isinstance(param, click.Option)]
        assert {"-v", "-q"} <= {opt for option in options for opt in option.opts}, name
        for option in options:
            if option.name in SETTINGS:
                assert option.opts[0] == f"--{option.name.replace('_', '-')}", (name, option.opts)
            assert "[" not in (option.help or ""), (name, option.opts)
            if option.default not in NO_DEFAULT and not option.is_flag:
                assert option.show_default, (name, option.opts)
        assert "Exit status: 0" in invoke([*name.split(), "--help"]).output, name
