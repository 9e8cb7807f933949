"""`qsopipe train`: one subcommand per network, each imported only when run.

`TRAINERS` maps a subcommand name to the "module:attribute" of its click
command and a one-line help. Importing this module imports neither
TensorFlow nor any trainer, so `qsopipe train --help` stays instant.
"""

import click

from qsopipe.pipeline.lazy_group import LazyGroup

#: subcommand -> (module:attribute of its click command, one-line help)
TRAINERS = {
    "quasarnet": ("qsopipe.models.train_quasarnet:command",
                  "Train QuasarNET on simulated or DR12Q-labelled spectra."),
    "mgii": ("qsopipe.models.train_mgii:command",
             "Train the MgII absorber CNN on simulated quasar sightlines."),
    "bal": ("qsopipe.models.train_bal:command", "Train the CIV BAL classifier on simulated quasars."),
    "mgii-vetter": ("qsopipe.models.train_mgii_vetter:command",
                    "Train the MgII candidate vetter on simulated doublet-finder candidates."),
}


@click.group("train", cls=LazyGroup, lazy_commands=TRAINERS, section="Networks")
def command():
    """Train one of qsopipe's networks (writes a .keras model, checkpoints and history)."""
