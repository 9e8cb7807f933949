"""Find and measure MgII 2796/2803 doublets in spectra on the MgII CNN grid.

Three steps, each a function on arrays:

1. `running_continuum`: a running median (85 pixels, about 5900 km/s, on
   5-pixel block means) over the pixels with ivar > 0, once more after
   clipping absorption dips.
2. `doublet_matched_filter`: the S/N of a doublet template (two Gaussians of
   sigma 1.3 pixels, 11.14 pixels apart, 2803/2796 depth 0.7) placed with its
   2796 line on each pixel, on the continuum-normalised flux.
3. `fit_doublet`: an ivar-weighted least-squares fit around each peak of two
   pixel-integrated Gaussians of one velocity width (free z, both observed
   equivalent widths, the width, and a linear continuum correction);
   errors from the covariance (J^T J)^-1.

`find_absorbers` chains them for one spectrum and keeps fits that look like
a doublet: SNR_2796 >= MIN_SNR_2796, EW_2803 > 0, and a 2796/2803 ratio
consistent with [0.8, 2.2] within DOUBLET_TOLERANCE sigma. Wavelengths in
Angstrom (observed unless named rest), equivalent widths in rest-frame A.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import median_filter
from scipy.optimize import least_squares
from scipy.signal import find_peaks
from scipy.special import erf

from qsopipe.grids import MGII_2796, MGII_2803, MGII_DLOGLAM, MGII_NPIX, mgii_loglam

SPEED_OF_LIGHT = 299792.458  # km/s

#: Running-median width of the continuum, pixels (odd).
CONTINUUM_WIDTH = 85
#: Pixels averaged into one block before the running median.
CONTINUUM_BLOCK = 5
#: Pixels deeper than this many sigma below the first continuum are ignored in the second pass.
CONTINUUM_CLIP_SIGMA = 2.5

#: Doublet separation on the grid, pixels: log10(2803/2796) / 1e-4.
DOUBLET_SEPARATION_PIX = np.log10(MGII_2803 / MGII_2796) / MGII_DLOGLAM
#: Matched-filter line sigma in pixels (instrument and a 1.7 A rest FWHM line, in quadrature).
FILTER_SIGMA_PIX = 1.3
#: Matched-filter 2803/2796 depth ratio (between 1/2 and 1, optically thin to saturated).
FILTER_RATIO = 0.7
#: Matched-filter S/N a peak needs to be fitted.
DETECT_SNR = 4.0
#: Closest two candidates may be, pixels (keeps the +-11 pixel ghosts of a doublet out).
MIN_PEAK_DISTANCE_PIX = 15
#: Half width of the fit region beyond the doublet, pixels.
FIT_HALF_WIDTH_PIX = 20

#: Acceptance of a fitted doublet.
MIN_SNR_2796 = 3.0
DOUBLET_RATIO_RANGE = (0.8, 2.2)
DOUBLET_TOLERANCE = 2.0
#: Two accepted fits closer than this in z (per 1+z) are one absorber.
DUPLICATE_DZ = 5e-4

#: Bounds of the fitted line width sigma, km/s.
SIGMA_BOUNDS_KMS = (15.0, 400.0)

ABSORBER_DTYPE = [
    ("Z_ABS", "f8"), ("Z_ABS_ERR", "f8"),
    ("EW_2796", "f8"), ("EW_2796_ERR", "f8"),
    ("EW_2803", "f8"), ("EW_2803_ERR", "f8"),
    ("SNR_2796", "f8"),
]

_LOGLAM = mgii_loglam()
WAVE = 10.0 ** _LOGLAM
_EDGE_LO = 10.0 ** (_LOGLAM - MGII_DLOGLAM / 2)
_EDGE_HI = 10.0 ** (_LOGLAM + MGII_DLOGLAM / 2)
PIXEL_WIDTH = _EDGE_HI - _EDGE_LO


def running_continuum(flux, ivar, width=CONTINUUM_WIDTH, clip_sigma=CONTINUUM_CLIP_SIGMA, block=CONTINUUM_BLOCK):
    """Robust running-median continuum of each spectrum.

    Pixels with ivar = 0 are bridged by linear interpolation; the flux is
    averaged in blocks of `block` pixels, the block means get a running
    median over `width` pixels (width // block blocks, made odd) and are
    interpolated back to every pixel. A second pass replaces pixels more than
    `clip_sigma` below the first continuum by that continuum, so absorbers do
    not pull it down.

    Parameters
    ----------
    flux, ivar : ndarray (n, npix)

    Returns
    -------
    continuum : float64 (n, npix); 0 for a spectrum without any good pixel.
    """
    flux = np.atleast_2d(flux).astype(np.float64)
    ivar = np.atleast_2d(ivar)
    filled = np.zeros_like(flux)
    pixels = np.arange(flux.shape[1])
    for row in range(flux.shape[0]):
        good = ivar[row] > 0
        if good.any():
            filled[row] = np.interp(pixels, pixels[good], flux[row, good])
    first = _block_median(filled, width, block)
    dip = (filled - first) * np.sqrt(np.clip(ivar, 0, None)) < -clip_sigma
    return _block_median(np.where(dip, first, filled), width, block)


def _block_median(values, width, block):
    """Running median over ~width pixels of block means, linearly interpolated back; (n, npix)."""
    n, npix = values.shape
    nblock = -(-npix // block)
    padded = np.pad(values, ((0, 0), (0, nblock * block - npix)), mode="edge")
    means = padded.reshape(n, nblock, block).mean(axis=2)
    size = max(width // block, 1) | 1
    medians = median_filter(means, size=(1, size), mode="nearest")
    position = (np.arange(npix) - (block - 1) / 2) / block
    left = np.clip(np.floor(position).astype(np.int64), 0, nblock - 2)
    frac = np.clip(position - left, 0.0, 1.0)
    return medians[:, left] * (1 - frac) + medians[:, left + 1] * frac


def doublet_template(sigma_pix=FILTER_SIGMA_PIX, ratio=FILTER_RATIO):
    """Doublet depth template on pixel offsets; returns (offsets int (m,), weights (m,)), 2796 at offset 0."""
    reach = int(np.ceil(4 * sigma_pix))
    offsets = np.arange(-reach, int(np.ceil(DOUBLET_SEPARATION_PIX)) + reach + 1)
    weights = np.exp(-0.5 * (offsets / sigma_pix) ** 2)
    weights += ratio * np.exp(-0.5 * ((offsets - DOUBLET_SEPARATION_PIX) / sigma_pix) ** 2)
    return offsets, weights


def doublet_matched_filter(depth, weight, sigma_pix=FILTER_SIGMA_PIX, ratio=FILTER_RATIO):
    """S/N and amplitude of the doublet template with its 2796 line on each pixel.

    Parameters
    ----------
    depth : ndarray (n, npix), 1 - flux / continuum
    weight : ndarray (n, npix), inverse variance of depth (0 = ignore)

    Returns
    -------
    snr, amplitude : float64 (n, npix); the template's best-fit peak depth
        and its S/N; 0 where the template covers no weight.
    """
    offsets, template = doublet_template(sigma_pix, ratio)
    lead, tail = -offsets[0], offsets[-1]
    pad = ((0, 0), (lead, tail))
    windows_dw = sliding_window_view(np.pad(depth * weight, pad), template.size, axis=1)
    windows_w = sliding_window_view(np.pad(weight, pad), template.size, axis=1)
    numerator = windows_dw @ template
    denominator = windows_w @ template ** 2
    covered = denominator > 0
    safe = np.where(covered, denominator, 1.0)
    snr = np.where(covered, numerator / np.sqrt(safe), 0.0)
    amplitude = np.where(covered, numerator / safe, 0.0)
    return snr, amplitude


def doublet_profile(z_abs, ew_2796_obs, ew_2803_obs, sigma_kms, wave_lo=_EDGE_LO, wave_hi=_EDGE_HI):
    """Fractional absorption depth of a Gaussian doublet, averaged over each pixel.

    Each line is a Gaussian of sigma = sigma_kms / c * its observed
    wavelength, with area = its observed equivalent width (A), integrated
    over the pixel [wave_lo, wave_hi] and divided by the pixel width, so the
    sum of depth * pixel width is the equivalent width even for lines
    narrower than a pixel.
    """
    depth = 0.0
    for rest, ew in ((MGII_2796, ew_2796_obs), (MGII_2803, ew_2803_obs)):
        centre = rest * (1.0 + z_abs)
        scale = np.sqrt(2.0) * sigma_kms / SPEED_OF_LIGHT * centre
        depth = depth + ew * 0.5 * (erf((wave_hi - centre) / scale) - erf((wave_lo - centre) / scale))
    return depth / (wave_hi - wave_lo)


def _residuals(params, flux, sqrt_ivar, continuum, wave, wave_lo, wave_hi, wave_ref):
    z_abs, ew1, ew2, sigma, c0, c1 = params
    scale = continuum * (c0 + c1 * (wave - wave_ref) / wave_ref)
    model = scale * (1.0 - doublet_profile(z_abs, ew1, ew2, sigma, wave_lo, wave_hi))
    return (flux - model) * sqrt_ivar


def fit_doublet(flux, ivar, continuum, z_guess, ew_guess=1.0, sigma_guess_kms=80.0):
    """Least-squares fit of one MgII doublet near z_guess in one spectrum on the MgII grid.

    Parameters
    ----------
    flux, ivar, continuum : ndarray (3841,)
    z_guess : float, absorber redshift to start from (z bound to +-3 pixels)
    ew_guess : float, starting observed EW of 2796, A

    Returns
    -------
    dict with Z_ABS, Z_ABS_ERR, EW_2796, EW_2796_ERR, EW_2803, EW_2803_ERR
    (rest frame A), SNR_2796, COV_EW (covariance of the two rest EWs, A^2),
    SIGMA_KMS; None when the fit region has too few good pixels.
    """
    centre = np.log10(MGII_2796 * (1.0 + z_guess))
    first = int(np.floor((centre - _LOGLAM[0]) / MGII_DLOGLAM)) - FIT_HALF_WIDTH_PIX
    last = first + 2 * FIT_HALF_WIDTH_PIX + int(np.ceil(DOUBLET_SEPARATION_PIX)) + 1
    region = slice(max(first, 0), min(last, MGII_NPIX))
    good = (ivar[region] > 0) & (continuum[region] > 0)
    if good.sum() < 12:
        return None
    flux_r = flux[region][good].astype(np.float64)
    sqrt_ivar = np.sqrt(ivar[region][good].astype(np.float64))
    cont_r = continuum[region][good]
    wave_r = WAVE[region][good]
    args = (flux_r, sqrt_ivar, cont_r, wave_r, _EDGE_LO[region][good], _EDGE_HI[region][good], wave_r.mean())
    dz = 3 * MGII_DLOGLAM * np.log(10) * (1.0 + z_guess)
    start = [z_guess, ew_guess, 0.7 * ew_guess, sigma_guess_kms, 1.0, 0.0]
    lower = [z_guess - dz, -20.0, -20.0, SIGMA_BOUNDS_KMS[0], 0.5, -1.0]
    upper = [z_guess + dz, 60.0, 60.0, SIGMA_BOUNDS_KMS[1], 1.5, 1.0]
    start = np.clip(start, lower, upper)
    result = least_squares(_residuals, start, bounds=(lower, upper), args=args, x_scale="jac",
                           ftol=1e-6, xtol=1e-6)
    jac = result.jac
    covariance = np.linalg.pinv(jac.T @ jac)
    z_abs, ew1, ew2, sigma = result.x[:4]
    to_rest = 1.0 / (1.0 + z_abs)
    errors = np.sqrt(np.clip(np.diag(covariance), 0, None))
    ew1_err = errors[1] * to_rest
    return {
        "Z_ABS": z_abs, "Z_ABS_ERR": errors[0],
        "EW_2796": ew1 * to_rest, "EW_2796_ERR": ew1_err,
        "EW_2803": ew2 * to_rest, "EW_2803_ERR": errors[2] * to_rest,
        "SNR_2796": ew1 * to_rest / ew1_err if ew1_err > 0 else 0.0,
        "COV_EW": covariance[1:3, 1:3] * to_rest ** 2,
        "SIGMA_KMS": sigma,
    }


def is_doublet(fit, ratio_range=DOUBLET_RATIO_RANGE, tolerance=DOUBLET_TOLERANCE, min_snr=MIN_SNR_2796):
    """True when a fit is a credible MgII doublet.

    SNR_2796 >= min_snr, EW_2803 > 0 and EW_2796/EW_2803 within ratio_range
    at `tolerance` sigma: EW_2796 - r_max EW_2803 <= tolerance * its error and
    r_min EW_2803 - EW_2796 <= tolerance * its error (linear, so a weak
    EW_2803 gives no division by ~0).
    """
    if fit is None or fit["SNR_2796"] < min_snr or fit["EW_2803"] <= 0:
        return False
    covariance = fit["COV_EW"]
    for a, b in ((1.0, -ratio_range[1]), (-1.0, ratio_range[0])):
        value = a * fit["EW_2796"] + b * fit["EW_2803"]
        sigma = np.sqrt(max(a * a * covariance[0, 0] + b * b * covariance[1, 1] + 2 * a * b * covariance[0, 1], 0))
        if value > tolerance * sigma:
            return False
    return True


def find_absorbers(flux, ivar, wave_min, wave_max, continuum=None, detect_snr=DETECT_SNR):
    """All MgII doublets with both lines inside [wave_min, wave_max] (observed A) of one spectrum.

    Parameters
    ----------
    flux, ivar : ndarray (3841,), on the MgII grid
    wave_min, wave_max : float, search window (see qsopipe.stages.mgii.search_window)
    continuum : ndarray (3841,), optional; running_continuum when omitted

    Returns
    -------
    numpy structured array (ABSORBER_DTYPE), one row per absorber, by Z_ABS.
    """
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    if continuum is None:
        continuum = running_continuum(flux[None], ivar[None])[0]
    positive = continuum > 0
    safe = np.where(positive, continuum, 1.0)
    depth = np.where(positive, 1.0 - flux / safe, 0.0)
    weight = np.where(positive & (ivar > 0), ivar * safe ** 2, 0.0)
    snr, amplitude = doublet_matched_filter(depth[None], weight[None])
    z_of_pixel = WAVE / MGII_2796 - 1.0
    inside = (WAVE >= wave_min) & (WAVE * MGII_2803 / MGII_2796 <= wave_max)
    snr = np.where(inside, snr[0], 0.0)
    peaks, _ = find_peaks(snr, height=detect_snr, distance=MIN_PEAK_DISTANCE_PIX)
    accepted = []
    for peak in peaks[np.argsort(-snr[peaks])]:
        z_guess = z_of_pixel[peak]
        ew_guess = max(amplitude[0, peak], 0.05) * np.sqrt(2 * np.pi) * FILTER_SIGMA_PIX * PIXEL_WIDTH[peak]
        fit = fit_doublet(flux, ivar, continuum, z_guess, ew_guess)
        if not is_doublet(fit):
            continue
        if any(abs(fit["Z_ABS"] - other["Z_ABS"]) < DUPLICATE_DZ * (1 + fit["Z_ABS"]) for other in accepted):
            continue
        accepted.append(fit)
    table = np.zeros(len(accepted), ABSORBER_DTYPE)
    for row, fit in enumerate(sorted(accepted, key=lambda item: item["Z_ABS"])):
        for name, _ in ABSORBER_DTYPE:
            table[name][row] = fit[name]
    return table
