"""Preprocess: the QuasarNET recipe on real spectra, flags, shards, reruns."""

import numpy as np
import pytest
import pyarrow.parquet as pq
from click.testing import CliRunner

from qsopipe.pipeline.cli import cli
from qsopipe.pipeline.discovery import discover
from qsopipe.pipeline.parquet_io import list_column, read_metadata
from qsopipe.pipeline.sdss import read_spec
from qsopipe.stages.mgii_fit import doublet_matched_filter
from qsopipe.stages.preprocess import PrepFlag, mgii_input, preprocess_plate, quasarnet_input


def recipe_one_spectrum(loglam, flux, ivar, and_mask):
    """Busca & Balland's recipe written out for one spectrum, independently of the stage."""
    ivar = np.where((and_mask & (1 << 25)) != 0, 0.0, ivar.astype(float))
    bins = np.floor((loglam - np.log10(3600.0)) / 1e-3).astype(int)
    keep = (bins >= 0) & (bins < 443)
    flux_sum = np.bincount(bins[keep], weights=(flux * ivar)[keep], minlength=443)[:443]
    ivar_sum = np.bincount(bins[keep], weights=ivar[keep], minlength=443)[:443]
    binned = np.zeros(443)
    binned[ivar_sum > 0] = flux_sum[ivar_sum > 0] / ivar_sum[ivar_sum > 0]
    mean = np.average(binned, weights=ivar_sum)
    rms = np.sqrt(np.average((binned - mean) ** 2, weights=ivar_sum))
    return (binned - mean) / rms


def test_qn_input_matches_the_recipe_on_every_real_spectrum(sdss_dir):
    files = sorted(sdss_dir.rglob("spec-*.fits"))
    assert len(files) == 89
    for path in files:
        spec = read_spec(path)
        x, flag = quasarnet_input(spec.loglam, spec.flux, spec.ivar, spec.and_mask)
        expected = recipe_one_spectrum(spec.loglam, spec.flux[0], spec.ivar[0], spec.and_mask[0])
        assert flag[0] & PrepFlag.unusable() == 0, path.name
        np.testing.assert_allclose(x[0], expected, atol=1e-5, rtol=0, err_msg=path.name)


def test_reshape_path_equals_bincount_path(sdss_dir):
    plates, _ = discover([sdss_dir / "dr16_spec_lite_picca/3655"])
    plate = plates[0].read()
    assert plate.loglam.ndim == 1
    fast, _ = quasarnet_input(plate.loglam, plate.flux, plate.ivar, plate.and_mask)
    per_row = np.broadcast_to(plate.loglam, plate.flux.shape).copy()
    general, _ = quasarnet_input(per_row, plate.flux, plate.ivar, plate.and_mask)
    np.testing.assert_allclose(fast, general, atol=1e-5)


def test_masked_and_nan_fibers_are_kept_and_flagged(sdss_dir):
    plates, _ = discover([sdss_dir / "dr16_spec_lite_picca/9367"])
    plate = plates[0].read()
    plate.ivar[0] = 0
    plate.flux[1, 100:200] = np.nan
    plate.ivar[2, 50] = np.inf
    plate.ivar[3, :] = -1
    table = preprocess_plate(plate)
    assert table.num_rows == plate.nfiber
    flags = table.column("PREP_FLAG").to_numpy()
    assert flags[0] & PrepFlag.NO_VALID_PIXEL and flags[0] & PrepFlag.NO_MGII_PIXEL
    assert flags[1] & PrepFlag.NONFINITE_INPUT and not flags[1] & PrepFlag.unusable()
    assert flags[2] & PrepFlag.NONFINITE_INPUT
    assert flags[3] & PrepFlag.NEGATIVE_IVAR and flags[3] & PrepFlag.NO_VALID_PIXEL
    assert np.all(flags[4:] == 0)
    for name in ("QN_FLUX", "MGII_FLUX", "MGII_IVAR"):
        assert np.all(np.isfinite(list_column(table, name)))
    assert np.all(list_column(table, "QN_FLUX")[0] == 0)


def test_mgii_grid_interpolation_of_a_smooth_spectrum():
    loglam = 3.5515 + 1e-4 * np.arange(4600)
    flux = np.tile(10 ** loglam / 1000.0, (3, 1)).astype(np.float32)
    ivar = np.full_like(flux, 4.0)
    out_flux, out_ivar = mgii_input(loglam, flux, ivar)
    target = np.log10(3800) + 1e-4 * np.arange(3841)
    np.testing.assert_allclose(out_flux[0], 10 ** target / 1000.0, rtol=1e-4)
    assert np.all(out_ivar >= 4.0 - 1e-3)
    per_row, _ = mgii_input(np.tile(loglam, (3, 1)), flux, ivar)
    np.testing.assert_allclose(per_row, out_flux, rtol=1e-6)


@pytest.mark.parametrize("coeff0", [3.5528, 3.55295, 3.55297])
def test_mgii_ivar_keeps_the_noise_of_a_doublet_filter(coeff0):
    """White noise regridded by a 0.84, 0.34 and 0.14 pixel shift: the doublet filter's S/N has unit spread."""
    rng = np.random.default_rng(5)
    loglam = coeff0 + 1e-4 * np.arange(4600)
    flux = (1.0 + 0.1 * rng.standard_normal((400, loglam.size))).astype(np.float32)
    out_flux, out_ivar = mgii_input(loglam, flux, np.full_like(flux, 100.0))
    snr, _, _ = doublet_matched_filter(1.0 - out_flux.astype(np.float64), out_ivar.astype(np.float64))
    assert 0.95 < np.std(snr[:, 50:-50]) < 1.05


def test_cli_writes_one_shard_per_plate_and_skips_on_rerun(sdss_dir, tmp_path):
    runner = CliRunner()
    source = str(sdss_dir / "dr16_spec_lite_picca")
    result = runner.invoke(cli, ["preprocess", source, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    shards = sorted(tmp_path.rglob("*.parquet"))
    assert [s.name for s in shards] == ["plate-10656-58163.parquet", "plate-3655-55240.parquet",
                                        "plate-3657-55244.parquet", "plate-9367-57758.parquet"]
    table = pq.read_table(tmp_path / "PLATE=3655/plate-3655-55240.parquet")
    assert table.num_rows == 68
    meta = read_metadata(table.schema)
    assert meta["qn_grid"]["npix"] == 443 and meta["mgii_grid"]["npix"] == 3841 and len(meta["sources"]) == 68
    assert table.schema.field("QN_FLUX").type.list_size == 443
    before = shards[1].stat().st_mtime_ns
    result = runner.invoke(cli, ["preprocess", source, "--out", str(tmp_path)])
    assert result.exit_code == 0 and shards[1].stat().st_mtime_ns == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_cli_refuses_truncated_spplate_by_name(sdss_dir, tmp_path, caplog):
    path = sdss_dir / "spplate_truncated/spPlate-4055-55359-0020.fits"
    result = CliRunner().invoke(cli, ["preprocess", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "spPlate-4055-55359-0020.fits: spPlate has 1 HDU(s); missing HDU1 IVAR" in caplog.text
    assert not list(tmp_path.rglob("*.parquet"))


def test_run_sums_equal_bincount_on_a_grid_of_uneven_runs():
    # 1.3e-4 dex pixels: the 1e-3 bins hold 7 or 8 pixels, and the grid starts mid-bin.
    loglam = np.log10(3590.0) + 1.3e-4 * np.arange(3500)
    rng = np.random.default_rng(5)
    flux = rng.normal(5.0, 1.0, (4, loglam.size)).astype(np.float32)
    ivar = rng.uniform(0.0, 2.0, (4, loglam.size)).astype(np.float32)
    and_mask = np.zeros(flux.shape, np.int32)
    shared, shared_flag = quasarnet_input(loglam, flux, ivar, and_mask)
    per_row, per_row_flag = quasarnet_input(np.tile(loglam, (4, 1)), flux, ivar, and_mask)
    np.testing.assert_allclose(shared, per_row, atol=1e-5)
    np.testing.assert_array_equal(shared_flag, per_row_flag)
    assert np.count_nonzero(shared[0]) > 400
