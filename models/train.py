"""`qsopipe train`: one subcommand per network, each imported only when run.

`TRAINERS` maps a subcommand name to the "module:attribute" of its click
command and a one-line help. Importing this module imports neither
TensorFlow nor any trainer, so `qsopipe train --help` stays instant.
"""

import importlib

import click

#: subcommand -> (module:attribute of its click command, one-line help)
TRAINERS = {
    "quasarnet": ("qsopipe.models.train_quasarnet:command",
                  "Train QuasarNET on simulated or DR12Q-labelled spectra."),
    "mgii": ("qsopipe.models.train_mgii:command",
             "Train the MgII absorber CNN on simulated quasar sightlines."),
}


class LazyTrainerGroup(click.Group):
    """A click group whose trainers are imported on first use."""

    def list_commands(self, ctx):
        return sorted(TRAINERS)

    def get_command(self, ctx, name):
        if name not in TRAINERS:
            return None
        module_name, attribute = TRAINERS[name][0].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx, formatter):
        with formatter.section("Networks"):
            formatter.write_dl([(name, TRAINERS[name][1]) for name in self.list_commands(ctx)])


@click.group("train", cls=LazyTrainerGroup)
def command():
    """Train one of qsopipe's networks (writes a .keras model, checkpoints and history)."""
