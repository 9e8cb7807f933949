"""QuasarNET inference stage: shards in, per-plate classification results out.

`classify_spectra` is the science (arrays in, columns out); `process_shard`
turns one shard table into one result table; `command` is the thin
`qsopipe quasarnet` CLI.
"""

import enum
import logging
from pathlib import Path

import click
import numpy as np
import pyarrow as pa

from qsopipe.models.boxes import BAL_INDEX, N_EMISSION, decode_finders
from qsopipe.pipeline.config import config_options, load_config
from qsopipe.pipeline.constants import QN_FINDERS
from qsopipe.pipeline.parquet_io import list_column, read_metadata, with_metadata
from qsopipe.pipeline.stage import Stage, run_stage_on_plates, shard_plates
from qsopipe.pipeline.plate import FIBER_COLUMNS
from qsopipe.stages.catalog_columns import LINE_NAMES
from qsopipe.stages.decision import bal_flag, best_redshift, classify, count_lines, single_line
from qsopipe.stages.preprocess import PrepFlag

log = logging.getLogger(__name__)


class QNFlag(enum.IntFlag):
    """QN_FLAG bits: the `unclassified` ones say why a fiber was not classified; SINGLE_LINE marks a
    quasar that rests on one line. 0 = classified, and not a single-line quasar."""

    UNUSABLE_INPUT = 1     #: PREP_FLAG has an unusable bit (no data, zero rms, too few bins)
    NONFINITE_OUTPUT = 2   #: the network returned NaN or inf
    SINGLE_LINE = 4        #: a quasar with one line above C_TH (NLINES_QN = 1): the paper's candidate for inspection

    @classmethod
    def unclassified(cls):
        """Bits that mean QuasarNET did not classify the fiber; SINGLE_LINE is not one of them."""
        return cls.UNUSABLE_INPUT | cls.NONFINITE_OUTPUT


def is_classified(qn_flag):
    """Whether QuasarNET classified each fiber: no `QNFlag.unclassified` bit in QN_FLAG. int (n,) -> bool (n,)."""
    return (np.asarray(qn_flag) & int(QNFlag.unclassified())) == 0


def classify_spectra(x, prep_flag, forward, c_th, n_th, bal_th, c_th_single):
    """Classify preprocessed spectra with QuasarNET.

    Parameters
    ----------
    x : float32 (n, 443) QuasarNET inputs.
    prep_flag : int (n,) PREP_FLAG.
    forward : callable x -> {"confidence": (n, 7, 13), "offset": (n, 7, 13)}.
    c_th, n_th, c_th_single : decision rule: quasar if >= n_th lines have
        C > c_th, and, if only one has, its C > c_th_single.
    bal_th : BAL_FLAG_QN = 1 for quasars with C_BAL_CIV > bal_th.

    Returns
    -------
    dict of numpy columns (n,): C_<LINE>, Z_<LINE> (float32), C_BAL_CIV,
    Z_BAL_CIV (float32), Z_QN (float64), NLINES_QN (int16: lines with
    C > c_th), IS_QSO_QN, BAL_FLAG_QN (int16), QN_FLAG (int32; SINGLE_LINE
    on quasars with NLINES_QN = 1). Unclassified rows: C = 0, Z = -1,
    NLINES_QN = 0, IS_QSO_QN = BAL_FLAG_QN = 0.
    """
    n = len(x)
    usable = (np.asarray(prep_flag) & int(PrepFlag.unusable())) == 0
    confidence = np.zeros((n, N_EMISSION + 1))
    redshift = np.full((n, N_EMISSION + 1), -1.0)
    if usable.any():
        out = forward(x[usable])
        confidence[usable], redshift[usable] = decode_finders(out["confidence"], out["offset"])
    finite = np.all(np.isfinite(confidence) & np.isfinite(redshift), axis=1)
    flag = np.where(usable, 0, QNFlag.UNUSABLE_INPUT) | np.where(finite, 0, QNFlag.NONFINITE_OUTPUT)
    classified = is_classified(flag)
    confidence[~classified] = 0.0
    redshift[~classified] = -1.0
    c_lines, z_lines = confidence[:, :N_EMISSION], redshift[:, :N_EMISSION]
    nlines = np.where(classified, count_lines(c_lines, c_th), 0).astype(np.int16)
    is_qso = classified & classify(c_lines, c_th, n_th, c_th_single)
    flag |= np.where(single_line(is_qso, nlines), QNFlag.SINGLE_LINE, 0)
    columns = {}
    for k, name in enumerate(LINE_NAMES):
        columns[f"C_{name}"] = c_lines[:, k].astype(np.float32)
    for k, name in enumerate(LINE_NAMES):
        columns[f"Z_{name}"] = z_lines[:, k].astype(np.float32)
    columns["C_BAL_CIV"] = confidence[:, BAL_INDEX].astype(np.float32)
    columns["Z_BAL_CIV"] = redshift[:, BAL_INDEX].astype(np.float32)
    columns["Z_QN"] = np.where(classified, best_redshift(c_lines, z_lines), -1.0)
    columns["NLINES_QN"] = nlines
    columns["IS_QSO_QN"] = is_qso.astype(np.int16)
    columns["BAL_FLAG_QN"] = bal_flag(is_qso, confidence[:, BAL_INDEX], bal_th).astype(np.int16)
    columns["QN_FLAG"] = flag.astype(np.int32)
    return columns


def process_shard(shard, forward, model_path, model_sha256, c_th, n_th, bal_th, c_th_single):
    """The QuasarNET result table of one shard table (same rows, same order)."""
    x = list_column(shard, "QN_FLUX")
    prep_flag = shard.column("PREP_FLAG").to_numpy()
    columns = {name: shard.column(name) for name in (*FIBER_COLUMNS, "PREP_FLAG")}
    columns.update({name: pa.array(values) for name, values in
                    classify_spectra(x, prep_flag, forward, c_th, n_th, bal_th, c_th_single).items()})
    shard_meta = read_metadata(shard.schema)
    return with_metadata(pa.table(columns), {
        "plate": shard_meta.get("plate"), "mjd": shard_meta.get("mjd"),
        "sources": shard_meta.get("sources", []), "skipped": shard_meta.get("skipped", {}),
        "c_th": c_th, "n_th": n_th, "c_th_single": c_th_single, "bal_th": bal_th,
        "qn_model": str(model_path), "qn_model_sha256": model_sha256,
        "qn_lines": [[name, wave] for name, wave in QN_FINDERS],
        "qn_flags": {flag.name: int(flag.value) for flag in QNFlag},
    })


def model_path(config):
    """The QuasarNET model file of a run configuration: its qn_model, or the shipped weights."""
    from qsopipe.models.store import default_weights

    return Path(config.get("qn_model") or default_weights("quasarnet"))


def make_forward(model_path, batch_size=1024):
    """A forward function for `classify_spectra`, loading the model once per process."""
    from qsopipe.models.quasarnet import predict
    from qsopipe.models.store import load_model

    model = load_model(str(model_path))
    return lambda x: predict(model, x, batch=batch_size)


class QuasarNetStage(Stage):
    """shard -> quasarnet: class, line confidences and redshifts, BAL flag of every fiber."""

    name = "quasarnet"
    version = 2  # 2: NLINES_QN and the QN_FLAG bit SINGLE_LINE
    reads = ("shard",)
    writes = ("quasarnet",)

    def settings(self, config):
        from qsopipe.models.store import file_sha256

        return {"qn_model_sha256": file_sha256(str(model_path(config))),
                "c_th": config["c_th"], "n_th": config["n_th"], "c_th_single": config["c_th_single"],
                "bal_th": config["bal_th"]}

    def load(self, config):
        return make_forward(model_path(config), config["batch_size"])

    def run(self, inputs, config, forward):
        settings = self.settings(config)
        return {"quasarnet": process_shard(inputs["shard"], forward, model_path(config), settings["qn_model_sha256"],
                                          config["c_th"], config["n_th"], config["bal_th"], config["c_th_single"])}

    def counts(self, outputs):
        table = outputs["quasarnet"]
        return {"nfiber": table.num_rows, "nqso": int(np.sum(table.column("IS_QSO_QN").to_numpy())),
                "skipped": read_metadata(table.schema).get("skipped", {})}


STAGE = QuasarNetStage()


@click.command(name="quasarnet")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "results", required=True, type=click.Path(file_okay=False), help="Results directory.")
@config_options("qn_model", "c_th", "n_th", "c_th_single", "bal_th", "batch_size", aliases={"qn_model": "--model"})
@click.option("--force", is_flag=True, help="Redo plates whose results are up to date.")
def command(shards, results, force, **options):
    """Classify every shard under SHARDS; write RESULTS/quasarnet/qn-pppp-mmmmm.parquet per plate."""
    config = load_config(options.pop("config_file"), options)
    plates = shard_plates(shards)
    if run_stage_on_plates(STAGE, plates, {"shard": shards, "quasarnet": results}, config, force):
        raise SystemExit(1)
