"""The simulator's wavelength grids: the BOSS spPlate grid and a rest-frame template grid.

All grids are uniform in log10(wavelength / Angstrom).
"""

import numpy as np

from qsopipe.pipeline.grids import NATIVE_DLOGLAM

#: log10(A) of the first spPlate pixel (real BOSS plates use 3.5528-3.5530).
COEFF0 = 3.5528
#: log10(A) step of the spPlate grid.
COEFF1 = NATIVE_DLOGLAM
#: Number of spPlate pixels: 3570.5-10385 A, as on a real BOSS plate (4637).
NPIX = 4637

#: Rest-frame template grid used for shape-invariant components (continuum bumps,
#: extinction curves, galaxy and molecular-band templates): 500-13000 A.
REST_LOGLAM_MIN = np.log10(500.0)
REST_NPIX = int(np.ceil((np.log10(13000.0) - REST_LOGLAM_MIN) / NATIVE_DLOGLAM))


def plate_loglam():
    """log10(A) of the spPlate pixels, float64, shape (NPIX,)."""
    return COEFF0 + COEFF1 * np.arange(NPIX)


def rest_loglam():
    """log10(A) of the rest-frame template grid, float64, shape (REST_NPIX,)."""
    return REST_LOGLAM_MIN + NATIVE_DLOGLAM * np.arange(REST_NPIX)


def rest_frame(template, loglam, z):
    """Sample a rest-frame template at each object's rest wavelengths (nearest pixel).

    template : (REST_NPIX,) array on rest_loglam(); loglam : (npix,) observed grid;
    z : (n,) redshifts. Returns (n, npix) float32; pixels off the template take
    the nearest end value. The nearest-pixel error is <= 0.5e-4 dex (35 km/s),
    negligible for the broad components this is used for.
    """
    template = np.asarray(template, np.float32)
    log1pz = np.log10(1.0 + np.atleast_1d(np.asarray(z, np.float64)))
    step = (loglam[-1] - loglam[0]) / max(loglam.size - 1, 1)
    if loglam.size > 1 and abs(step - NATIVE_DLOGLAM) < 1e-9:
        padded = np.concatenate([np.full(loglam.size, template[0]), template, np.full(loglam.size, template[-1])])
        start = np.rint((loglam[0] - log1pz - REST_LOGLAM_MIN) / NATIVE_DLOGLAM).astype(np.int64) + loglam.size
        start = np.clip(start, 0, padded.size - loglam.size)
        return np.lib.stride_tricks.sliding_window_view(padded, loglam.size)[start]
    offset = loglam[None, :] - log1pz[:, None] - REST_LOGLAM_MIN
    index = np.clip(np.rint(offset / NATIVE_DLOGLAM).astype(np.int32), 0, REST_NPIX - 1)
    return template[index]
