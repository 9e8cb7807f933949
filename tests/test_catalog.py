"""Catalog stage: column assembly, FITS round trip, atomic write, CLI on synthetic results."""

import json
from pathlib import Path

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from qsopipe.pipeline.constants import CIV_1548
from qsopipe.pipeline.ids import target_id
from qsopipe.stages import catalog as cat
from qsopipe.stages.catalog_columns import (
    ABSORBER_COLUMNS, CATALOG_COLUMNS, CONFIDENCE_COLUMNS, INPUT_COLUMNS, LINE_REDSHIFT_COLUMNS,
    MAX_DESCRIPTION, MGII_FLAG_NO_RESULTS, ZWARNING_NO_RESULTS, markdown_table,
)
from qsopipe.stages.quasarnet import QNFlag, is_classified

C_TH, N_TH, BAL_TH = 0.4, 1, 0.5
LINES = ("LYA", "CIV", "CIII", "MGII", "HBETA", "HALPHA")


def qn_table(plate, mjd, nfiber, seed, flagged=(), single_line=()):
    """A QuasarNET results table as docs/FORMATS.md gives it, rows in FIBERID order.

    Rows `flagged` are unclassified (QN_FLAG UNUSABLE_INPUT) and carry NaN and NLINES_QN = 6 for the
    catalog to blank; rows `single_line` are quasars on Lya alone (QN_FLAG SINGLE_LINE).
    """
    rng = np.random.default_rng(seed)
    fiberid = np.arange(1, nfiber + 1, dtype=np.int32)
    conf = rng.uniform(0, 1, (nfiber, 6)).astype(np.float32)
    conf[list(single_line)] = [0.9, 0.1, 0.1, 0.1, 0.1, 0.1]
    z = rng.uniform(0.5, 3.5, (nfiber, 6)).astype(np.float32)
    classified = np.ones(nfiber, bool)
    classified[list(flagged)] = False
    conf[~classified] = np.nan
    z[~classified] = np.nan
    nlines = np.where(classified, (conf > C_TH).sum(axis=1), 6).astype(np.int16)
    is_qso = classified & (nlines >= N_TH)
    qn_flag = np.where(classified, 0, QNFlag.UNUSABLE_INPUT) | np.where(is_qso & (nlines == 1), QNFlag.SINGLE_LINE, 0)
    best = np.nanargmax(np.where(np.isnan(conf), -1, conf), axis=1)
    c_bal = rng.uniform(0, 1, nfiber).astype(np.float32)
    columns = {
        "PLATE": np.full(nfiber, plate, np.int32), "MJD": np.full(nfiber, mjd, np.int32),
        "FIBERID": fiberid, "THING_ID": np.arange(nfiber, dtype=np.int64) + 1000 * plate,
        "RA": rng.uniform(0, 360, nfiber), "DEC": rng.uniform(-20, 60, nfiber),
        "OBJTYPE": np.array(["QSO", "GALAXY", "SKY", "STAR"] * nfiber)[:nfiber],
        "BOSS_TARGET1": np.full(nfiber, 1 << 10, np.int64),
        "PREP_FLAG": np.where(classified, 0, 1).astype(np.int32),
        **{f"C_{line}": conf[:, i] for i, line in enumerate(LINES)},
        **{f"Z_{line}": z[:, i] for i, line in enumerate(LINES)},
        "C_BAL_CIV": c_bal,
        "Z_BAL_CIV": rng.uniform(1.5, 3, nfiber).astype(np.float32),
        "Z_QN": z[np.arange(nfiber), best].astype(np.float64),
        "NLINES_QN": nlines,
        "IS_QSO_QN": is_qso.astype(np.int16),
        "BAL_FLAG_QN": (is_qso & (c_bal > BAL_TH)).astype(np.int16),
        "QN_FLAG": qn_flag.astype(np.int32),
    }
    table = pa.table(columns)
    meta = {"c_th": C_TH, "n_th": N_TH, "bal_th": BAL_TH, "qn_model": "/models/qn.keras", "qn_model_sha256": "ab" * 32,
            "sources": [f"/data/spPlate-{plate:04d}-{mjd:05d}.fits"]}
    return table.replace_schema_metadata({f"qsopipe.{k}".encode(): json.dumps(v).encode() for k, v in meta.items()})


def mgii_tables(qn, nabs_fibers=(2, 5)):
    """MgII results and absorbers for the quasars of a QuasarNET table."""
    plate, mjd = qn["PLATE"][0].as_py(), qn["MJD"][0].as_py()
    nfiber = qn.num_rows
    is_qso = qn["IS_QSO_QN"].to_numpy()
    n_abs = np.zeros(nfiber, np.int16)
    n_abs[list(nabs_fibers)] = [1, 2]
    prob = np.where(is_qso == 1, np.where(n_abs > 0, 0.9, 0.1), -1).astype(np.float32)
    mgii = pa.table({
        "PLATE": np.full(nfiber, plate, np.int32), "MJD": np.full(nfiber, mjd, np.int32),
        "FIBERID": np.arange(1, nfiber + 1, dtype=np.int32), "MGII_PROB": prob,
        "IS_MGII_ABS": (n_abs > 0).astype(np.int16), "N_MGII_ABS": n_abs,
        "MGII_ABS_REGION": np.where(n_abs > 0, 1, 0).astype(np.int16),
        **{name: np.where(is_qso == 1, value, -1.0) for name, value in
           (("MGII_ZMIN", 0.4), ("MGII_ZMAX", 1.9), ("MGII_DZ", 1.4))},
        "MGII_EW_LIMIT": np.where(is_qso == 1, 0.3, -1.0).astype(np.float32),
        "MGII_FLAG": np.where(is_qso == 1, 0, 1).astype(np.int32),
    })
    rows = np.repeat(np.arange(nfiber), n_abs)
    nrow = len(rows)
    absorbers = pa.table({
        "PLATE": np.full(nrow, plate, np.int32), "MJD": np.full(nrow, mjd, np.int32),
        "FIBERID": (rows + 1).astype(np.int32),
        "TARGETID": target_id(plate, mjd, rows + 1),
        "RA": np.full(nrow, 150.0), "DEC": np.full(nrow, 2.0),
        "Z_QSO": np.full(nrow, 2.0), "Z_ABS": np.linspace(1.2, 0.6, nrow), "Z_ABS_ERR": np.full(nrow, 1e-4),
        **{name: np.full(nrow, 0.5, np.float32) for name in ("EW_2796", "EW_2796_ERR", "EW_2803", "EW_2803_ERR")},
        "SNR_2796": np.full(nrow, 8.0, np.float32), "SNR_2803": np.full(nrow, 6.0, np.float32),
        "REGION": np.ones(nrow, np.int16), "MGII_PROB": np.full(nrow, 0.9, np.float32),
    })
    meta = {"mgii_model": "mgii.keras", "mgii_model_sha256": "cd" * 32, "mgii_threshold": 0.5}
    encoded = {f"qsopipe.{k}".encode(): json.dumps(v).encode() for k, v in meta.items()}
    return mgii.replace_schema_metadata(encoded), absorbers.replace_schema_metadata(encoded)


def zfit_table(qn, failed=(3,)):
    """Redshift-fit results for a QuasarNET table: quasars fitted 0.001 above Z_QN except rows `failed`."""
    is_qso = qn["IS_QSO_QN"].to_numpy() == 1
    z_qn = qn["Z_QN"].to_numpy()
    zwarning = np.where(is_qso, 0, 1).astype(np.int32)
    zwarning[list(failed)] |= 32
    z_fit = np.where(is_qso, z_qn + 0.001, -1.0)
    fitted = zwarning == 0
    table = pa.table({name: qn[name] for name in ("PLATE", "MJD", "FIBERID")} | {
        "Z_FIT": z_fit, "ZERR": np.where(is_qso, 2e-4, -1.0), "ZWARNING": zwarning,
        "DELTACHI2": np.where(is_qso, 50.0, 0.0).astype(np.float32), "Z": np.where(fitted, z_fit, z_qn),
        "SOURCE_Z": np.where(fitted, "ZFIT", "QN")})
    meta = {"zfit_settings": {"window_kms": 6000.0, "min_deltachi2": 9.0}, "zfit_templates": "qso_templates.npz",
            "zfit_templates_sha256": "ef" * 32}
    return table.replace_schema_metadata({f"qsopipe.{k}".encode(): json.dumps(v).encode() for k, v in meta.items()})


@pytest.fixture()
def results_dir(tmp_path):
    """RESULTS with two plates: 7001 (redshift fit and MgII run, two flagged fibers, fiber 6 a single-line
    quasar with two absorbers) and 7000 (neither)."""
    for folder in ("quasarnet", "mgii", "zfit"):
        (tmp_path / folder).mkdir()
    qn_a = qn_table(7001, 56600, 12, seed=1, flagged=(0, 7), single_line=(5,))
    qn_b = qn_table(7000, 56500, 9, seed=2)
    pq.write_table(qn_a, tmp_path / "quasarnet" / "qn-7001-56600.parquet")
    pq.write_table(qn_b, tmp_path / "quasarnet" / "qn-7000-56500.parquet")
    mgii, absorbers = mgii_tables(qn_a)
    pq.write_table(mgii, tmp_path / "mgii" / "mgii-7001-56600.parquet")
    pq.write_table(absorbers, tmp_path / "mgii" / "absorbers-7001-56600.parquet")
    pq.write_table(zfit_table(qn_a), tmp_path / "zfit" / "zfit-7001-56600.parquet")
    return tmp_path


@pytest.fixture()
def catalog_path(results_dir, tmp_path):
    out = tmp_path / "out" / "catalog.fits"
    result = CliRunner().invoke(cat.command, [str(results_dir), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_command_imports_no_tensorflow(results_dir, tmp_path, run_without_tensorflow):
    out = tmp_path / "no-tf" / "catalog.fits"
    run_without_tensorflow("catalog", results_dir, "--out", out)
    assert fitsio.read(str(out), "CATALOG").size == 21


def test_sdss_name_truncates_like_dr16q():
    names = cat.sdss_name([150.0, 0.0, 359.9999999, np.nan], [-2.5, 0.0, 89.99999999, 1.0])
    assert names.tolist() == ["J100000.00-023000.0", "J000000.00+000000.0", "J235959.99+895959.9", ""]
    # 00h42m44.335s +41d16m07.55s: truncated, not rounded.
    ra = (42 * 60 + 44.335) / 3600 * 15
    dec = 41 + 16 / 60 + 7.55 / 3600
    assert cat.sdss_name([ra], [-dec])[0] == "J004244.33-411607.5"


def test_every_fiber_is_a_row_sorted_and_blanked(results_dir):
    found = cat.read_results(results_dir)
    catalog, absorbers = cat.assemble_catalog(found.qn_tables, found.mgii_tables, found.absorber_tables,
                                              found.zfit_tables)
    assert len(catalog["PLATE"]) == 21
    key = list(zip(catalog["PLATE"], catalog["MJD"], catalog["FIBERID"]))
    assert key == sorted(key)
    assert catalog["PLATE"][0] == 7000
    assert list(catalog) == [column.name for column in CATALOG_COLUMNS]
    classified = is_classified(catalog["QN_FLAG"])
    assert np.sum(~classified) == 2
    for column in CATALOG_COLUMNS:
        if column.dtype.startswith("f"):
            assert np.all(np.isfinite(catalog[column.name][classified])), column.name
    for name in CONFIDENCE_COLUMNS:
        assert np.all(catalog[name][~classified] == 0)
    for name in (*LINE_REDSHIFT_COLUMNS, "Z_QN"):
        assert np.all(catalog[name][~classified] == -1)
    assert np.all(catalog["NLINES_QN"][~classified] == 0)
    no_mgii = catalog["PLATE"] == 7000
    assert np.all(catalog["MGII_PROB"][no_mgii] == -1) and np.all(catalog["N_MGII_ABS"][no_mgii] == -1)
    assert np.all(catalog["MGII_FLAG"][no_mgii] & MGII_FLAG_NO_RESULTS)
    assert np.all(catalog["MGII_FLAG"][~no_mgii] & MGII_FLAG_NO_RESULTS == 0)
    assert catalog["TARGETID"][0] == target_id(7000, 56500, 1)
    assert np.all(catalog["Z_PIPE"] == -1) and np.all(catalog["ZWARNING_PIPE"] == -1)
    assert np.all(catalog["CLASS_PIPE"] == "")
    assert len(absorbers["Z_ABS"]) == 3
    assert np.sum(catalog["N_MGII_ABS"][~no_mgii]) == 3


def test_z_is_the_fit_where_zwarning_is_0_else_z_qn(results_dir):
    found = cat.read_results(results_dir)
    catalog, _ = cat.assemble_catalog(found.qn_tables, found.mgii_tables, found.absorber_tables,
                                      found.zfit_tables)
    fitted = catalog["ZWARNING"] == 0
    no_fit = catalog["PLATE"] == 7000
    assert fitted.sum() > 2 and not fitted[no_fit].any()
    assert np.all(catalog["Z"][fitted] == catalog["Z_QN"][fitted] + 0.001)
    assert np.all(catalog["Z"][~fitted] == catalog["Z_QN"][~fitted])
    assert np.all(catalog["SOURCE_Z"] == np.where(fitted, "ZFIT", "QN"))
    assert np.all(catalog["ZERR"] == np.where(fitted, 2e-4, -1.0))
    assert np.all(catalog["ZWARNING"][no_fit] == ZWARNING_NO_RESULTS) and np.all(catalog["DELTACHI2"][no_fit] == 0)
    assert np.all(catalog["ZWARNING"][~no_fit] & ZWARNING_NO_RESULTS == 0)
    assert np.all(catalog["Z"][~is_classified(catalog["QN_FLAG"])] == -1)


def test_single_line_quasar_stays_a_quasar(results_dir):
    """Fiber 6 of plate 7001 rests on Lya alone: flagged SINGLE_LINE, and fitted, searched and kept as any quasar."""
    found = cat.read_results(results_dir)
    catalog, absorbers = cat.assemble_catalog(found.qn_tables, found.mgii_tables, found.absorber_tables,
                                              found.zfit_tables)
    row = np.flatnonzero((catalog["PLATE"] == 7001) & (catalog["FIBERID"] == 6))[0]
    assert catalog["QN_FLAG"][row] == QNFlag.SINGLE_LINE and catalog["NLINES_QN"][row] == 1
    assert catalog["IS_QSO_QN"][row] == 1 and catalog["C_LYA"][row] == np.float32(0.9)
    assert catalog["Z_QN"][row] > 0 and catalog["Z_LYA"][row] > 0
    assert catalog["SOURCE_Z"][row] == "ZFIT" and catalog["Z"][row] == catalog["Z_QN"][row] + 0.001
    assert catalog["MGII_FLAG"][row] == 0 and catalog["N_MGII_ABS"][row] == 2
    assert np.sum(absorbers["TARGETID"] == catalog["TARGETID"][row]) == 2
    quasars, _ = cat.select_quasars(catalog, absorbers)
    assert catalog["TARGETID"][row] in quasars["TARGETID"]


def test_catalog_round_trips_with_units_descriptions_and_checksums(catalog_path):
    table = Table.read(catalog_path, hdu="CATALOG")
    assert table["RA"].unit == u.deg
    assert len(table) == 21
    absorbers = Table.read(catalog_path, hdu="MGII_ABSORBERS")
    assert absorbers["EW_2796"].unit == u.AA
    assert len(absorbers) == 3
    with fits.open(catalog_path, checksum=True) as hdus:
        assert [hdu.name for hdu in hdus] == ["PRIMARY", "CATALOG", "MGII_ABSORBERS", "INPUTS"]
        for hdu in hdus:
            assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header
        header = hdus["CATALOG"].header
        for number, column in enumerate(CATALOG_COLUMNS, start=1):
            assert header[f"TCOMM{number}"] == column.description
            assert header.comments[f"TTYPE{number}"] == column.description
        assert hdus["INPUTS"].data["PATH"].tolist() == [
            "/data/spPlate-7000-56500.fits", "/data/spPlate-7001-56600.fits"]
    with fitsio.FITS(str(catalog_path)) as f:
        for hdu in f:
            hdu.verify_checksum()  # raises ValueError when wrong
        hdr = f["CATALOG"].read_header()
        units = dict(zip(f["CATALOG"].get_colnames(), [hdr.get(f"TUNIT{i + 1}", "") for i in range(len(CATALOG_COLUMNS))]))
        assert units["RA"] == "deg" and units["DEC"] == "deg" and units["Z_QN"] == ""
        assert hdr["QNSHA256"] == "ab" * 32 and hdr["MGSHA256"] == "cd" * 32
        assert hdr["LINE1"] == "LYA" and hdr["LINEWAV7"] == pytest.approx(CIV_1548)
        assert hdr["NINPUTS"] == 2 and hdr["MGII_TH"] == 0.5
        assert hdr["ZFSHA256"] == "ef" * 32 and hdr["ZFWINDOW"] == 6000.0 and hdr["ZFDCHI2"] == 9.0
        assert "numpy" in [hdr[key] for key in hdr.keys() if key.startswith("DEPNAM")]


def test_is_qso_recomputed_from_header_thresholds(catalog_path):
    with fitsio.FITS(str(catalog_path)) as f:
        header = f["CATALOG"].read_header()
        data = f["CATALOG"].read()
    lines = [header[f"LINE{n}"] for n in range(1, 8) if header[f"LINE{n}"] != "BAL_CIV"]
    confidences = np.stack([data[f"C_{line}"] for line in lines], axis=1)
    classified = is_classified(data["QN_FLAG"])
    nlines = (confidences > header["C_TH"]).sum(axis=1)
    assert np.array_equal(np.where(classified, nlines, 0), data["NLINES_QN"])
    assert np.array_equal((nlines >= header["N_TH"]) & classified, data["IS_QSO_QN"] == 1)
    assert 0 < data["IS_QSO_QN"].sum() < len(data)
    single_line = (data["IS_QSO_QN"] == 1) & (data["NLINES_QN"] == 1)
    assert np.array_equal(single_line, (data["QN_FLAG"] & QNFlag.SINGLE_LINE) != 0) and single_line.any()
    bal = (data["IS_QSO_QN"] == 1) & (data["C_BAL_CIV"] > header["BAL_TH"])
    assert np.array_equal(bal, data["BAL_FLAG_QN"] == 1) and 0 < bal.sum() < data["IS_QSO_QN"].sum()


def test_qso_only_keeps_quasars(results_dir, tmp_path):
    out = tmp_path / "qso.fits"
    CliRunner().invoke(cat.command, [str(results_dir), "--out", str(out), "--qso-only"], catch_exceptions=False)
    data = fitsio.read(str(out), ext="CATALOG")
    assert len(data) > 0 and np.all(data["IS_QSO_QN"] == 1)
    assert fitsio.read_header(str(out), ext="CATALOG")["QSOONLY"] is True


@pytest.mark.parametrize("failure", ["during_write", "at_rename"])
def test_failed_write_leaves_no_file(results_dir, tmp_path, monkeypatch, failure):
    found = cat.read_results(results_dir)
    catalog, absorbers = cat.assemble_catalog(found.qn_tables, found.mgii_tables, found.absorber_tables,
                                              found.zfit_tables)
    out_dir = tmp_path / "failing"
    out_dir.mkdir()
    if failure == "during_write":
        def half_write(self, name, **kwargs):
            with open(name, "wb") as handle:
                handle.write(b"SIMPLE  =                    T" + b" " * 50)
            raise OSError("disk full")
        monkeypatch.setattr(fits.HDUList, "writeto", half_write)
    else:
        def no_rename(src, dst):
            raise OSError("rename failed")
        monkeypatch.setattr("qsopipe.pipeline.atomic.os.replace", no_rename)
    with pytest.raises(OSError):
        cat.write_catalog(out_dir / "CATALOG.fits", catalog, absorbers, found.inputs, [])
    assert list(out_dir.iterdir()) == []


def test_dict_tables_and_missing_required_column():
    qn = cat.table_arrays(qn_table(1, 2, 3, seed=0))
    catalog, absorbers = cat.assemble_catalog([qn])
    assert len(catalog["PLATE"]) == 3 and len(absorbers["PLATE"]) == 0
    assert np.all(catalog["MGII_PROB"] == -1)
    del qn["C_LYA"]
    with pytest.raises(ValueError, match="C_LYA"):
        cat.assemble_catalog([qn])
    with pytest.raises(ValueError, match="more than once"):
        cat.assemble_catalog([qn_table(1, 2, 3, seed=0), qn_table(1, 2, 3, seed=0)])


def test_column_descriptions_fit_a_card():
    for column in (*CATALOG_COLUMNS, *ABSORBER_COLUMNS, *INPUT_COLUMNS):
        assert len(column.description) <= MAX_DESCRIPTION, column.name


def test_catalog_from_results_as_the_runner_calls_it(results_dir, tmp_path):
    inputs = [{"path": "/data/a.fits", "plate": 7001, "mjd": 56600, "status": "done", "reason": ""},
              {"path": "/data/b.fits", "plate": -1, "mjd": -1, "status": "rejected", "reason": "truncated"}]
    out = cat.catalog_from_results(results_dir, tmp_path / "run.fits", plates=["7001-56600"], inputs=inputs,
                                   config={"c_th": 0.9, "mgii_threshold": 0.7, "qn_model": "x.keras"})
    data = fitsio.read(str(out), ext="CATALOG")
    assert set(data["PLATE"]) == {7001} and len(data) == 12
    header = fitsio.read_header(str(out), ext="CATALOG")
    assert header["C_TH"] == C_TH and header["MGII_TH"] == 0.5 and header["NINPUTS"] == 2
    assert fitsio.read(str(out), ext="INPUTS")["REASON"].tolist() == ["", "truncated"]
    empty = cat.catalog_from_results(results_dir, tmp_path / "none.fits", plates=[], inputs=inputs)
    assert len(fitsio.read(str(empty), ext="INPUTS")) == 2
    assert fitsio.read_header(str(empty), ext="CATALOG")["NAXIS2"] == 0


def test_docs_list_every_column():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "catalog.md").read_text()
    for columns in (CATALOG_COLUMNS, ABSORBER_COLUMNS, INPUT_COLUMNS):
        assert markdown_table(columns) in doc
