"""Derive the small reference tables the survey simulator ships, from ../shared/data.

Writes three files under stages/simulate/data/ (derived statistics, no copy of any
catalog or spectrum):

- ``boss_noise_sky.npz``: on the simulator's spPlate grid (COEFF0 3.5528,
  1e-4 dex, 4637 pixels): the median 1-sigma noise of faint BOSS spectra
  (1e-17 erg/s/cm^2/A), the median sky spectrum and its line part (sky minus
  a running median), the per-pixel fraction of spectra with and_mask bits
  2 (BADFLAT), 16 (NEARBADPIXEL), 17 (LOWFLAT) and 23 (BRIGHTSKY) set.
- ``mgii_dr12_distribution.npz``: a random sample of 4000 (z, W_2796, W_2803)
  triplets of the Raghunathan et al. (2016) DR12 MgII catalog, rounded to 0.01.
- ``qso_eigen_coefficients.npz``: per redrock QSO template (LOZ below z 1.5,
  HIZ above), the 4 eigen coefficients fitted to each real quasar with a
  confident pipeline redshift (CLASS QSO, ZWARNING 0) and a median S/N per
  pixel of at least MIN_FIT_SNR, at its pipeline redshift, on pixels with
  ivar > 0 red of 1100 A rest (the forest fitted with HIZ's mean transmission); each quasar's coefficients are divided by
  the mean of its fitted model over those pixels.

Run: .venv/bin/python benchmarks/make_simulate_reference.py [SHARED_DATA]
"""

import glob
import sys
from pathlib import Path

import fitsio
import numpy as np
from scipy.ndimage import median_filter

from qsopipe.pipeline.sdss.spec import read_spec
from qsopipe.stages.simulate.quasar_eigen import basis_at, template_names

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "stages" / "simulate" / "data"
COEFF0, COEFF1, NPIX = 3.5528, 1e-4, 4637
MASK_BITS = (2, 16, 17, 23)
FAINT_FLUX = 1.0  # median flux below which a spectrum is sky-noise dominated
MIN_FIT_SNR = 1.0  # median S/N per pixel a real quasar needs for its eigen coefficients to be kept
FIT_MIN_REST_A = 1100.0  # blue limit of the fit (HIZ has the mean forest built in)


def noise_and_sky(sdss_dir):
    sigma, sky, bits = [], [], []
    for path in sorted(glob.glob(str(sdss_dir / "dr16_spec_lite_picca" / "*" / "spec-*.fits"))):
        coadd = fitsio.read(path, 1)
        index = np.round((coadd["LOGLAM"] - COEFF0) / COEFF1).astype(int)
        inside = (index >= 0) & (index < NPIX)
        row_sigma = np.full(NPIX, np.nan)
        ivar = coadd["IVAR"][inside]
        row_sigma[index[inside]] = np.where(ivar > 0, 1 / np.sqrt(np.maximum(ivar, 1e-30)), np.nan)
        row_sky = np.full(NPIX, np.nan)
        row_sky[index[inside]] = coadd["SKY"][inside]
        row_bits = np.zeros((len(MASK_BITS), NPIX))
        for k, bit in enumerate(MASK_BITS):
            row_bits[k, index[inside]] = (coadd["AND_MASK"][inside] >> bit) & 1
        if np.median(coadd["FLUX"]) < FAINT_FLUX:
            sigma.append(row_sigma)
        sky.append(row_sky)
        bits.append(row_bits)
    sigma = _fill_edges(np.nanmedian(np.array(sigma), axis=0))
    sky = _fill_edges(np.nanmedian(np.array(sky), axis=0))
    sky_lines = np.clip(sky - median_filter(sky, size=61, mode="nearest"), 0, None)
    return {
        "coeff0": COEFF0, "coeff1": COEFF1, "sigma": sigma.astype(np.float32),
        "sky": sky.astype(np.float32), "sky_lines": sky_lines.astype(np.float32),
        "mask_bits": np.array(MASK_BITS), "mask_fraction": np.mean(bits, axis=0).astype(np.float32),
    }


def _fill_edges(values):
    good = np.flatnonzero(np.isfinite(values))
    return np.interp(np.arange(values.size), good, values[good])


def mgii_sample(catalog, n=4000, seed=2019):
    table = fitsio.read(catalog, 1, columns=["z", "W_2796", "W_2803"])
    rows = np.random.default_rng(seed).choice(len(table), size=min(n, len(table)), replace=False)
    return {name.lower(): np.round(table[name][rows].astype(np.float64), 2) for name in ("z", "W_2796", "W_2803")}


def quasar_eigen_coefficients(sdss_dir):
    """Normalised eigen coefficients of the real quasars: {'LOZ_coefficients': (n, 4), 'HIZ_coefficients': (m, 4)}."""
    fitted = {"LOZ": [], "HIZ": []}
    for path in sorted(glob.glob(str(sdss_dir / "**" / "spec-*.fits"), recursive=True)):
        plate = read_spec(path)
        fiber = plate.fibers[0]
        if str(fiber["CLASS_PIPE"]).strip() != "QSO" or fiber["ZWARNING_PIPE"] != 0:
            continue
        z = float(fiber["Z_PIPE"])
        name = str(template_names([z])[0])
        flux, ivar = plate.flux[0].astype(np.float64), plate.ivar[0].astype(np.float64)
        used = (ivar > 0) & np.isfinite(flux) & (10.0 ** plate.loglam / (1.0 + z) > FIT_MIN_REST_A)
        if used.sum() < 500 or np.median(flux[used] * np.sqrt(ivar[used])) < MIN_FIT_SNR:
            continue
        basis = basis_at(name, plate.loglam[used], z)
        weighted = basis * ivar[used]
        coefficients = np.linalg.solve(weighted @ basis.T, weighted @ flux[used])
        fitted[name].append(coefficients / np.mean(coefficients @ basis))
    return {f"{name}_coefficients": np.array(rows, np.float32) for name, rows in fitted.items()}


def main(shared=REPO.parent / "shared" / "data"):
    shared = Path(shared)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "boss_noise_sky.npz", **noise_and_sky(shared / "sdss"))
    np.savez_compressed(OUT / "mgii_dr12_distribution.npz", **mgii_sample(shared / "catalogs" / "MgII_DR12.fits"))
    np.savez_compressed(OUT / "qso_eigen_coefficients.npz", **quasar_eigen_coefficients(shared / "sdss"))


if __name__ == "__main__":
    main(*sys.argv[1:])
