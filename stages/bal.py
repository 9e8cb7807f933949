"""BAL stage: the CIV BAL CNN (`qsopipe.models.bal`) on every quasar's CIV region, at its redshift Z.

Per fiber (bal/bal-pppp-mmmmm.parquet):

- BAL_PROB, the CNN's probability that the quasar has BI_CIV > 0; -1 where
  the CNN did not run: not a classified quasar, PREP_FLAG set, Z not
  finite or <= 0, or fewer than MIN_BI_PIXELS input pixels with data at
  the BI velocities (Z below about 1.7, where they leave the 3800 A grid);
- BAL_FLAG, the catalog's BAL decision: on a quasar, BAL_PROB > bal_prob_th
  where the CNN ran and BAL_FLAG_QN where it did not (BAL_PROB = -1); 0
  on every other fiber.

`bal_probability` and `bal_decision` are the science (arrays in, arrays
out); `command` is the thin `qsopipe bal` CLI. TensorFlow is imported only
when a model is loaded.
"""

from pathlib import Path

import click
import numpy as np
import pyarrow as pa

from qsopipe.models.store import file_sha256
from qsopipe.pipeline.config import config_options, load_config
from qsopipe.pipeline.parquet_io import list_column, with_metadata
from qsopipe.pipeline.stage import Stage, run_stage_on_plates, shard_plates
from qsopipe.stages.quasarnet import is_classified


def bal_probability(flux, ivar, z_qso, candidate, predict):
    """BAL_PROB of spectra on the MgII grid.

    Parameters
    ----------
    flux, ivar : ndarray (n, 3841), on the MgII grid (flux units, inverse flux units squared)
    z_qso : ndarray (n,), emission redshift the window is cut at
    candidate : bool (n,), fibers to classify (quasars with clean preprocessing)
    predict : callable, network input (m, INPUT_NPIX, 2) -> P(BI_CIV > 0) float32 (m,)

    Returns
    -------
    probability : float32 (n,), -1 where not a candidate, Z not finite or <= 0, or the window unusable
    """
    from qsopipe.models.bal import spectra_input

    z_qso = np.asarray(z_qso, np.float64)
    rows = np.flatnonzero(np.asarray(candidate, bool) & np.isfinite(z_qso) & (z_qso > 0))
    probability = np.full(len(z_qso), -1.0, np.float32)
    x, usable = spectra_input(np.asarray(flux)[rows], np.asarray(ivar)[rows], z_qso[rows])
    if usable.any():
        probability[rows[usable]] = predict(x[usable])
    return probability


def bal_decision(is_qso, probability, bal_flag_qn, threshold):
    """BAL_FLAG, int16 (n,), of fibers: see the module docstring.

    is_qso : bool (n,); probability : BAL_PROB (n,), -1 where the CNN did not run;
    bal_flag_qn : BAL_FLAG_QN (n,); threshold : bal_prob_th.
    """
    is_qso = np.asarray(is_qso, bool)
    probability = np.asarray(probability)
    flag = is_qso & np.where(probability >= 0, probability > threshold, np.asarray(bal_flag_qn) == 1)
    return flag.astype(np.int16)


def process_plate(shard_table, qn_table, zfit_table, predict, threshold):
    """The BAL table of one plate: PLATE, MJD, FIBERID, BAL_PROB, BAL_FLAG, in shard row order.

    shard_table : a preprocess shard (FIBERID, PREP_FLAG, MGII_FLUX, MGII_IVAR); qn_table : its QuasarNET
    results (FIBERID, IS_QSO_QN, QN_FLAG, BAL_FLAG_QN); zfit_table : its redshift-fit results (FIBERID, Z),
    both in the shard's row order; predict, threshold : as `bal_probability`, `bal_decision`.
    """
    fiberid = shard_table.column("FIBERID").to_numpy()
    for name, table in (("QuasarNET", qn_table), ("redshift-fit", zfit_table)):
        if not np.array_equal(fiberid, table.column("FIBERID").to_numpy()):
            raise ValueError(f"shard and {name} results do not list the same fibers in the same order")
    is_qso = (qn_table.column("IS_QSO_QN").to_numpy() == 1) & is_classified(qn_table.column("QN_FLAG").to_numpy())
    candidate = is_qso & (shard_table.column("PREP_FLAG").to_numpy() == 0)
    probability = bal_probability(list_column(shard_table, "MGII_FLUX"), list_column(shard_table, "MGII_IVAR"),
                                  zfit_table.column("Z").to_numpy(), candidate, predict)
    flag = bal_decision(is_qso, probability, qn_table.column("BAL_FLAG_QN").to_numpy(), threshold)
    return pa.table({
        "PLATE": shard_table.column("PLATE").cast(pa.int32()), "MJD": shard_table.column("MJD").cast(pa.int32()),
        "FIBERID": pa.array(fiberid.astype(np.int32), pa.int32()),
        "BAL_PROB": pa.array(probability, pa.float32()),
        "BAL_FLAG": pa.array(flag, pa.int16()),
    })


def model_path(config):
    """The BAL CNN file of a run configuration: its bal_model, or the shipped weights."""
    from qsopipe.models.store import default_weights

    return Path(config.get("bal_model") or default_weights("bal"))


class BALStage(Stage):
    """shard + quasarnet + zfit -> bal: BAL_PROB and the catalog's BAL_FLAG of every fiber."""

    name = "bal"
    reads = ("shard", "quasarnet", "zfit")
    writes = ("bal",)

    def settings(self, config):
        return {"bal_model_sha256": file_sha256(str(model_path(config))),
                "bal_prob_th": float(config["bal_prob_th"])}

    def load(self, config):
        from qsopipe.models.bal import make_predictor
        from qsopipe.models.store import load_model

        return make_predictor(load_model(str(model_path(config))))

    def run(self, inputs, config, predict):
        table = process_plate(inputs["shard"], inputs["quasarnet"], inputs["zfit"], predict, config["bal_prob_th"])
        path = model_path(config)
        return {"bal": with_metadata(table, {"bal_model": str(path), "bal_model_sha256": file_sha256(str(path)),
                                             "bal_prob_th": float(config["bal_prob_th"])})}

    def counts(self, outputs):
        table = outputs["bal"]
        return {"nfiber": table.num_rows, "nbal": int(np.sum(table.column("BAL_FLAG").to_numpy() == 1))}


STAGE = BALStage()


@click.command(name="bal")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("--qn", "qn_results", required=True, type=click.Path(exists=True, file_okay=False),
              help="RESULTS directory holding quasarnet/qn-pppp-mmmmm.parquet and zfit/zfit-pppp-mmmmm.parquet.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="RESULTS directory; writes bal/bal-pppp-mmmmm.parquet.")
@config_options("bal_model", "bal_prob_th", aliases={"bal_model": "--model"})
@click.option("--force", is_flag=True, help="Redo plates whose results are up to date.")
def command(shards, qn_results, out, force, **options):
    """Run the CIV BAL CNN on the quasars of every shard in SHARDS at their redshift Z."""
    config = load_config(options.pop("config_file"), options)
    plates = shard_plates(shards, qn_results, ("quasarnet", "zfit"))
    roots = {"shard": shards, "quasarnet": qn_results, "zfit": qn_results, "bal": out}
    if run_stage_on_plates(STAGE, plates, roots, config, force):
        raise SystemExit(1)
