"""`qsopipe ensemble`: combine trained QuasarNETs into one model that averages their finders.

The combined model (`qsopipe.models.quasarnet.build_ensemble`) has a
QuasarNET's input and outputs, so `qsopipe quasarnet` and `qsopipe run`
take it like any other; its forward pass costs the sum of its members'.
"""

import click


@click.command(name="ensemble")
@click.argument("members", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Combined model, NAME.keras.")
def command(members, out):
    """Write OUT: one QuasarNET whose finders average those of MEMBERS (two or more .keras files)."""
    if len(members) < 2:
        raise click.UsageError("give at least two member models")
    if not out.endswith(".keras"):
        raise click.BadParameter("the output name must end in .keras", param_hint="--out")
    from qsopipe.models.quasarnet import build_ensemble
    from qsopipe.models.store import file_sha256, load_model
    from qsopipe.models.training_files import save_model

    save_model(build_ensemble([load_model(path) for path in members]), out)
    for path in members:
        click.echo(f"member {path} sha256 {file_sha256(path)}")
    click.echo(f"wrote {out} sha256 {file_sha256(out)}")
