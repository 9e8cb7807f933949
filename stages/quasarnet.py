"""QuasarNET inference stage: shards in, per-plate classification results out.

`classify_spectra` is the science (arrays in, columns out); `process_shard`
turns one shard table into one result table; `command` is the thin
`qsopipe quasarnet` CLI.
"""

import enum
import logging
import time
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qsopipe.models.boxes import BAL_INDEX, N_EMISSION, decode_finders
from qsopipe.pipeline.atomic import is_up_to_date
from qsopipe.pipeline.constants import QN_FINDERS
from qsopipe.pipeline.parquet_io import list_column, read_metadata, with_metadata, write_parquet, written_with
from qsopipe.pipeline.plate import FIBER_COLUMNS
from qsopipe.stages.catalog_columns import LINE_NAMES
from qsopipe.stages.decision import DEFAULT_BAL_TH, DEFAULT_C_TH, DEFAULT_N_TH, bal_flag, best_redshift, classify
from qsopipe.stages.preprocess import PrepFlag

log = logging.getLogger(__name__)


class QNFlag(enum.IntFlag):
    """QN_FLAG bits: why a fiber was not classified (0 = classified)."""

    UNUSABLE_INPUT = 1     #: PREP_FLAG has an unusable bit (no data, zero rms, too few bins)
    NONFINITE_OUTPUT = 2   #: the network returned NaN or inf


def classify_spectra(x, prep_flag, forward, c_th=DEFAULT_C_TH, n_th=DEFAULT_N_TH, bal_th=DEFAULT_BAL_TH):
    """Classify preprocessed spectra with QuasarNET.

    Parameters
    ----------
    x : float32 (n, 443) QuasarNET inputs.
    prep_flag : int (n,) PREP_FLAG.
    forward : callable x -> {"confidence": (n, 7, 13), "offset": (n, 7, 13)}.
    c_th, n_th : decision rule: quasar if >= n_th lines have C > c_th.
    bal_th : BAL_FLAG_QN = 1 for quasars with C_BAL_CIV > bal_th.

    Returns
    -------
    dict of numpy columns (n,): C_<LINE>, Z_<LINE> (float32), C_BAL_CIV,
    Z_BAL_CIV (float32), Z_QN (float64), IS_QSO_QN, BAL_FLAG_QN (int16),
    QN_FLAG (int32). Unclassified rows: C = 0, Z = -1, flags 0.
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
    classified = flag == 0
    confidence[~classified] = 0.0
    redshift[~classified] = -1.0
    c_lines, z_lines = confidence[:, :N_EMISSION], redshift[:, :N_EMISSION]
    is_qso = classify(c_lines, c_th, n_th) & classified
    columns = {}
    for k, name in enumerate(LINE_NAMES):
        columns[f"C_{name}"] = c_lines[:, k].astype(np.float32)
    for k, name in enumerate(LINE_NAMES):
        columns[f"Z_{name}"] = z_lines[:, k].astype(np.float32)
    columns["C_BAL_CIV"] = confidence[:, BAL_INDEX].astype(np.float32)
    columns["Z_BAL_CIV"] = redshift[:, BAL_INDEX].astype(np.float32)
    columns["Z_QN"] = np.where(classified, best_redshift(c_lines, z_lines), -1.0)
    columns["IS_QSO_QN"] = is_qso.astype(np.int16)
    columns["BAL_FLAG_QN"] = bal_flag(is_qso, confidence[:, BAL_INDEX], bal_th).astype(np.int16)
    columns["QN_FLAG"] = flag.astype(np.int32)
    return columns


def process_shard(shard, forward, model_path, model_sha256, c_th=DEFAULT_C_TH, n_th=DEFAULT_N_TH,
                  bal_th=DEFAULT_BAL_TH):
    """The QuasarNET result table of one shard table (same rows, same order)."""
    x = list_column(shard, "QN_FLUX")
    prep_flag = shard.column("PREP_FLAG").to_numpy()
    columns = {name: shard.column(name) for name in (*FIBER_COLUMNS, "PREP_FLAG")}
    columns.update({name: pa.array(values) for name, values in
                    classify_spectra(x, prep_flag, forward, c_th, n_th, bal_th).items()})
    shard_meta = read_metadata(shard.schema)
    return with_metadata(pa.table(columns), {
        "plate": shard_meta.get("plate"), "mjd": shard_meta.get("mjd"),
        "sources": shard_meta.get("sources", []),
        "c_th": c_th, "n_th": n_th, "bal_th": bal_th, "qn_model": str(model_path), "qn_model_sha256": model_sha256,
        "qn_lines": [[name, wave] for name, wave in QN_FINDERS],
        "qn_flags": {flag.name: int(flag.value) for flag in QNFlag},
    })


def result_path(results, plate, mjd):
    """RESULTS/quasarnet/qn-pppp-mmmmm.parquet"""
    return Path(results) / "quasarnet" / f"qn-{plate:04d}-{mjd:05d}.parquet"


def make_forward(model_path, batch_size=1024):
    """A forward function for `classify_spectra`, loading the model once per process."""
    from qsopipe.models.quasarnet import predict
    from qsopipe.models.store import load_model

    model = load_model(str(model_path))
    return lambda x: predict(model, x, batch=batch_size)


@click.command(name="quasarnet")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "results", required=True, type=click.Path(file_okay=False), help="Results directory.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              help="QuasarNET .keras file [default: the shipped weights].")
@click.option("--c-th", default=DEFAULT_C_TH, show_default=True, help="Line confidence threshold.")
@click.option("--n-th", default=DEFAULT_N_TH, show_default=True, help="Lines above c_th needed for a quasar.")
@click.option("--bal-th", default=DEFAULT_BAL_TH, show_default=True,
              help="BAL_FLAG_QN where a quasar's C_BAL_CIV exceeds this.")
@click.option("--batch-size", default=1024, show_default=True, help="Fixed batch of the compiled forward pass.")
@click.option("--force", is_flag=True, help="Redo plates whose results are up to date.")
def command(shards, results, model_path, c_th, n_th, bal_th, batch_size, force):
    """Classify every shard under SHARDS; write RESULTS/quasarnet/qn-pppp-mmmmm.parquet per plate."""
    from qsopipe.models.store import default_weights, file_sha256

    model_path = Path(model_path or default_weights("quasarnet"))
    forward = None
    digest = file_sha256(str(model_path))
    settings = {"c_th": c_th, "n_th": n_th, "bal_th": bal_th, "qn_model_sha256": digest}
    for shard_file in sorted(Path(shards).rglob("plate-*.parquet")):
        meta = read_metadata(pq.read_schema(shard_file))
        out = result_path(results, meta["plate"], meta["mjd"])
        if not force and is_up_to_date(out, [shard_file, model_path]) and written_with(out, settings):
            log.info("plate %04d-%05d: %s is up to date, skipped", meta["plate"], meta["mjd"], out)
            continue
        if forward is None:
            forward = make_forward(model_path, batch_size)
        start = time.perf_counter()
        table = process_shard(pq.read_table(shard_file), forward, model_path, digest, c_th, n_th, bal_th)
        write_parquet(table, out)
        seconds = time.perf_counter() - start
        nqso = int(np.sum(table.column("IS_QSO_QN").to_numpy()))
        log.info("plate %04d-%05d: %d fibers, %d quasars in %.2f s (%.0f spectra/s)",
                 meta["plate"], meta["mjd"], table.num_rows, nqso, seconds, table.num_rows / seconds)
