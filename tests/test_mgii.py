"""MgII stage: CNN window and finder path, continuum rescaling, flags, the CNN's shapes, process_plate and the CLI."""

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qsopipe.pipeline.grids import MGII_NPIX
from qsopipe.pipeline.ids import target_id
from qsopipe.pipeline.parquet_io import fixed_size_list
from qsopipe.stages.mgii import (
    CONTINUUM_WINDOWS, MgIIFlag, grid_wavelength, path_flags, prepare_input, process_plate, search_path,
    search_window, selection_flags,
)
from qsopipe.stages.mgii_fit import DoubletCriteria, doublet_profile
from qsopipe.stages.mgii_regions import CIV_GAP_REST, CNN_WINDOW_REST, PATH_REST, MgIIRegion
from qsopipe.stages.quasarnet import QNFlag

WAVE = grid_wavelength()


def test_search_window_bounds_and_grid():
    wave_min, wave_max, on_grid = search_window([0.2, 0.5, 2.0, 4.5])
    assert np.allclose(wave_min, CNN_WINDOW_REST[0] * np.array([1.2, 1.5, 3.0, 5.5]))
    assert np.allclose(wave_max, CNN_WINDOW_REST[1] * np.array([1.2, 1.5, 3.0, 5.5]))
    assert 1550 < CNN_WINDOW_REST[0] < 1570 and 2760 < CNN_WINDOW_REST[1] < 2800
    assert on_grid.tolist() == [False, True, True, True]
    assert not search_window([6.0])[2][0]


def test_search_path_runs_from_lyman_alpha_to_mgii():
    wave_min, wave_max, on_grid = search_path([0.2, 2.0, 5.5, 6.5])
    assert np.allclose(wave_min, PATH_REST[0] * np.array([1.2, 3.0, 6.5, 7.5]))
    assert np.allclose(wave_max, PATH_REST[1] * np.array([1.2, 3.0, 6.5, 7.5]))
    assert 1240 < PATH_REST[0] < 1260 and PATH_REST[1] == CNN_WINDOW_REST[1]
    assert on_grid.tolist() == [False, True, True, False]


def test_path_flags():
    flags = path_flags([2.0, 0.2, -1.0, np.nan, 7.0, 5.5])
    assert flags.tolist() == [0, MgIIFlag.PATH_OFF_GRID, MgIIFlag.Z_OUT_OF_RANGE, MgIIFlag.Z_OUT_OF_RANGE,
                              MgIIFlag.PATH_OFF_GRID, 0]


@pytest.mark.parametrize("z_qso", [0.8, 1.5, 2.3, 3.5])
def test_prepare_input_rescales_by_the_bins_window(z_qso):
    """Window median known by construction: level 4 with one high outlier and one masked spike;
    a masked pixel in the search window is bridged from its neighbours, not left as a 0 (a fake line)."""
    (z_high, rest_min, rest_max), = [w for w, low in zip(CONTINUUM_WINDOWS, (0, 1.0, 1.8, 2.8))
                                      if low < z_qso <= w[0]]
    flux = np.full(MGII_NPIX, 2.0, np.float32)
    ivar = np.ones(MGII_NPIX, np.float32)
    window = np.flatnonzero((WAVE >= rest_min * (1 + z_qso)) & (WAVE <= rest_max * (1 + z_qso)))
    flux[window] = 4.0
    flux[window[3]] = 1e4
    flux[window[5]], ivar[window[5]] = -1e4, 0
    masked = np.flatnonzero(WAVE > CNN_WINDOW_REST[0] * (1 + z_qso))[7]
    flux[masked], ivar[masked] = -50.0, 0
    x, searchable = prepare_input(flux[None], ivar[None], np.array([z_qso]))
    assert searchable.tolist() == [True]
    wave_min, wave_max, _ = search_window([z_qso])
    inside = (WAVE >= wave_min[0]) & (WAVE <= wave_max[0])
    bridged = flux.copy()
    bridged[masked], bridged[window[5]] = 2.0, 4.0
    assert x.dtype == np.float32 and x.shape == (1, MGII_NPIX)
    np.testing.assert_allclose(x[0], np.where(inside, bridged / 4.0 - 1, 0), rtol=1e-6, atol=1e-7)
    assert x[0, masked] == pytest.approx(-0.5)


def test_prepare_input_says_where_the_cnn_can_run():
    """Not above z 4.8, not with the window off the grid, not without continuum, not at z <= 0."""
    n = 5
    flux = np.ones((n, MGII_NPIX), np.float32)
    ivar = np.ones((n, MGII_NPIX), np.float32)
    z_qso = np.array([1.5, 5.0, 0.2, 2.3, -1.0])
    window = (WAVE >= 2150 * 3.3) & (WAVE <= 2250 * 3.3)
    flux[3, window] = -1.0
    flux[0, np.flatnonzero(WAVE > 1700 * 2.5)[0]] = 0.5
    x, cnn_ready = prepare_input(flux, ivar, z_qso)
    assert cnn_ready.tolist() == [True, False, False, False, False]
    assert np.all(x[1:] == 0) and np.any(x[0] != 0)
    ivar[0, (WAVE >= 3020 * 2.5) & (WAVE <= 3100 * 2.5)] = 0
    assert not prepare_input(flux[:1], ivar[:1], z_qso[:1])[1][0]


def test_selection_flags():
    """The last fiber is a single-line quasar (QN_FLAG SINGLE_LINE): searched like any quasar."""
    flags = selection_flags([1, 0, 1, 1, 1, 0, 1], [0, 0, 2, 0, 0, 0, QNFlag.SINGLE_LINE], [0, 0, 0, 4, 0, 0, 0],
                            [0, 0, 0, 0, 1, 1, 0])
    assert flags.tolist() == [0, MgIIFlag.NOT_QSO, MgIIFlag.NOT_QSO, MgIIFlag.BAD_PREP, MgIIFlag.BAL, MgIIFlag.NOT_QSO,
                              0]


@pytest.fixture(scope="module")
def cnn():
    from qsopipe.models.mgii import build_model

    return build_model()


def test_network_shapes(cnn):
    from qsopipe.models.mgii import STACK_LENGTHS, MgIIPredictor

    assert cnn.input_shape == (None, MGII_NPIX, 1)
    assert cnn.output_shape == (None, 1)
    for name, length in STACK_LENGTHS.items():
        assert cnn.get_layer(name).output.shape[1] == length
    assert cnn.get_layer("conv1").output.shape[2] == 96
    assert cnn.get_layer("conv1").kernel_size == (15,)
    kinds = [type(layer).__name__ for layer in cnn.layers]
    assert kinds.count("Conv1D") == 5 and kinds.count("MaxPooling1D") == 3 and kinds.count("Dense") == 2
    probability = MgIIPredictor(cnn, batch_size=4)(np.random.default_rng(0).random((6, MGII_NPIX)))
    assert probability.shape == (6,) and np.all((probability > 0) & (probability < 1))
    np.testing.assert_allclose(probability, cnn.predict(np.random.default_rng(0).random((6, MGII_NPIX, 1)),
                                                        verbose=0)[:, 0], rtol=1e-4)


def _quasar(z_qso, absorbers=(), snr=40.0, seed=0):
    """A power-law quasar on the MgII grid with Gaussian doublets (z_abs, rest EW_2796) and noise."""
    continuum = 10.0 * (WAVE / 5000.0) ** -1.5
    depth = sum(doublet_profile(z, ew * (1 + z), ew * (1 + z) / 1.5, 80.0) for z, ew in absorbers)
    ivar = (snr / continuum) ** 2
    noise = np.random.default_rng(seed).normal(size=WAVE.size) / np.sqrt(ivar)
    return (continuum * (1 - depth) + noise).astype(np.float32), ivar.astype(np.float32)


def _tiny_plate():
    """Five fibers: a single-line quasar (QN_FLAG SINGLE_LINE) with absorbers in the CNN window (z 1.2, 1.6)
    and between Lyman-alpha and CIV (z 0.5), a star, an unclassified fiber, a z=0.2 quasar, bad prep."""
    spectra = [_quasar(2.0, [(0.5, 1.0), (1.2, 1.0), (1.6, 0.8)], seed=1), _quasar(1.0, seed=2),
               _quasar(1.5, seed=3), _quasar(0.2, seed=4), _quasar(1.5, seed=5)]
    flux = np.stack([s[0] for s in spectra])
    ivar = np.stack([s[1] for s in spectra])
    ids = {"PLATE": pa.array([7001] * 5, pa.int32()), "MJD": pa.array([56000] * 5, pa.int32()),
           "FIBERID": pa.array([1, 2, 3, 4, 5], pa.int32())}
    shard = pa.table({**ids, "RA": pa.array([10.0 + k for k in range(5)]), "DEC": pa.array([-5.0 - k for k in range(5)]),
                      "PREP_FLAG": pa.array([0, 0, 0, 0, 8], pa.int32()),
                      "MGII_FLUX": fixed_size_list(flux), "MGII_IVAR": fixed_size_list(ivar)})
    qn = pa.table({**ids, "IS_QSO_QN": pa.array([1, 0, 0, 1, 1], pa.int16()),
                   "BAL_FLAG_QN": pa.array([0, 0, 0, 0, 0], pa.int16()),
                   "Z_QN": pa.array([1.99, 0.0, -1.0, 0.2, 1.5]), "QN_FLAG": pa.array([QNFlag.SINGLE_LINE, 0, 1, 0, 0], pa.int32())})
    zfit = pa.table({**ids, "Z": pa.array([2.0, 0.0, -1.0, 0.2, 1.5])})
    return shard, qn, zfit


def test_process_plate_one_row_per_fiber(cnn):
    shard, qn, zfit = _tiny_plate()
    mgii, absorbers = process_plate(shard, qn, zfit, cnn, threshold=0.0)
    assert mgii.num_rows == 5
    assert mgii.column("FIBERID").to_pylist() == [1, 2, 3, 4, 5]
    assert mgii.schema.field("MGII_PROB").type == pa.float32()
    assert mgii.schema.field("N_MGII_ABS").type == pa.int16()
    flags = mgii.column("MGII_FLAG").to_pylist()
    assert flags == [0, MgIIFlag.NOT_QSO, MgIIFlag.NOT_QSO, MgIIFlag.PATH_OFF_GRID, MgIIFlag.BAD_PREP]
    probability = mgii.column("MGII_PROB").to_numpy()
    assert 0 < probability[0] < 1 and np.all(probability[1:] == -1)
    assert mgii.column("IS_MGII_ABS").to_pylist() == [1, -1, -1, -1, -1]
    assert mgii.column("N_MGII_ABS").to_pylist() == [3, -1, -1, -1, -1]
    assert mgii.column("MGII_ABS_REGION").to_pylist() == [MgIIRegion.CNN_WINDOW | MgIIRegion.LYA_CIV, -1, -1, -1, -1]
    assert absorbers.num_rows == 3
    assert np.allclose(absorbers.column("Z_ABS").to_numpy(), [0.5, 1.2, 1.6], atol=2e-4)
    assert absorbers.column("REGION").to_pylist() == [MgIIRegion.LYA_CIV, MgIIRegion.CNN_WINDOW, MgIIRegion.CNN_WINDOW]
    assert absorbers.column("TARGETID").to_pylist() == [target_id(7001, 56000, 1)] * 3
    assert absorbers.column("RA").to_pylist() == [10.0] * 3 and absorbers.column("DEC").to_pylist() == [-5.0] * 3
    assert absorbers.column("Z_QSO").to_pylist() == [2.0] * 3
    assert np.all(absorbers.column("SNR_2803").to_numpy() > 3)
    assert absorbers.schema.field("EW_2796").type == pa.float32()
    assert absorbers.schema.field("Z_ABS").type == pa.float64()

    mgii, absorbers = process_plate(shard, qn, zfit, cnn, threshold=1.0)
    assert mgii.column("IS_MGII_ABS").to_pylist() == [1, -1, -1, -1, -1]
    assert mgii.column("N_MGII_ABS").to_pylist()[0] == 1 and absorbers.column("REGION").to_pylist() == [2]


def test_process_plate_records_the_path_searched(cnn):
    """The whole path of a z = 2 quasar with every pixel good (z 0.36 at the grid's start to 1.97, less the
    CIV gap), its limit at S/N 40 per pixel, and a masked stretch left out of MGII_DZ."""
    shard, qn, zfit = _tiny_plate()
    mgii, _ = process_plate(shard, qn, zfit, cnn, threshold=0.0)
    z_min, z_max, dz, limit = (mgii.column(name).to_numpy() for name in
                               ("MGII_ZMIN", "MGII_ZMAX", "MGII_DZ", "MGII_EW_LIMIT"))
    assert z_min[0] == pytest.approx(max(PATH_REST[0] * 3.0, WAVE[0]) / 2796.354 - 1, abs=5e-4)
    assert z_max[0] == pytest.approx(PATH_REST[1] * 3.0 / 2803.531 - 1, abs=5e-4)
    gap = (CIV_GAP_REST[1] - CIV_GAP_REST[0] * 2796.354 / 2803.531) * 3.0 / 2796.354
    assert dz[0] == pytest.approx(z_max[0] - z_min[0] - gap, rel=0.01)
    # 5 x depth error (1/40 and the continuum's 0.02 in quadrature: 0.032) over the template's root sum of
    # squares (1.85), times its EW per unit depth (sqrt(2 pi) 1.3 pixels of ~1.4 A) over 1 + z ~ 2: about 0.19 A.
    assert 0.16 < limit[0] < 0.21
    assert np.all(np.stack([z_min, z_max, dz, limit])[:, 1:] == -1)
    ivar = np.stack(shard.column("MGII_IVAR").to_numpy(zero_copy_only=False))
    ivar[0, (WAVE > 5000) & (WAVE < 5500)] = 0
    masked = shard.set_column(shard.schema.get_field_index("MGII_IVAR"), "MGII_IVAR", fixed_size_list(ivar))
    mgii, _ = process_plate(masked, qn, zfit, cnn, threshold=0.0)
    lost = np.log(5500 / 5000) / 2796.354 * 5250
    assert mgii.column("MGII_DZ").to_numpy()[0] == pytest.approx(dz[0] - lost, abs=0.01)


def test_process_plate_rejects_misaligned_tables(cnn):
    shard, qn, zfit = _tiny_plate()
    with pytest.raises(ValueError, match="QuasarNET results do not list the same fibers"):
        process_plate(shard, qn.take([1, 0, 2, 3, 4]), zfit, cnn, threshold=0.0)
    with pytest.raises(ValueError, match="redshift-fit results do not list the same fibers"):
        process_plate(shard, qn, zfit.take([1, 0, 2, 3, 4]), cnn, threshold=0.0)


def test_command_writes_both_tables(cnn, tmp_path, caplog):
    from click.testing import CliRunner

    from qsopipe.pipeline.parquet_io import read_metadata
    from qsopipe.stages.mgii import command

    shard, qn, zfit = _tiny_plate()
    for folder in ("shards/PLATE=7001", "results/quasarnet", "results/zfit"):
        (tmp_path / folder).mkdir(parents=True)
    pq.write_table(shard, tmp_path / "shards" / "PLATE=7001" / "plate-7001-56000.parquet")
    pq.write_table(qn, tmp_path / "results" / "quasarnet" / "qn-7001-56000.parquet")
    pq.write_table(zfit, tmp_path / "results" / "zfit" / "zfit-7001-56000.parquet")
    model_path = tmp_path / "mgii.keras"
    cnn.save(model_path)
    result = CliRunner().invoke(command, [str(tmp_path / "shards"), "--qn", str(tmp_path / "results"),
                                          "--out", str(tmp_path / "results"), "--model", str(model_path),
                                          "--threshold", "0"])
    assert result.exit_code == 0, result.output
    mgii = pq.read_table(tmp_path / "results" / "mgii" / "mgii-7001-56000.parquet")
    absorbers = pq.read_table(tmp_path / "results" / "mgii" / "absorbers-7001-56000.parquet")
    assert mgii.num_rows == 5 and absorbers.num_rows == 3
    metadata = read_metadata(absorbers.schema)
    assert metadata["mgii_threshold"] == 0.0 and len(metadata["mgii_model_sha256"]) == 64
    finder = {key: tuple(value) if isinstance(value, list) else value for key, value in metadata["mgii_finder"].items()}
    assert DoubletCriteria(**finder) == DoubletCriteria()
    assert metadata["mgii_vetter_model"].endswith("mgii_vetter.json")
    assert len(metadata["mgii_vetter_model_sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "results" / "mgii").iterdir()) == [
        "absorbers-7001-56000.parquet", "mgii-7001-56000.parquet"]

    arguments = [str(tmp_path / "shards"), "--qn", str(tmp_path / "results"), "--out", str(tmp_path / "results"),
                 "--model", str(model_path)]
    written = (tmp_path / "results" / "mgii" / "mgii-7001-56000.parquet").stat().st_mtime_ns
    caplog.set_level(logging.INFO, logger="qsopipe.pipeline.stage")
    rerun = CliRunner().invoke(command, arguments + ["--threshold", "0"])
    assert rerun.exit_code == 0 and "up to date, skipped" in caplog.text
    assert (tmp_path / "results" / "mgii" / "mgii-7001-56000.parquet").stat().st_mtime_ns == written
    for changed in (["--threshold", "1"], ["--threshold", "0", "--force"]):
        caplog.clear()
        redo = CliRunner().invoke(command, arguments + changed)
        assert redo.exit_code == 0 and "skipped" not in caplog.text and "absorbers in" in caplog.text, changed
    assert read_metadata(pq.read_schema(tmp_path / "results" / "mgii" / "mgii-7001-56000.parquet"))[
        "mgii_threshold"] == 0.0


def test_command_imports_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys; import qsopipe.stages.mgii as m; m.command; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

