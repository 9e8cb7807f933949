"""Gaussian line profiles added to, or absorbed from, many spectra at once.

Each line touches only a window of pixels around its centre, so the cost is
n_objects x window, not n_objects x npix. The grid must be uniform in log10(A).
"""

import numpy as np

from qsopipe.pipeline.constants import FWHM_PER_SIGMA, SPEED_OF_LIGHT_KMS

#: Windows extend to this many Gaussian sigmas either side of the centre.
WINDOW_SIGMAS = 3.7
#: Lines per window group (sorted by width).
GROUP_SIZE = 48
LN10 = np.log(10.0)


def grid_step(loglam):
    """The constant log10(A) step of a uniform grid (raises ValueError otherwise)."""
    loglam = np.asarray(loglam, np.float64)
    step = (loglam[-1] - loglam[0]) / (loglam.size - 1)
    middle = loglam.size // 2
    if not np.allclose(loglam[[1, middle + 1]] - loglam[[0, middle]], step, rtol=1e-3, atol=1e-9):
        raise ValueError("line profiles need a grid uniform in log10(wavelength)")
    return step


def _windows(loglam, centre_loglam, sigma_loglam):
    """Pixel indices (n, w), validity mask and the Gaussian (n, w), peak 1, around each centre."""
    step = grid_step(loglam)
    half = int(np.ceil(WINDOW_SIGMAS * np.max(sigma_loglam, initial=step) / step)) + 1
    centre_pix = (centre_loglam - loglam[0]) / step
    index = np.rint(centre_pix).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    valid = (index >= 0) & (index < loglam.size)
    index = np.clip(index, 0, loglam.size - 1)
    inv_width = (step / np.asarray(sigma_loglam, np.float64)).astype(np.float32)[:, None]
    distance = (index - centre_pix[:, None]).astype(np.float32) * inv_width
    gauss = np.exp(np.float32(-0.5) * distance * distance)
    gauss[~valid] = 0.0
    return index, gauss


def velocity_sigma_loglam(fwhm_kms):
    """Gaussian sigma in log10(A) for a FWHM in km/s."""
    return np.asarray(fwhm_kms) / FWHM_PER_SIGMA / SPEED_OF_LIGHT_KMS / LN10


def add_emission_lines(flux, loglam, rows, centre_A, ew_obs_A, sigma_loglam, continuum):
    """Add Gaussian emission lines in place.

    flux : (nobj, npix) float array, modified. loglam : (npix,) uniform grid.
    rows : (n,) row of flux each line goes to (distinct rows within one call).
    centre_A : (n,) observed centre, Angstrom. ew_obs_A : (n,) observed-frame
    equivalent width, Angstrom, against `continuum` : (n,) the continuum flux
    density at the line. sigma_loglam : (n,) Gaussian sigma in log10(A).
    """
    sigma_A = sigma_loglam * LN10 * centre_A
    peak = ew_obs_A * continuum / (np.sqrt(2.0 * np.pi) * sigma_A)
    for group in _width_groups(sigma_loglam):
        index, gauss = _windows(loglam, np.log10(centre_A[group]), sigma_loglam[group])
        flux[rows[group, None], index] += (peak[group, None] * gauss).astype(flux.dtype)
    return flux


def _width_groups(sigma_loglam):
    """Index groups of about GROUP_SIZE lines of similar width, so each group's window fits it."""
    order = np.argsort(sigma_loglam, kind="stable")
    return np.array_split(order, int(np.ceil(order.size / GROUP_SIZE))) if order.size else []


def absorb_lines(flux, loglam, rows, centre_A, ew_obs_A, sigma_loglam, max_depth=0.97):
    """Multiply Gaussian absorption lines into flux in place: flux *= 1 - depth * G.

    ew_obs_A is the observed-frame equivalent width in Angstrom. Where the
    implied central depth would exceed max_depth, the line is broadened so its
    equivalent width is kept (a saturated line is wide, not deeper than 1).
    Returns the sigma actually used, log10(A), shape (n,).
    """
    if len(rows) == 0:
        return np.asarray(sigma_loglam, np.float64)
    centre_A = np.asarray(centre_A, np.float64)
    sigma_A = np.asarray(sigma_loglam) * LN10 * centre_A
    sigma_A = np.maximum(sigma_A, ew_obs_A / (np.sqrt(2.0 * np.pi) * max_depth))
    sigma_loglam = sigma_A / (LN10 * centre_A)
    depth = ew_obs_A / (np.sqrt(2.0 * np.pi) * sigma_A)
    index, gauss = _windows(loglam, np.log10(centre_A), sigma_loglam)
    flux[rows[:, None], index] *= (1.0 - depth[:, None] * gauss).astype(flux.dtype)
    return sigma_loglam
