"""The `qsopipe` command group.

Subcommands are imported only when invoked, so `qsopipe --help` stays
instant and never imports TensorFlow. Each stage module keeps its science
functions apart from a thin click command named `command`.
"""

import logging
import sys

import click

from qsopipe.pipeline import __version__
from qsopipe.pipeline.lazy_group import LazyGroup

#: name -> (module:attribute of the click command, one-line help)
COMMANDS = {
    "simulate": ("qsopipe.stages.simulate.command:command", "Simulate BOSS plates (spPlate files) with a truth table."),
    "preprocess": ("qsopipe.stages.preprocess:command", "Turn plates into Parquet shards (QuasarNET and MgII inputs)."),
    "quasarnet": ("qsopipe.stages.quasarnet:command", "Run QuasarNET on shards: class, line redshifts, BAL flag."),
    "zfit": ("qsopipe.stages.zfit:command", "Fit template redshifts (Z, ZERR, ZWARNING) around QuasarNET's."),
    "mgii": ("qsopipe.stages.mgii:command", "Run the MgII absorber CNN on quasar sightlines; fit absorbers."),
    "catalog": ("qsopipe.stages.catalog:command", "Write the DR-style FITS catalog from stage results."),
    "evaluate": ("qsopipe.stages.evaluate:command", "Score a catalog against a DR12Q-style truth table."),
    "run": ("qsopipe.pipeline.run:command", "Run every stage plate by plate on Dask and write the catalog."),
    "train": ("qsopipe.models.train:command", "Train QuasarNET or the MgII CNN."),
    "import-weights": ("qsopipe.models.legacy:command", "Import published Keras-2 QuasarNET weights (.h5) as .keras."),
    "ensemble": ("qsopipe.models.ensemble:command", "Combine trained QuasarNETs into one model that averages them."),
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qsopipe")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
def cli(verbose):
    """qsopipe: SDSS/BOSS/eBOSS plates in, a DR-style quasar catalog out."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )


def main():
    cli(prog_name="qsopipe")
