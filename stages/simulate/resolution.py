"""The simulated spectrograph's line-spread function: WAVEDISP per pixel, and convolution to it.

WAVEDISP is the Gaussian sigma of the line-spread function in pixels of
1e-4 dex (the spPlate pixel), as in the spPlate WAVEDISP HDU and the spec-lite
WDISP column. The simulator uses one curve for every fiber: quadratic fits in
wavelength to the median WDISP of the 80 real DR16 spec-lite files in
../shared/data, one per spectrograph arm, blended across the dichroic. The
fits are within 0.05 pixel of that median at every wavelength; single fibers
scatter about it by ~10%.
"""

import numpy as np
import scipy.sparse

from qsopipe.pipeline.grids import NATIVE_DLOGLAM

#: WAVEDISP of the blue and the red arm: c0 + c1 x + c2 x^2, x = (lambda - 6000 A) / 1000 A.
BLUE_ARM = (0.831, 0.060, 0.116)
RED_ARM = (1.046, -0.175, 0.032)
#: Wavelengths (A) over which the coadd goes from the blue arm's resolution to the red arm's.
DICHROIC_A = (5850.0, 6250.0)
#: Kernels reach this many sigma either side.
KERNEL_SIGMAS = 4.0


def wavedisp(loglam):
    """Line-spread sigma (npix,) float32, in pixels of 1e-4 dex, at log10(A) loglam (npix,)."""
    wave = 10.0 ** np.asarray(loglam, np.float64)
    x = (wave - 6000.0) / 1000.0
    blue = np.polynomial.polynomial.polyval(x, BLUE_ARM)
    red = np.polynomial.polynomial.polyval(x, RED_ARM)
    weight = np.clip((wave - DICHROIC_A[0]) / (DICHROIC_A[1] - DICHROIC_A[0]), 0.0, 1.0)
    return ((1.0 - weight) * blue + weight * red).astype(np.float32)


def _discrete_variance(width, half):
    """Variance (in pixels^2) of the unit-sum kernel exp(-k^2 / 2 width^2), k = -half..half, per width."""
    k = np.arange(-half, half + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (k[None, :] / width[:, None]) ** 2)
    return (weights * k**2).sum(axis=1) / weights.sum(axis=1)


def gaussian_matrix(sigma_px):
    """Banded convolution matrix (npix, npix), scipy.sparse CSR float32, for output-pixel sigmas (npix,).

    Row i holds Gaussian weights about pixel i whose discrete variance is
    sigma_px[i]^2 (a sampled Gaussian's is larger for sigma < 1 pixel, so its
    width is solved for), normalised to sum 1 over the pixels on the grid.
    flux (n, npix) is convolved as (matrix @ flux.T).T. sigma_px = 0 gives the identity row.
    """
    sigma_px = np.asarray(sigma_px, np.float64)
    npix = sigma_px.size
    half = max(int(np.ceil(KERNEL_SIGMAS * sigma_px.max(initial=0.0))), 1)
    table = np.linspace(1e-3, max(sigma_px.max(initial=0.0), 1e-3) * 1.2 + 0.5, 512)
    width = np.interp(sigma_px**2, _discrete_variance(table, half), table, left=1e-3)
    offsets = np.arange(-half, half + 1)
    cols = np.arange(npix)[:, None] + offsets[None, :]
    weights = np.exp(-0.5 * (offsets[None, :] / width[:, None]) ** 2)
    weights[(cols < 0) | (cols >= npix)] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    keep = weights > 1e-7
    rows = np.broadcast_to(np.arange(npix)[:, None], cols.shape)
    return scipy.sparse.csr_matrix((weights[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(npix, npix))


def sigma_on_grid(loglam, sigma_native_px):
    """Sigma (npix,) given in 1e-4 dex pixels, expressed in pixels of the uniform grid loglam (npix,)."""
    step = (loglam[-1] - loglam[0]) / max(loglam.size - 1, 1)
    return np.asarray(sigma_native_px, np.float64) * (NATIVE_DLOGLAM / step)
