"""Template redshift fit: the scan's algebra, noiseless recovery, warnings, the table, real spectra."""

import numpy as np
import pyarrow as pa
import pytest
from scipy.interpolate import make_interp_spline

from qsopipe.pipeline.constants import SPEED_OF_LIGHT_KMS
from qsopipe.pipeline import grids
from qsopipe.pipeline.parquet_io import fixed_size_list
from qsopipe.stages.quasarnet import QNFlag
from qsopipe.stages.redshift_fit import (
    ZFIT_COLUMNS, FitSettings, ZWarning, fit_plate, fit_redshifts, window_centres)
from qsopipe.stages.redshift_scan import ScanKernels, legendre_basis, scan_chi2
from qsopipe.stages.redshift_templates import (
    TEMPLATE_FILE, load_templates, redshift_of_shift, shift_of_redshift)

NPIX = grids.MGII_NPIX


def _template_spectra(redshifts, template_of, coeff=(1.0, 20.0, -10.0, 5.0), scale=3.0, pedestal=0.5):
    """Noiseless spectra (n, 3841): the shipped eigenspectra, spline-shifted to `redshifts` (sub-pixel)."""
    templates = load_templates()
    flux = np.zeros((len(redshifts), NPIX))
    for row, z in enumerate(redshifts):
        template = templates[template_of(z)]
        spline = make_interp_spline(template.kmin + np.arange(template.nrest), template.basis, k=3, axis=1)
        flux[row] = scale * (np.asarray(coeff) @ spline(np.arange(NPIX) - shift_of_redshift(z))) + pedestal
    return flux


def test_shipped_templates_phase_licence_and_size():
    templates = load_templates()
    assert [t.name for t in templates] == ["LOZ", "HIZ"]
    assert all(t.basis.shape[0] == 4 and np.isfinite(t.basis).all() for t in templates)
    # rest pixel k at log10(3800) + 1e-4 k: LOZ starts at 1329 A, HIZ at 444 A (the originals' first pixel)
    assert 10 ** (grids.MGII_LOGLAM_MIN + 1e-4 * templates[0].kmin) == pytest.approx(1329.2, abs=0.5)
    assert 10 ** (grids.MGII_LOGLAM_MIN + 1e-4 * templates[1].kmin) == pytest.approx(443.7, abs=0.5)
    assert TEMPLATE_FILE.stat().st_size < 1_000_000
    assert "DESI Collaboration" in (TEMPLATE_FILE.parent / "LICENSE.md").read_text()
    assert redshift_of_shift(shift_of_redshift(2.345)) == pytest.approx(2.345, abs=1e-12)


def test_scan_chi2_matches_a_direct_least_squares_fit():
    rng = np.random.default_rng(1)
    nrow, npix, nk, nlag, npoly = 4, 300, 700, 6, 3
    basis = rng.normal(size=(3, nk))
    flux, weight = rng.normal(size=(nrow, npix)), rng.uniform(0.5, 2.0, size=(nrow, npix))
    starts = rng.integers(-50, 450, size=nrow)
    chi2, amplitude = scan_chi2(flux, weight, starts, nlag, [ScanKernels(basis)], npoly)
    poly = legendre_basis(npix, npoly)
    for row in range(nrow):
        for lag in range(nlag):
            index = np.arange(npix) - starts[row] - lag
            shifted = np.zeros((3, npix))
            inside = (index >= 0) & (index < nk)
            shifted[:, inside] = basis[:, index[inside]]
            design = np.vstack([shifted, poly]).T * np.sqrt(weight[row])[:, None]
            best, *_ = np.linalg.lstsq(design, flux[row] * np.sqrt(weight[row]), rcond=None)
            # float32 correlations: a relative error of ~1e-7 of the sums they make
            assert amplitude[row, lag] == pytest.approx(best[0], rel=1e-5, abs=1e-6)
            assert chi2[row, lag] == pytest.approx(np.sum((design @ best - flux[row] * np.sqrt(weight[row])) ** 2),
                                                   rel=1e-6)


def test_scan_chi2_rows_share_spectra_and_mix_templates():
    rng = np.random.default_rng(2)
    npix, nlag, npoly = 300, 5, 3
    kernels = [ScanKernels(rng.normal(size=(3, nk))) for nk in (500, 700)]
    flux, weight = rng.normal(size=(3, npix)), rng.uniform(0.5, 2.0, size=(3, npix))
    source, kernel = np.array([0, 0, 1, 2, 2, 1]), np.array([0, 1, 1, 0, 1, 0])
    starts = rng.integers(-50, 300, size=len(source))
    chi2, amplitude = scan_chi2(flux, weight, starts, nlag, kernels, npoly, source, kernel)
    for row in range(len(source)):
        alone = scan_chi2(flux[source[row]][None], weight[source[row]][None], starts[row:row + 1], nlag,
                          [kernels[kernel[row]]], npoly)
        # the same sums in float32, blocked differently
        assert chi2[row] == pytest.approx(alone[0][0], rel=1e-6)
        assert amplitude[row] == pytest.approx(alone[1][0], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("redshifts, template_index", [
    ((0.3137, 0.8021, 1.2345, 1.55), 0),
    ((1.55, 2.1003, 2.5021, 3.2017, 4.0412), 1),
])
def test_noiseless_template_spectrum_returns_its_redshift(redshifts, template_index):
    redshifts = np.array(redshifts)
    flux = _template_spectra(redshifts, lambda z: template_index)
    z_qn = redshifts + 0.004 * (1 + redshifts) * np.array([1, -1, 1, -1, 1][:len(redshifts)])
    out = fit_redshifts(flux, np.ones_like(flux), z_qn, np.ones(len(redshifts), bool))
    assert np.all(out["ZWARNING"] == 0)
    assert np.all(np.abs(SPEED_OF_LIGHT_KMS * (out["Z_FIT"] - redshifts) / (1 + redshifts)) <= 10.0)
    assert np.all((out["ZERR"] > 0) & (out["DELTACHI2"] > 9))


def test_fine_scans_walk_to_minima_beyond_their_first_shifts():
    # fine scans of one shift each: every minimum is found by the rounds that extend them
    redshifts = np.array([0.8021, 1.2345, 2.1003, 3.2017])
    flux = _template_spectra(redshifts, lambda z: int(z > 1.5))
    z_qn = redshifts + 0.004 * (1 + redshifts) * np.array([1, -1, 1, -1])
    fit = np.ones(len(redshifts), bool)
    walked = fit_redshifts(flux, np.ones_like(flux), z_qn, fit,
                           settings=FitSettings(fine_half=0, fine_extension=1, max_extensions=40))
    assert np.all(walked["ZWARNING"] == 0)
    assert np.all(np.abs(SPEED_OF_LIGHT_KMS * (walked["Z_FIT"] - redshifts) / (1 + redshifts)) <= 10.0)
    stopped = fit_redshifts(flux, np.ones_like(flux), z_qn, fit,
                            settings=FitSettings(fine_half=0, fine_extension=1, max_extensions=0))
    assert np.all(stopped["ZWARNING"] & ZWarning.FIT_FAILED)


def test_a_window_around_another_line_recovers_a_confused_line():
    # Z_QN from a line taken for another (MgII read as CIII]: z 0.719 -> 1.528, as on real fiber 3655-0872)
    redshifts = np.array([0.719, 2.3])
    flux = _template_spectra(redshifts, lambda z: int(z > 1.5))
    z_qn = np.array([1.528, 2.3])
    fit = np.ones(2, bool)
    z_lines = np.array([[np.nan, 0.7185, 1.53], [2.31, np.nan, np.nan]])
    assert np.isfinite(window_centres(z_qn, z_lines)).tolist() == [[True, False, True, False],
                                                                   [True, False, False, False]]
    alone = fit_redshifts(flux, np.ones_like(flux), z_qn, fit)
    assert abs(alone["Z_FIT"][0] - 0.719) > 0.1
    both = fit_redshifts(flux, np.ones_like(flux), z_qn, fit, z_lines=z_lines)
    assert np.all(both["ZWARNING"] == 0)
    assert np.all(np.abs(SPEED_OF_LIGHT_KMS * (both["Z_FIT"] - redshifts) / (1 + redshifts)) <= 10.0)
    assert both["DELTACHI2"][0] > 9 and both["Z_FIT"][1] == pytest.approx(alone["Z_FIT"][1], abs=1e-6)


def test_masked_and_empty_spectra_get_warnings_not_nan():
    flux = _template_spectra(np.full(7, 2.2), lambda z: 1)
    ivar = np.ones_like(flux)
    ivar[0] = 0.0                                   # no data
    ivar[1, :2000] = ivar[1, 2150:] = 0.0           # 150 pixels: too few
    flux[2] = np.nan                                # nothing finite
    flux[3, ::2] = np.inf                           # half the pixels unusable, still a fit
    fit = np.array([1, 1, 1, 1, 0, 1, 1], bool)     # row 4 is not a quasar
    z_qn = np.array([2.2, 2.2, 2.2, 2.2, 2.2, -1.0, 8.5])   # rows 5, 6: outside every template
    out = fit_redshifts(flux, ivar, z_qn, fit)
    expected = [ZWarning.NO_DATA, ZWarning.FEW_PIXELS, ZWarning.NO_DATA, 0, ZWarning.NOT_FITTED,
                ZWarning.OUT_OF_RANGE, ZWarning.OUT_OF_RANGE]
    assert [ZWarning(int(w)) for w in out["ZWARNING"]] == expected
    for name in ("Z_FIT", "ZERR", "DELTACHI2", "CHI2"):
        assert np.isfinite(out[name]).all()
    assert abs(out["Z_FIT"][3] - 2.2) < 5e-4


def test_minimum_beyond_the_window_is_flagged_at_its_edge():
    flux = _template_spectra(np.array([2.0]), lambda z: 1)
    z_qn = redshift_of_shift(shift_of_redshift(2.0) + 2 * FitSettings().window_kms / 69.03)
    out = fit_redshifts(flux, np.ones_like(flux), z_qn[None], np.ones(1, bool))
    assert out["ZWARNING"][0] & ZWarning.WINDOW_EDGE


def _plate_tables(flux, ivar, z_qn, is_qso, qn_flag=None):
    n = len(z_qn)
    qn_flag = np.zeros(n, np.int32) if qn_flag is None else qn_flag
    ids = {"PLATE": pa.array(np.full(n, 7000, np.int32)), "MJD": pa.array(np.full(n, 57000, np.int32)),
           "FIBERID": pa.array(np.arange(1, n + 1, dtype=np.int32))}
    shard = pa.table({**ids, "MGII_FLUX": fixed_size_list(flux.astype(np.float32)),
                      "MGII_IVAR": fixed_size_list(ivar.astype(np.float32))})
    qn = pa.table({**ids, "Z_QN": pa.array(z_qn), "IS_QSO_QN": pa.array(is_qso.astype(np.int16)),
                   "BAL_FLAG_QN": pa.array(np.array([0, 1] * (n // 2) + [0] * (n % 2), np.int16)),
                   "QN_FLAG": pa.array(np.asarray(qn_flag, np.int32))})
    return shard, qn


def test_fit_plate_falls_back_to_z_qn_exactly_when_zwarning_is_set():
    redshifts = np.array([0.7, 1.1, 2.3, 2.3, 3.1, 2.3, 0.9])
    flux = _template_spectra(redshifts, lambda z: 0 if z < 1.5 else 1)
    flux += np.random.default_rng(3).normal(scale=0.05, size=flux.shape)
    ivar = np.full(flux.shape, 400.0)
    ivar[3] = 0.0
    z_qn = redshifts * 1.003
    is_qso = np.array([1, 1, 1, 1, 1, 0, 1])
    single_line = np.array([1, 0, 0, 0, 1, 0, 0], bool)  # quasars on one line: fitted like the others
    shard, qn = _plate_tables(flux, ivar, z_qn, is_qso, np.where(single_line, QNFlag.SINGLE_LINE, 0))
    table = fit_plate(shard, qn)
    assert table.schema.names == list(ZFIT_COLUMNS) and table.num_rows == 7
    assert [table.schema.field(name).type for name in ZFIT_COLUMNS] == list(ZFIT_COLUMNS.values())
    warning, z = table["ZWARNING"].to_numpy(), table["Z"].to_numpy()
    assert np.all(z == np.where(warning == 0, table["Z_FIT"].to_numpy(), z_qn))
    assert table["SOURCE_Z"].to_pylist() == ["ZFIT" if w == 0 else "QN" for w in warning]
    assert warning[3] & ZWarning.NO_DATA and warning[5] == ZWarning.NOT_FITTED
    assert np.count_nonzero(warning == 0) == 5 and np.isfinite(z).all()
    assert np.all(warning[single_line] == 0)
    assert table["FIBERID"].to_pylist() == list(range(1, 8))


def test_fit_plate_refuses_tables_of_different_fibers():
    flux = np.zeros((2, NPIX))
    shard, qn = _plate_tables(flux, flux, np.array([1.0, 2.0]), np.array([1, 1]))
    qn = qn.set_column(2, "FIBERID", pa.array(np.array([2, 1], np.int32)))
    with pytest.raises(ValueError, match="FIBERID"):
        fit_plate(shard, qn)


@pytest.mark.shared
def test_real_spectra_with_a_window_centre_2000_kms_off(sdss_dir):
    """Plate 3655 spec-lite files: spAll's confident quasar redshifts recovered from a centre 2000 km/s off."""
    import fitsio

    from qsopipe.pipeline.discovery import discover
    from qsopipe.stages.preprocess import preprocess_plate

    folder = sdss_dir / "dr16_spec_lite_picca"
    plates, _ = discover([str(folder / "3655")])
    shard = preprocess_plate(plates[0].read())
    spall = fitsio.read(str(folder / "catalogs" / "spAll-plate3655.fits"), columns=["FIBERID", "Z", "ZWARNING",
                                                                                   "CLASS"])
    confident = {int(row["FIBERID"]): float(row["Z"]) for row in spall
                 if row["ZWARNING"] == 0 and row["CLASS"].strip() == "QSO"}
    fibers = shard["FIBERID"].to_numpy()
    z_true = np.array([confident.get(int(fiber), -1.0) for fiber in fibers])
    is_qso = z_true > 0
    assert is_qso.sum() >= 20
    z_qn = np.where(is_qso, z_true + 2000.0 / SPEED_OF_LIGHT_KMS * (1 + z_true), -1.0)
    ids = {name: shard[name] for name in ("PLATE", "MJD", "FIBERID")}
    qn = pa.table({**ids, "Z_QN": pa.array(z_qn), "IS_QSO_QN": pa.array(is_qso.astype(np.int16)),
                   "BAL_FLAG_QN": pa.array(np.zeros(len(fibers), np.int16))})
    table = fit_plate(shard, qn)
    good = is_qso & (table["ZWARNING"].to_numpy() == 0)
    dv = SPEED_OF_LIGHT_KMS * (table["Z"].to_numpy()[good] - z_true[good]) / (1 + z_true[good])
    assert good.sum() >= 0.8 * is_qso.sum()
    assert np.median(np.abs(dv)) < 300.0


def test_real_quasar_whose_mgii_quasarnet_reads_as_ciii(sdss_dir):
    """3655-55240-0872 (spAll z 0.7187): QuasarNET's MgII, CIII] and CIV boxes give z 1.528 and its Hbeta box
    (C 0.41, above c_th) z 0.715, as the shipped model puts them; the fit takes the lower chi2 of both windows."""
    from qsopipe.pipeline.constants import QN_LINES
    from qsopipe.pipeline.discovery import discover
    from qsopipe.pipeline.parquet_io import with_metadata
    from qsopipe.stages.preprocess import preprocess_plate

    plates, _ = discover([str(sdss_dir / "dr16_spec_lite_picca" / "3655")])
    shard = preprocess_plate(plates[0].read())
    row = int(np.flatnonzero(shard["FIBERID"].to_numpy() == 872)[0])
    shard = shard.slice(row, 1)
    lines = {"CIV": (0.67, 1.542), "CIII": (1.0, 1.523), "MGII": (1.0, 1.528), "HBETA": (0.41, 0.715)}
    columns = {name: shard[name] for name in ("PLATE", "MJD", "FIBERID")}
    columns.update({"Z_QN": pa.array([1.528]), "IS_QSO_QN": pa.array([1], pa.int16()),
                    "BAL_FLAG_QN": pa.array([0], pa.int16())})
    for name, _ in QN_LINES:
        confidence, z = lines.get(name, (0.0, 0.0))
        columns.update({f"C_{name}": pa.array([confidence], pa.float32()), f"Z_{name}": pa.array([z])})
    qn = pa.table(columns)
    assert fit_plate(shard, qn)["ZWARNING"][0].as_py() != 0
    table = fit_plate(shard, with_metadata(qn, {"c_th": 0.4}))
    assert table["ZWARNING"][0].as_py() == 0
    assert SPEED_OF_LIGHT_KMS * abs(table["Z"][0].as_py() - 0.7187) / 1.7187 < 100.0
