"""The CIV BAL CNN: its window and input, the stage's decision, the shipped weights on simulated quasars,
and a 1-epoch run of `qsopipe train bal` that resumes."""

import json

import numpy as np
import pyarrow as pa
import pytest

from qsopipe.models import bal
from qsopipe.pipeline.constants import CIV_EMISSION
from qsopipe.pipeline.grids import MGII_NPIX, mgii_loglam
from qsopipe.pipeline.parquet_io import fixed_size_list
from qsopipe.stages.bal import bal_decision, bal_probability, process_plate

WAVE = 10 ** mgii_loglam()


def _quasars(z_qso, trough_kms=None, snr=20.0, seed=0):
    """Flat-continuum spectra (n, 3841) at z_qso; with trough_kms (lo, hi), a 60%-deep CIV trough there."""
    z_qso = np.asarray(z_qso, np.float64)
    rng = np.random.default_rng(seed)
    continuum = np.full((len(z_qso), MGII_NPIX), 3.0)
    if trough_kms is not None:
        rest = WAVE[None, :] / (1 + z_qso[:, None])
        inside = (rest > bal.rest_wavelength(trough_kms[1])) & (rest < bal.rest_wavelength(trough_kms[0]))
        continuum = np.where(inside, 0.4 * continuum, continuum)
    ivar = np.full(continuum.shape, (snr / 3.0) ** 2, np.float32)
    return (continuum + rng.normal(size=continuum.shape) / np.sqrt(ivar)).astype(np.float32), ivar


def test_window_starts_at_its_rest_wavelength():
    start = bal.window_start([2.0, 3.5])
    assert WAVE[start] / np.array([3.0, 4.5]) == pytest.approx(bal.WINDOW_REST_MIN, rel=1e-4)
    assert bal.rest_wavelength(0.0) == CIV_EMISSION
    assert bal.rest_wavelength(bal.BI_VMAX) < bal.rest_wavelength(bal.BI_VMIN) < CIV_EMISSION


def test_input_shows_the_trough_at_its_velocity():
    flux, ivar = _quasars([2.5], trough_kms=(8000.0, 14000.0))
    x, usable = bal.spectra_input(flux, ivar, [2.5])
    assert x.shape == (1, bal.INPUT_NPIX, 2) and x.dtype == np.float32 and usable.all()
    rest = bal.WINDOW_REST_MIN * 10 ** (bal.BIN * 1e-4 * np.arange(bal.INPUT_NPIX))
    trough = (rest > bal.rest_wavelength(13500.0)) & (rest < bal.rest_wavelength(8500.0))
    clear = (rest > bal.rest_wavelength(5000.0)) & (rest < bal.rest_wavelength(3000.0))
    assert np.median(x[0, trough, 0]) == pytest.approx(-0.6, abs=0.05)
    assert np.median(x[0, clear, 0]) == pytest.approx(0.0, abs=0.05)
    assert np.median(x[0, :, 1]) == pytest.approx(1 / 20 / np.sqrt(2), rel=0.05)


def test_windows_off_the_grid_are_unusable():
    flux, ivar = _quasars([1.2, 1.5, 2.5])
    ivar[2] = 0
    x, usable = bal.spectra_input(flux, ivar, [1.2, 1.5, 2.5])
    assert usable.tolist() == [False, False, False]
    assert not x.any()


def test_probability_only_where_the_cnn_ran():
    flux, ivar = _quasars([2.5, 2.5, 1.2, np.nan, 3.0])
    seen = []

    def predict(x):
        seen.append(len(x))
        return np.full(len(x), 0.7, np.float32)

    candidate = np.array([True, False, True, True, True])
    probability = bal_probability(flux, ivar, [2.5, 2.5, 1.2, np.nan, 3.0], candidate, predict)
    assert probability.tolist() == pytest.approx([0.7, -1, -1, -1, 0.7])
    assert seen == [2]


def test_flag_falls_back_to_quasarnet_where_the_cnn_did_not_run():
    is_qso = [True, True, True, True, False]
    probability = [0.9, 0.01, -1.0, -1.0, 0.9]
    flag_qn = [0, 1, 1, 0, 1]
    assert bal_decision(is_qso, probability, flag_qn, 0.5).tolist() == [1, 0, 1, 0, 0]


def test_stage_refuses_results_in_another_fiber_order():
    flux, ivar = _quasars([2.5, 2.6])
    fiberid = pa.array([1, 2], pa.int32())
    shard = pa.table({"PLATE": pa.array([7000, 7000], pa.int32()), "MJD": pa.array([57000, 57000], pa.int32()),
                      "FIBERID": fiberid, "PREP_FLAG": pa.array([0, 0], pa.int32()),
                      "MGII_FLUX": fixed_size_list(flux), "MGII_IVAR": fixed_size_list(ivar)})
    qn = pa.table({"FIBERID": fiberid, "IS_QSO_QN": pa.array([1, 1], pa.int16()), "QN_FLAG": pa.array([0, 0]),
                   "BAL_FLAG_QN": pa.array([0, 1], pa.int16())})
    zfit = pa.table({"FIBERID": fiberid, "Z": pa.array([2.5, 2.6])})
    table = process_plate(shard, qn, zfit, lambda x: np.full(len(x), 0.2, np.float32), 0.1)
    assert table.column("BAL_PROB").to_pylist() == pytest.approx([0.2, 0.2])
    assert table.column("BAL_FLAG").to_pylist() == [1, 1]
    with pytest.raises(ValueError, match="same fibers"):
        process_plate(shard, qn.take([1, 0]), zfit, lambda x: x[:, 0, 0], 0.1)


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    """Three simulated plates of 400 fibers."""
    from click.testing import CliRunner

    from qsopipe.pipeline.cli import cli

    out = tmp_path_factory.mktemp("bal") / "sim"
    result = CliRunner().invoke(cli, ["simulate", "--out", str(out), "--plates", "3", "--fibers", "400",
                                      "--seed", "4242", "--first-plate", "9500", "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_shipped_cnn_separates_simulated_bals(sim_run):
    """At the truth redshift, the shipped CNN at the default threshold flags most BI_CIV > 0 quasars and few others."""
    from qsopipe.models.store import default_weights, load_model
    from qsopipe.models.train_bal import read_sim_windows, shifted_input
    from qsopipe.pipeline.config import defaults

    windows = read_sim_windows(sim_run)
    x, usable = shifted_input(windows.flux, windows.ivar, np.random.default_rng(0))
    probability = bal.make_predictor(load_model(str(default_weights("bal"))))(x[usable])
    is_bal = windows.label[usable] == 1
    flagged = probability > defaults()["bal_prob_th"]
    assert is_bal.sum() >= 20 and (~is_bal).sum() >= 200
    assert flagged[is_bal].mean() >= 0.9
    assert (~flagged[~is_bal]).mean() >= 0.95


def test_train_one_epoch_then_resume(sim_run, tmp_path):
    from click.testing import CliRunner

    from qsopipe.pipeline.cli import cli

    out = tmp_path / "bal.keras"
    args = ["train", "bal", "--sim", str(sim_run), "--out", str(out), "--epochs", "1", "--batch-size", "64", "-q"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert json.loads((tmp_path / "bal.checkpoint.json").read_text())["epoch"] == 1
    again = CliRunner().invoke(cli, [*args[:7], "2", *args[8:], "--resume"])
    assert again.exit_code == 0, again.output
    history = json.loads((tmp_path / "bal.history.json").read_text())
    assert len(history["loss"]) == 2 and out.is_file() and (tmp_path / "bal.history.png").is_file()
