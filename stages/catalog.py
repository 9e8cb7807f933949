"""Catalog stage: the per-plate QuasarNET and MgII results in, one FITS catalog out.

`assemble_catalog` joins result tables into catalog and absorber columns
(dicts of numpy arrays, columns as in `qsopipe.stages.catalog_columns`);
`write_catalog` writes them with units, descriptions, provenance and
checksums, atomically. `command` is the thin `qsopipe catalog` CLI.

Every fiber of every plate in the QuasarNET results is a row. A fiber that
QuasarNET did not classify (a `QNFlag.unclassified` bit in QN_FLAG; a
single-line quasar is classified) has C_* = 0, Z_* = Z_QN = -1,
NLINES_QN = IS_QSO_QN = BAL_FLAG_QN = BAL_FLAG = 0. A fiber of a plate without redshift-fit results
has Z = Z_QN, ZERR = -1, DELTACHI2 = 0, SOURCE_Z 'QN' and ZWARNING bit
ZWARNING_NO_RESULTS; one without MgII results has MGII_PROB = -1,
IS_MGII_ABS = N_MGII_ABS = -1 (not searched) and MGII_FLAG bit
MGII_FLAG_NO_RESULTS; one without BAL results has BAL_PROB = -1 and
BAL_FLAG = BAL_FLAG_QN, as the BAL stage gives where its CNN did not run.
"""

import json
import logging
import urllib.parse
from pathlib import Path
from typing import NamedTuple

import click
import numpy as np
import pyarrow as pa
from astropy.io import fits

from qsopipe.pipeline import provenance
from qsopipe.pipeline.atomic import atomic_path
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.ids import match_rows, target_id
from qsopipe.pipeline.layout import find_products, product_path
from qsopipe.pipeline.parquet_io import read_metadata, read_parquet
from qsopipe.pipeline.plate import PIPE_COLUMNS, TARGET_COLUMNS
from qsopipe.stages.catalog_columns import (
    ABSORBER_COLUMNS, CATALOG_COLUMNS, CONFIDENCE_COLUMNS, INPUT_COLUMNS, LINE_REDSHIFT_COLUMNS,
    MGII_FLAG_NO_RESULTS, ZWARNING_NO_RESULTS,
)
from qsopipe.stages.quasarnet import is_classified

log = logging.getLogger(__name__)

#: Columns every QuasarNET results table must have.
QN_REQUIRED = (
    "PLATE", "MJD", "FIBERID", *CONFIDENCE_COLUMNS, *LINE_REDSHIFT_COLUMNS,
    "C_BAL_CIV", "Z_BAL_CIV", "Z_QN", "NLINES_QN", "IS_QSO_QN", "BAL_FLAG_QN", "QN_FLAG",
)
#: Defaults of the fiber columns a results table may lack.
FIBER_DEFAULTS = {"THING_ID": -1, "RA": np.nan, "DEC": np.nan, "OBJTYPE": "", "PREP_FLAG": 0,
                  **{name: default for name, (_, default) in PIPE_COLUMNS.items()}}
#: Columns of a MgII results table and their values where a plate has none.
MGII_DEFAULTS = {"MGII_PROB": -1.0, "IS_MGII_ABS": -1, "N_MGII_ABS": -1, "MGII_ABS_REGION": -1, "MGII_ZMIN": -1.0,
                 "MGII_ZMAX": -1.0, "MGII_DZ": -1.0, "MGII_EW_LIMIT": -1.0, "MGII_FLAG": MGII_FLAG_NO_RESULTS}
#: Columns of a redshift-fit results table and their values where a plate has none (Z: Z_QN).
ZFIT_DEFAULTS = {"Z": -1.0, "ZERR": -1.0, "ZWARNING": ZWARNING_NO_RESULTS, "SOURCE_Z": "QN", "DELTACHI2": 0.0}
#: Columns of a BAL results table and their values where a plate has none (BAL_FLAG -1: then BAL_FLAG_QN).
BAL_DEFAULTS = {"BAL_PROB": -1.0, "BAL_FLAG": -1}
#: Confidence columns (0 when unclassified) and redshift columns (-1).
_CONFIDENCES = (*CONFIDENCE_COLUMNS, "C_BAL_CIV")
_REDSHIFTS = (*LINE_REDSHIFT_COLUMNS, "Z_BAL_CIV", "Z_QN")


def sdss_name(ra, dec):
    """SDSS designations 'Jhhmmss.ss+ddmmss.s' (truncated, as DR16Q), '' where RA/DEC is NaN.

    ra, dec : arrays of float, degrees. Returns an array of str, same shape.
    """
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    known = np.isfinite(ra) & np.isfinite(dec)
    ra_centisec = np.floor(np.where(known, np.mod(ra, 360.0), 0.0) * 24000.0 + 1e-6).astype(np.int64)
    dec_decisec = np.floor(np.where(known, np.abs(dec), 0.0) * 36000.0 + 1e-6).astype(np.int64)
    names = [
        f"J{r // 360000:02d}{r // 6000 % 60:02d}{r // 100 % 60:02d}.{r % 100:02d}"
        f"{'-' if d < 0 else '+'}{a // 36000:02d}{a // 600 % 60:02d}{a // 10 % 60:02d}.{a % 10:01d}"
        if ok else ""
        for r, a, d, ok in zip(ra_centisec.tolist(), dec_decisec.tolist(), dec.tolist(), known.tolist())
    ]
    return np.array(names, dtype="U19")


def table_arrays(table):
    """A results table (pyarrow Table or mapping of columns) as {name: numpy array}."""
    if isinstance(table, pa.Table):
        return {name: _arrow_to_numpy(table.column(name)) for name in table.column_names}
    return {name: np.asarray(values) for name, values in table.items()}


def _arrow_to_numpy(column):
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.array(column.to_pylist(), dtype=str)
    return column.to_numpy()


def _stack(tables, name, dtype, default=None):
    """Column `name` of every table, concatenated; `default` fills tables lacking it.

    tables : list of {name: array}. A missing column with default None raises ValueError.
    """
    parts = []
    for table in tables:
        if name in table:
            parts.append(np.asarray(table[name]).astype(dtype))
        elif default is None:
            raise ValueError(f"results table lacks required column {name}")
        else:
            parts.append(np.full(_nrows(table), default, dtype=dtype))
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts)


def _nrows(table):
    return len(next(iter(table.values()))) if table else 0


def assemble_catalog(qn_tables, mgii_tables=(), absorber_tables=(), zfit_tables=(), bal_tables=()):
    """Join per-plate results into catalog and absorber columns.

    Parameters
    ----------
    qn_tables : iterable of pyarrow Table or {name: array}
        QuasarNET results (docs/FORMATS.md), one row per fiber.
    mgii_tables : iterable of the same
        MgII results: PLATE, MJD, FIBERID, MGII_PROB, IS_MGII_ABS, N_MGII_ABS,
        MGII_FLAG; joined on (PLATE, MJD, FIBERID). Fibers without a row
        get MGII_DEFAULTS.
    absorber_tables : iterable of the same
        One row per absorber (ABSORBER_COLUMNS; TARGETID computed if absent).
    zfit_tables : iterable of the same
        Redshift-fit results: PLATE, MJD, FIBERID, Z, ZERR, ZWARNING, SOURCE_Z,
        DELTACHI2; joined on (PLATE, MJD, FIBERID). Fibers without a row get
        ZFIT_DEFAULTS and Z = Z_QN; ZERR is -1 wherever Z is Z_QN.
    bal_tables : iterable of the same
        BAL results: PLATE, MJD, FIBERID, BAL_PROB, BAL_FLAG; joined on
        (PLATE, MJD, FIBERID). Fibers without a row get BAL_PROB = -1 and
        BAL_FLAG = BAL_FLAG_QN.

    Returns
    -------
    catalog : {name: array} in CATALOG_COLUMNS order, one row per fiber,
        sorted by PLATE, MJD, FIBERID.
    absorbers : {name: array} in ABSORBER_COLUMNS order, sorted by TARGETID, Z_ABS.
    """
    qn = [table_arrays(table) for table in qn_tables]
    mgii = [table_arrays(table) for table in mgii_tables]
    zfit = [table_arrays(table) for table in zfit_tables]
    bal = [table_arrays(table) for table in bal_tables]
    absorbers = [table_arrays(table) for table in absorber_tables]
    dtypes = {column.name: column.dtype for column in CATALOG_COLUMNS}

    columns = {}
    for name in QN_REQUIRED:
        columns[name] = _stack(qn, name, dtypes[name])
    for name, default in FIBER_DEFAULTS.items():
        columns[name] = _stack(qn, name, dtypes[name], default)
    for name in TARGET_COLUMNS:
        columns[name] = _stack(qn, name, dtypes[name], 0)
    columns["TARGETID"] = target_id(columns["PLATE"], columns["MJD"], columns["FIBERID"])
    if len(np.unique(columns["TARGETID"])) != len(columns["TARGETID"]):
        raise ValueError("results hold the same (PLATE, MJD, FIBERID) more than once")
    columns["SDSS_NAME"] = sdss_name(columns["RA"], columns["DEC"])
    _blank_unclassified(columns)
    columns.update(_join_zfit(columns["TARGETID"], zfit, dtypes, columns["Z_QN"]))
    columns.update(_join_bal(columns["TARGETID"], bal, dtypes, columns["BAL_FLAG_QN"]))
    columns.update(_join_mgii(columns["TARGETID"], mgii, dtypes))

    order = np.lexsort((columns["FIBERID"], columns["MJD"], columns["PLATE"]))
    catalog = {column.name: columns[column.name][order] for column in CATALOG_COLUMNS}
    return catalog, _absorber_columns(absorbers)


def _blank_unclassified(columns):
    """Sentinels in place: C = 0, Z = -1, NLINES_QN and flags 0 where QuasarNET did not classify the fiber
    (`is_classified`) or a value is NaN."""
    classified = is_classified(columns["QN_FLAG"])
    for name in _CONFIDENCES:
        values = columns[name]
        columns[name] = np.where(classified & np.isfinite(values), values, 0).astype(values.dtype)
    for name in _REDSHIFTS:
        values = columns[name]
        columns[name] = np.where(classified & np.isfinite(values), values, -1).astype(values.dtype)
    for name in ("NLINES_QN", "IS_QSO_QN", "BAL_FLAG_QN"):
        columns[name] = np.where(classified, columns[name], 0).astype(columns[name].dtype)


def _join(targetid, tables, defaults, dtypes):
    """Columns `defaults` for the fibers `targetid` from per-fiber results `tables`, the default where a
    fiber has no row."""
    if not tables:
        return {name: np.full(len(targetid), default, dtype=dtypes[name]) for name, default in defaults.items()}
    keys = target_id(*(_stack(tables, name, "i8") for name in ("PLATE", "MJD", "FIBERID")))
    index, found = match_rows(targetid, keys)
    out = {}
    for name, default in defaults.items():
        values = _stack(tables, name, dtypes[name])[index] if len(keys) else np.zeros(len(targetid), dtypes[name])
        out[name] = np.where(found, values, default).astype(dtypes[name])
    return out


def _join_zfit(targetid, zfit, dtypes, z_qn):
    """Redshift-fit columns for the fibers `targetid`; Z is `z_qn` and ZERR -1 wherever SOURCE_Z is 'QN'."""
    out = _join(targetid, zfit, ZFIT_DEFAULTS, dtypes)
    fitted = out["SOURCE_Z"] == "ZFIT"
    out["Z"] = np.where(fitted, out["Z"], z_qn)
    out["ZERR"] = np.where(fitted, out["ZERR"], -1.0)
    return out


def _join_bal(targetid, bal, dtypes, bal_flag_qn):
    """BAL columns for the fibers `targetid`; BAL_FLAG is `bal_flag_qn` where a fiber has no BAL results."""
    out = _join(targetid, bal, BAL_DEFAULTS, dtypes)
    out["BAL_FLAG"] = np.where(out["BAL_FLAG"] < 0, bal_flag_qn, out["BAL_FLAG"]).astype(np.int16)
    out["BAL_PROB"] = np.where(np.isfinite(out["BAL_PROB"]), out["BAL_PROB"], -1).astype(np.float32)
    return out


def _join_mgii(targetid, mgii, dtypes):
    """MgII columns for the fibers `targetid`, from the MgII results tables `mgii`."""
    out = _join(targetid, mgii, MGII_DEFAULTS, dtypes)
    out["MGII_PROB"] = np.where(np.isfinite(out["MGII_PROB"]), out["MGII_PROB"], -1).astype(np.float32)
    return out


def _absorber_columns(absorbers):
    columns = {}
    for column in ABSORBER_COLUMNS:
        if column.name != "TARGETID":
            columns[column.name] = _stack(absorbers, column.name, column.dtype)
    columns["TARGETID"] = target_id(columns["PLATE"], columns["MJD"], columns["FIBERID"])
    order = np.lexsort((columns["Z_ABS"], columns["TARGETID"]))
    return {column.name: columns[column.name][order] for column in ABSORBER_COLUMNS}


def select_quasars(catalog, absorbers):
    """The quasars-only view (rows with IS_QSO_QN == 1) of catalog and absorber columns."""
    keep = catalog["IS_QSO_QN"] == 1
    quasars = {name: values[keep] for name, values in catalog.items()}
    on_quasar = np.isin(absorbers["TARGETID"], quasars["TARGETID"])
    return quasars, {name: values[on_quasar] for name, values in absorbers.items()}


#: Characters a FITS string column holds as they are: printable ASCII but '%', which escapes the others.
FITS_TEXT_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


def fits_text(values):
    """Strings as FITS 'A' columns may hold them: ASCII, anything else percent-encoded.

    values : array-like of str, shape (n,). Each string's UTF-8 bytes (file
    names that are not UTF-8 keep their bytes, via surrogateescape) are
    percent-encoded where they are not printable ASCII or are '%', so every
    path survives and printable ASCII without '%' is unchanged. Returns an
    array of str, shape (n,); `text_from_fits` reverses it.
    """
    return np.array([urllib.parse.quote(str(value).encode("utf-8", "surrogateescape"), safe=FITS_TEXT_SAFE)
                     for value in np.ravel(values)], dtype=str)


def text_from_fits(values):
    """The strings `fits_text` encoded (e.g. INPUTS PATH as read back): array of str, shape (n,)."""
    return np.array([urllib.parse.unquote_to_bytes(str(value)).decode("utf-8", "surrogateescape")
                     for value in np.ravel(values)], dtype=str)


def table_hdu(extname, columns, data, header_cards=()):
    """A binary-table HDU of `data` ({name: array}) described by `columns` (Column list).

    Each column gets TUNITn when it has a unit, its description as the TTYPEn
    comment and a TCOMMn card; `header_cards` ((key, value, comment)) follow.
    String columns are written through `fits_text` (ASCII, others percent-encoded).
    """
    fits_columns = []
    for column in columns:
        values = np.asarray(data[column.name])
        width = None
        if column.dtype.startswith("U"):
            values = fits_text(values)
            width = int(max(np.char.str_len(values).max(initial=0), 1))
        else:
            values = values.astype(column.dtype)
        fits_columns.append(fits.Column(name=column.name, format=column.tform(width),
                                        unit=column.unit or None, array=values))
    hdu = fits.BinTableHDU.from_columns(fits_columns, name=extname)
    for number, column in enumerate(columns, start=1):
        hdu.header.comments[f"TTYPE{number}"] = column.description
        hdu.header[f"TCOMM{number}"] = column.description
    for key, value, comment in header_cards:
        hdu.header[key] = (value, comment)
    return hdu


def inputs_columns(records):
    """INPUTS columns from records: dicts with PATH and optionally PLATE, MJD, STATUS, REASON.

    Keys may be upper or lower case; absent values get -1 or ''.
    """
    records = [{key.upper(): value for key, value in record.items()} for record in records]
    return {
        "PATH": np.array([str(r["PATH"]) for r in records], dtype=str),
        "PLATE": np.array([r.get("PLATE", -1) for r in records], dtype=np.int32),
        "MJD": np.array([r.get("MJD", -1) for r in records], dtype=np.int32),
        "STATUS": np.array([str(r.get("STATUS") or "") for r in records], dtype=str),
        "REASON": np.array([str(r.get("REASON") or "") for r in records], dtype=str),
    }


def write_catalog(path, catalog, absorbers, inputs, header_cards):
    """Write the catalog FITS file atomically (temporary name beside `path`, then rename).

    Parameters
    ----------
    path : str or Path
    catalog : {name: array}, CATALOG_COLUMNS
    absorbers : {name: array}, ABSORBER_COLUMNS
    inputs : {name: array}, INPUT_COLUMNS (see `inputs_columns`)
    header_cards : list of (key, value, comment)
        Provenance (`qsopipe.pipeline.provenance.header_cards`); written to the
        primary and CATALOG headers. Every HDU gets CHECKSUM and DATASUM.
    """
    primary = fits.PrimaryHDU()
    for key, value, comment in header_cards:
        primary.header[key] = (value, comment)
    hdus = fits.HDUList([
        primary,
        table_hdu("CATALOG", CATALOG_COLUMNS, catalog, header_cards),
        table_hdu("MGII_ABSORBERS", ABSORBER_COLUMNS, absorbers),
        table_hdu("INPUTS", INPUT_COLUMNS, inputs),
    ])
    with atomic_path(path) as tmp:
        hdus.writeto(tmp, overwrite=True, checksum=True)


class Results(NamedTuple):
    """The result files of a RESULTS directory, read."""

    qn_tables: list
    zfit_tables: list
    bal_tables: list
    mgii_tables: list
    absorber_tables: list
    inputs: dict
    parameters: dict


def read_results(directory, plates=None):
    """Read RESULTS/quasarnet/qn-*.parquet and the matching RESULTS/zfit, RESULTS/bal and RESULTS/mgii files.

    plates : iterable of plate-unit names ('pppp-mmmmm'), or None for every results file.

    An empty `plates` gives empty tables (a catalog with no rows).
    Returns Results: tables per plate, the INPUTS columns (from the files'
    `qsopipe.sources` metadata, status 'ok') and the run parameters (c_th,
    n_th, c_th_single, bal_th, bal_prob_th, models, fit settings and templates, MgII
    threshold) found in the metadata, which must agree between plates.
    """
    found = find_products("quasarnet", directory)
    if plates is not None:
        wanted = set(plates)
        found = [(name, path) for name, path in found if name in wanted]
    if not found and plates is None:
        raise InputError(directory, "no quasarnet/qn-*.parquet results")
    qn_tables, zfit_tables, bal_tables, mgii_tables, absorber_tables, records = [], [], [], [], [], []
    metadata = {}
    for name, qn_path in found:
        table = read_parquet(qn_path)
        qn_tables.append(table)
        meta = read_metadata(table.schema)
        _merge_parameters(metadata, meta, qn_path, ("c_th", "n_th", "c_th_single", "bal_th", "qn_model",
                                                       "qn_model_sha256"))
        sources = list(meta.get("sources", []))
        for product, tables, keys in (
            ("zfit", zfit_tables, ("zfit_settings", "zfit_templates", "zfit_templates_sha256")),
            ("bal", bal_tables, ("bal_prob_th", "bal_model", "bal_model_sha256")),
            ("mgii", mgii_tables, ("mgii_threshold", "mgii_model", "mgii_model_sha256", "mgii_vetter_model",
                                   "mgii_vetter_model_sha256")),
            ("mgii_absorbers", absorber_tables, ("mgii_model", "mgii_model_sha256", "mgii_vetter_model",
                                                 "mgii_vetter_model_sha256")),
        ):
            path = product_path(product, directory, name)
            if path.is_file():
                extra = read_parquet(path)
                tables.append(extra)
                extra_meta = read_metadata(extra.schema)
                _merge_parameters(metadata, extra_meta, path, keys)
                sources += [s for s in extra_meta.get("sources", []) if s not in sources]
        records += [{"PATH": source, "PLATE": meta.get("plate", -1), "MJD": meta.get("mjd", -1), "STATUS": "ok"}
                    for source in sources]
    return Results(qn_tables, zfit_tables, bal_tables, mgii_tables, absorber_tables, inputs_columns(records),
                   metadata)


def _merge_parameters(parameters, metadata, path, keys):
    """Copy `keys` of `metadata` into `parameters`; a value that differs raises InputError."""
    for key in keys:
        if key not in metadata:
            continue
        value = metadata[key]
        if key in parameters and parameters[key] != value:
            raise InputError(path, f"{key} = {json.dumps(value)} differs from other plates' "
                                   f"{json.dumps(parameters[key])}")
        parameters[key] = value


def results_header_cards(parameters, ninputs, date=None):
    """Provenance cards for a catalog made from results with run `parameters`."""
    models = [(prefix, parameters[f"{role}_model"], parameters.get(f"{role}_model_sha256", ""))
              for prefix, role in (("QN", "qn"), ("BA", "bal"), ("MG", "mgii"), ("MV", "mgii_vetter"))
              if parameters.get(f"{role}_model")]
    return provenance.header_cards(
        c_th=parameters.get("c_th"), n_th=parameters.get("n_th"), bal_th=parameters.get("bal_th"),
        mgii_threshold=parameters.get("mgii_threshold"), bal_prob_th=parameters.get("bal_prob_th"),
        c_th_single=parameters.get("c_th_single"), models=models,
        ninputs=ninputs, date=date,
    ) + provenance.zfit_cards(parameters.get("zfit_templates"), parameters.get("zfit_templates_sha256"),
                              parameters.get("zfit_settings"))


def catalog_from_results(results, out, plates=None, inputs=None, config=None, qso_only=False):
    """Read the results under `results`, assemble the catalog and write it to `out`.

    Parameters
    ----------
    results : RESULTS directory (quasarnet/, zfit/, bal/, mgii/).
    out : catalog FITS path.
    plates : iterable of plate-unit names to include, or None for all results files.
    inputs : records for the INPUTS HDU (see `inputs_columns`), or None to
        list the sources named in the results' metadata.
    config : run configuration; its c_th, n_th, c_th_single, bal_th, bal_prob_th, mgii_threshold, qn_model, bal_model
        and mgii_model fill what the results' metadata does not give.
    qso_only : keep only IS_QSO_QN == 1 rows.

    Returns the path written.
    """
    found = read_results(results, plates)
    catalog, absorbers = assemble_catalog(found.qn_tables, found.mgii_tables, found.absorber_tables,
                                          found.zfit_tables, found.bal_tables)
    nfiber = len(catalog["PLATE"])
    if qso_only:
        catalog, absorbers = select_quasars(catalog, absorbers)
    inputs = found.inputs if inputs is None else inputs_columns(inputs)
    defaults = {key: (config or {}).get(key)
                for key in ("c_th", "n_th", "c_th_single", "bal_th", "bal_prob_th", "mgii_threshold", "qn_model",
                            "bal_model", "mgii_model")}
    parameters = {**{key: value for key, value in defaults.items() if value is not None}, **found.parameters}
    cards = results_header_cards(parameters, len(inputs["PATH"]))
    cards.append(("QSOONLY", bool(qso_only), "rows restricted to IS_QSO_QN == 1"))
    cards.extend(provenance.run_config_cards(config or {}))
    write_catalog(out, catalog, absorbers, inputs, cards)
    log.info("%s: %d plates, %d fibers, %d rows written, %d quasars, %d MgII absorbers",
             out, len(found.qn_tables), nfiber, len(catalog["PLATE"]),
             int(np.sum(catalog["IS_QSO_QN"] == 1)), len(absorbers["PLATE"]))
    return Path(out)


@click.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Catalog FITS file to write.")
@click.option("--qso-only", is_flag=True, help="Keep only rows with IS_QSO_QN == 1 (like DRQ).")
def command(results, out, qso_only):
    """Write the DR-style FITS catalog from the result files under RESULTS."""
    catalog_from_results(results, out, qso_only=qso_only)
