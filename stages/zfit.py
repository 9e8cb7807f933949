"""Redshift-fit stage: shard + QuasarNET results in, per-fiber Z, ZERR, ZWARNING out.

The science is `qsopipe.stages.redshift_fit` (`fit_plate`); this module
registers it as the plate stage "zfit" (between quasarnet and mgii) and
gives it the thin `qsopipe zfit` CLI.
"""

from dataclasses import asdict

import click
import numpy as np

from qsopipe.pipeline.digests import sha256_of_file
from qsopipe.pipeline.stage import Stage, run_stage_on_plates, shard_plates
from qsopipe.stages.redshift_fit import FitSettings, fit_plate
from qsopipe.stages.redshift_templates import TEMPLATE_FILE


class ZFitStage(Stage):
    """shard + quasarnet -> zfit: the template redshift of every fiber QuasarNET calls a quasar."""

    name = "zfit"
    reads = ("shard", "quasarnet")
    writes = ("zfit",)

    def settings(self, config):
        return {"zfit": asdict(FitSettings()), "zfit_templates_sha256": sha256_of_file(TEMPLATE_FILE)}

    def run(self, inputs, config, loaded):
        return {"zfit": fit_plate(inputs["shard"], inputs["quasarnet"])}

    def counts(self, outputs):
        zwarning = outputs["zfit"].column("ZWARNING").to_numpy()
        return {"nfiber": len(zwarning), "nzfit": int(np.sum(zwarning == 0))}


STAGE = ZFitStage()


@click.command(name="zfit")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("--qn", "qn_results", required=True, type=click.Path(exists=True, file_okay=False),
              help="RESULTS directory holding quasarnet/qn-pppp-mmmmm.parquet.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="RESULTS directory; writes zfit/zfit-pppp-mmmmm.parquet.")
@click.option("--force", is_flag=True, help="Redo plates whose results are up to date.")
def command(shards, qn_results, out, force):
    """Fit the redshift of the quasars of every shard in SHARDS around their Z_QN."""
    plates = shard_plates(shards, qn_results, ("quasarnet",))
    roots = {"shard": shards, "quasarnet": qn_results, "zfit": out}
    if run_stage_on_plates(STAGE, plates, roots, {}, force):
        raise SystemExit(1)
