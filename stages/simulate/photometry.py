"""Scale noiseless spectra to magnitudes and measure ugriz fiber magnitudes from them.

Bands are boxcars (A, observed): u 3600-4000 (extrapolated u is not measured
below the grid), g 4000-5500, r 5500-6900, i 6900-8400, z 8400-10300. AB
magnitudes from the mean f_lambda at each band's pivot wavelength.
"""

import numpy as np

BANDS_A = (("u", 3600.0, 4000.0), ("g", 4000.0, 5500.0), ("r", 5500.0, 6900.0),
           ("i", 6900.0, 8400.0), ("z", 8400.0, 10300.0))
#: f_lambda of an AB magnitude 0 source, in 1e-17 erg/s/cm^2/A, times lambda^2 (A^2).
AB_ZERO = 3631e-23 * 2.99792458e18 / 1e-17


def band_weights(loglam):
    """(npix, 5) boxcar weights normalised to sum 1 per band, and the pivot wavelengths (5,) A."""
    wave = 10.0 ** loglam
    weights = np.zeros((wave.size, len(BANDS_A)), np.float32)
    pivots = np.zeros(len(BANDS_A))
    for k, (_name, lo, hi) in enumerate(BANDS_A):
        inside = (wave >= lo) & (wave < hi)
        weights[inside, k] = 1.0 / max(inside.sum(), 1)
        pivots[k] = np.sqrt(lo * hi)
    return weights, pivots


def magnitudes(loglam, flux):
    """ugriz AB magnitudes (n, 5) of spectra flux (n, npix) in 1e-17 erg/s/cm^2/A (99 where flux <= 0)."""
    weights, pivots = band_weights(loglam)
    mean = flux @ weights
    with np.errstate(divide="ignore", invalid="ignore"):
        mags = -2.5 * np.log10(mean * pivots**2 / AB_ZERO)
    return np.where(mean > 0, mags, 99.0).astype(np.float32)


def scale_to_magnitude(loglam, flux, mag, band="r"):
    """Scale spectra (n, npix) in place so their `band` AB magnitude equals mag (n,); returns flux."""
    k = [b[0] for b in BANDS_A].index(band)
    weights, pivots = band_weights(loglam)
    mean = flux @ weights[:, k]
    target = AB_ZERO / pivots[k] ** 2 * 10.0 ** (-0.4 * np.asarray(mag, np.float64))
    flux *= (target / np.maximum(mean, 1e-30)).astype(np.float32)[:, None]
    return flux
