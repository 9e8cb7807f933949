"""A click group whose subcommands are imported only when invoked."""

import importlib

import click


class LazyGroup(click.Group):
    """A click group built from a table {name: ("module:attribute", one-line help)}.

    Listing and help use the table alone, so `--help` imports no subcommand
    (and so no TensorFlow); a subcommand's module is imported when it runs.
    `prepare`, when set, is called on each subcommand as it is looked up
    (the `qsopipe` group gives every command its shared options this way).
    """

    def __init__(self, *args, lazy_commands, section="Commands", prepare=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands
        self.section = section
        self.prepare = prepare

    def list_commands(self, ctx):
        return sorted(self.lazy_commands)

    def get_command(self, ctx, name):
        if name not in self.lazy_commands:
            return None
        module_name, attribute = self.lazy_commands[name][0].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if self.prepare is not None:
            self.prepare(command)
        return command

    def format_commands(self, ctx, formatter):
        with formatter.section(self.section):
            formatter.write_dl([(name, self.lazy_commands[name][1]) for name in self.list_commands(ctx)])
