"""MgII CNN training: labels, noise, balanced epochs with injections, and a 1-epoch run of the command."""

import json

import fitsio
import numpy as np
import pytest

from qsopipe.models.train_mgii import Sightlines, draw_epoch, ew_noise, sightline_labels
from qsopipe.pipeline.constants import FWHM_PER_SIGMA, MGII_2796
from qsopipe.pipeline.grids import MGII_DLOGLAM, MGII_NPIX, mgii_loglam

WAVE = 10 ** mgii_loglam()


def _sightlines(n=16, snr=20.0, seed=0):
    """Power-law quasars at z 1.2-2.2 on the MgII grid; sightline 0 gets a strong, 1 a weak, absorber."""
    rng = np.random.default_rng(seed)
    z_qso = np.linspace(1.2, 2.2, n)
    continuum = 5.0 * (WAVE / 5000.0) ** -1.0
    ivar = np.broadcast_to((snr / continuum) ** 2, (n, MGII_NPIX)).astype(np.float32)
    flux = (continuum + rng.normal(size=(n, MGII_NPIX)) / np.sqrt(ivar)).astype(np.float32)
    absorbers = {"row": np.array([0, 1]), "z_abs": np.array([1.0, 1.1]),
                 "ew_2796": np.array([1.5, 0.1]), "ew_2803": np.array([1.0, 0.08])}
    ids = np.arange(n)
    return Sightlines(flux=flux, ivar=ivar, z_qso=z_qso, plate=np.full(n, 9000, np.int32),
                      mjd=np.full(n, 57000, np.int32), fiberid=(ids + 1).astype(np.int32),
                      thing_id=ids.astype(np.int64), absorbers=absorbers)


def test_ew_noise_matches_the_gaussian_formula():
    flux = np.full((1, MGII_NPIX), 2.0, np.float32)
    ivar = np.full((1, MGII_NPIX), 25.0, np.float32)
    z_abs, fwhm = 1.3, 1.7
    centre = MGII_2796 * (1 + z_abs)
    sigma_obs = fwhm * (1 + z_abs) / FWHM_PER_SIGMA
    pixel = centre * np.log(10) * MGII_DLOGLAM
    expected = np.sqrt(2 * np.sqrt(np.pi) * sigma_obs * pixel / 25.0) / 2.0 / (1 + z_abs)
    assert ew_noise(flux, ivar, [0], [z_abs], fwhm)[0] == pytest.approx(expected, rel=0.02)
    assert np.isinf(ew_noise(flux, np.zeros_like(ivar), [0], [z_abs])[0])


def test_labels_and_clean_rows():
    sightlines = _sightlines()
    label, clean = sightline_labels(sightlines)
    assert label[0] == 1 and label[1] == 0 and label[2:].sum() == 0
    assert not clean[0] and not clean[1] and clean[2:].all()
    part = sightlines.subset(np.arange(1, 16))
    assert part.absorbers["row"].tolist() == [0] and len(part) == 15


def test_epoch_is_balanced_and_injected():
    sightlines = _sightlines(snr=30)
    label, clean = sightline_labels(sightlines)
    x, y = draw_epoch(sightlines, label, clean, 40, np.random.default_rng(1))
    assert 36 <= len(x) <= 40 and x.shape[1] == MGII_NPIX and x.dtype == np.float32 and y.dtype == np.float32
    assert 16 <= y.sum() <= 20 and len(x) - y.sum() == 20
    continuum = np.nanmedian(np.where(x != 0, x, np.nan), axis=1)
    assert np.all(np.isfinite(x)) and np.all(continuum > -0.5)
    again, _ = draw_epoch(sightlines, label, clean, 40, np.random.default_rng(2))
    assert not np.array_equal(x, again)


def _write_sim(root, n=24, seed=0):
    """A tiny fake simulator run: one spPlate of n quasars and truth.fits with MGII_ABSORBERS."""
    from qsopipe.stages.simulate.absorbers import inject_mgii_doublet

    rng = np.random.default_rng(seed)
    coeff0, npix = np.log10(3600.0), 4600
    loglam = coeff0 + 1e-4 * np.arange(npix)
    wave = 10 ** loglam
    z_qso = rng.uniform(1.2, 2.2, n)
    continuum = 5.0 * (wave / 5000.0) ** -1.0
    ivar = np.broadcast_to((15.0 / continuum) ** 2, (n, npix)).astype(np.float32)
    flux = np.broadcast_to(continuum, (n, npix)).astype(np.float32).copy()
    rows = np.arange(0, n, 3)
    z_abs = (1 + z_qso[rows]) * 2300 / MGII_2796 - 1
    ew = np.full(rows.size, 1.2)
    inject_mgii_doublet(loglam, flux, z_abs, ew, ew / 1.4, np.full(rows.size, 1.7), rows=rows)
    flux += (rng.normal(size=(n, npix)) / np.sqrt(ivar)).astype(np.float32)
    plate, mjd = 9001, 57001
    spectra = root / "spectra" / f"{plate:04d}"
    spectra.mkdir(parents=True)
    header = {"COEFF0": coeff0, "COEFF1": 1e-4, "PLATEID": plate, "MJD": mjd}
    fiberid = np.arange(1, n + 1, dtype=np.int32)
    plugmap = np.zeros(n, [("FIBERID", "i4"), ("RA", "f8"), ("DEC", "f8"), ("OBJTYPE", "U16"), ("THING_ID", "i8")])
    plugmap["FIBERID"], plugmap["OBJTYPE"], plugmap["THING_ID"] = fiberid, "QSO", 1000 + fiberid
    with fitsio.FITS(spectra / f"spPlate-{plate:04d}-{mjd:05d}.fits", "rw", clobber=True) as fits:
        fits.write(flux, header=header)
        fits.write(ivar)
        fits.write(np.zeros((n, npix), np.int32))
        fits.write(np.zeros((n, npix), np.int32))
        fits.write(np.ones((n, npix), np.float32))
        fits.write(plugmap)
        fits.write(np.zeros((n, npix), np.float32))
    truth = np.zeros(n, [("PLATE", "i4"), ("MJD", "i4"), ("FIBERID", "i4"), ("THING_ID", "i8"),
                         ("CLASS_PERSON", "i2"), ("Z_VI", "f8"), ("Z_CONF_PERSON", "i2"),
                         ("BAL_FLAG_VI", "i2"), ("BI_CIV", "f8")])
    truth["PLATE"], truth["MJD"], truth["FIBERID"], truth["THING_ID"] = plate, mjd, fiberid, 1000 + fiberid
    truth["CLASS_PERSON"], truth["Z_VI"], truth["Z_CONF_PERSON"] = 3, z_qso, 3
    absorbers = np.zeros(rows.size, [("PLATE", "i4"), ("MJD", "i4"), ("FIBERID", "i4"), ("Z_ABS", "f8"),
                                     ("EW_2796", "f8"), ("EW_2803", "f8")])
    absorbers["PLATE"], absorbers["MJD"], absorbers["FIBERID"] = plate, mjd, fiberid[rows]
    absorbers["Z_ABS"], absorbers["EW_2796"], absorbers["EW_2803"] = z_abs, ew, ew / 1.4
    with fitsio.FITS(root / "truth.fits", "rw", clobber=True) as fits:
        fits.write(truth, extname="TRUTH")
        fits.write(absorbers, extname="MGII_ABSORBERS")
    return root


def test_read_sim_sightlines(tmp_path):
    from qsopipe.models.train_mgii import read_sim_sightlines

    sightlines = read_sim_sightlines(_write_sim(tmp_path))
    assert len(sightlines) == 24 and sightlines.flux.shape == (24, MGII_NPIX)
    assert sightlines.absorbers["row"].size == 8
    label, clean = sightline_labels(sightlines)
    assert label.sum() == 8 and clean.sum() == 16


def test_train_command_one_epoch_then_resume(tmp_path):
    from click.testing import CliRunner

    from qsopipe.models.train_mgii import command

    sim = _write_sim(tmp_path / "sim")
    out = tmp_path / "model" / "mgii.keras"
    args = ["--sim", str(sim), "--out", str(out), "--samples-per-epoch", "48", "--batch-size", "16"]
    result = CliRunner().invoke(command, args + ["--epochs", "1"])
    assert result.exit_code == 0, result.output
    for name in ("mgii.keras", "mgii.checkpoint.keras", "mgii.checkpoint.json", "mgii.history.json",
                 "mgii.history.png"):
        assert (out.parent / name).is_file(), name
    result = CliRunner().invoke(command, args + ["--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    history = json.loads((out.parent / "mgii.history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2

    import keras
    model = keras.models.load_model(out)
    assert model.output_shape == (None, 1)
