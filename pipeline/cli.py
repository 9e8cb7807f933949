"""The `qsopipe` command group.

Subcommands are imported only when invoked, so `qsopipe --help` stays
instant and never imports TensorFlow. Each stage module keeps its science
functions apart from a thin click command named `command`; the group gives
every command the same -v/-q options and the list of exit statuses
(`exit_status`), and turns an unusable input or a full disk into one line.
"""

import logging
import sys

import click

from qsopipe.pipeline import __version__, exit_status
from qsopipe.pipeline.atomic import NoSpaceError
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.lazy_group import LazyGroup

#: name -> (module:attribute of the click command, one-line help)
COMMANDS = {
    "simulate": ("qsopipe.stages.simulate.command:command", "Simulate BOSS plates (spPlate files) with a truth table."),
    "preprocess": ("qsopipe.stages.preprocess:command", "Turn plates into Parquet shards (QuasarNET and MgII inputs)."),
    "quasarnet": ("qsopipe.stages.quasarnet:command", "Run QuasarNET on shards: class, line redshifts, BAL flag."),
    "zfit": ("qsopipe.stages.zfit:command", "Fit template redshifts (Z, ZERR, ZWARNING) around QuasarNET's."),
    "bal": ("qsopipe.stages.bal:command", "Run the CIV BAL CNN on quasars at their redshift Z: BAL_PROB, BAL_FLAG."),
    "mgii": ("qsopipe.stages.mgii:command", "Run the MgII absorber CNN on quasar sightlines; fit absorbers."),
    "catalog": ("qsopipe.stages.catalog:command", "Write the DR-style FITS catalog from stage results."),
    "evaluate": ("qsopipe.stages.evaluate:command", "Score a catalog against a DR12Q-style truth table."),
    "run": ("qsopipe.pipeline.run:command", "Run every stage plate by plate on Dask and write the catalog."),
    "train": ("qsopipe.models.train:command", "Train QuasarNET, the BAL CNN or the MgII CNN."),
    "import-weights": ("qsopipe.models.legacy:command", "Import published Keras-2 QuasarNET weights (.h5) as .keras."),
    "ensemble": ("qsopipe.models.ensemble:command", "Combine trained QuasarNETs into one model that averages them."),
}

#: -v/-q option name -> the log level it sets.
LOG_LEVELS = {"verbose": logging.DEBUG, "quiet": logging.WARNING}
#: ctx.meta key (shared by a command's contexts): a -v/-q flag set the log level.
LEVEL_GIVEN = "qsopipe.log_level_given"


def set_log_level(ctx, param, value):
    """Callback of -v/-q: set the root logger's level when the flag is given."""
    if value:
        logging.getLogger().setLevel(LOG_LEVELS[param.name])
        ctx.meta[LEVEL_GIVEN] = True


def log_level_options():
    """Fresh -v/--verbose and -q/--quiet options, taken before or after a subcommand's name."""
    return [click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=set_log_level,
                         help="Log debugging detail."),
            click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=set_log_level,
                         help="Log warnings and errors only.")]


def prepare_command(command):
    """Give `command` (and, for a group, its subcommands) -v/-q and the exit statuses in its help; once."""
    if any(param.name == "verbose" for param in command.params):
        return
    command.params.extend(log_level_options())
    command.epilog = exit_status.HELP
    if isinstance(command, LazyGroup):
        command.prepare = prepare_command


class QsopipeGroup(LazyGroup):
    """The top-level group: an input that cannot be used or a full disk, in any command, is one line naming
    the file and exit status 1 or 3, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as err:
            raise click.ClickException(str(err)) from err
        except NoSpaceError as err:
            raise exit_status.DiskFull(str(err)) from err


@click.group(cls=QsopipeGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qsopipe")
@click.pass_context
def cli(ctx):
    """qsopipe: SDSS/BOSS/eBOSS plates in, a DR-style quasar catalog out."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S",
                        stream=sys.stderr)
    if not ctx.meta.get(LEVEL_GIVEN):
        logging.getLogger().setLevel(logging.INFO)


prepare_command(cli)


def main():
    cli(prog_name="qsopipe")
