"""BOSS-like observation of noiseless spectra: calibration errors, sky, noise, masks.

Noise variance per pixel: (t_f sigma_sky(lambda))^2 (1 + KAPPA max(flux, 0)),
with sigma_sky the median noise of faint real BOSS spectra (shipped reference,
rising at the blue end and under sky lines) and t_f a per-plate times per-fiber
depth factor. Sky-subtraction residuals are a per-fiber fraction of the sky
line spectrum. Masks follow the per-pixel frequency of and_mask bits in real
spectra, plus COMBINEREJ pixels (ivar 0) and NODATA beyond each fiber's coverage.
"""

from functools import lru_cache
from importlib.resources import files

import numpy as np

from qsopipe.stages.simulate.deviates import standard_normal
from qsopipe.stages.simulate.resolution import wavedisp

#: SDSS SPPIXMASK bits used here.
NOPLUG, COMBINEREJ, NODATA, BRIGHTSKY, PARTIALREJECT = 0, 25, 24, 23, 19
#: Object photon-noise coefficient (per unit 1e-17 erg/s/cm^2/A), fitted on bright real spectra.
KAPPA = 0.4
#: Actual noise rms over the reported 1/sqrt(ivar): real BOSS pixels scatter ~7% less than
#: their ivar says (measured on the real spec-lite files against a 31-pixel running median).
NOISE_OVER_ERROR = 0.93
#: Sky-subtraction residual amplitude, fraction of the sky line flux (rms per fiber).
SKY_RESIDUAL = 0.015
#: Flux-calibration distortion: rms of the Legendre coefficients of orders 1-3.
CALIBRATION_RMS = 0.04
#: Pixels where a mask bit is set in fewer real spectra than this are never flagged.
MIN_MASK_FRACTION = 0.02


@lru_cache(maxsize=1)
def _reference():
    with files("qsopipe.stages.simulate").joinpath("data/boss_noise_sky.npz").open("rb") as handle:
        return dict(np.load(handle))


def reference_on(loglam):
    """Reference noise, sky, sky lines and mask frequencies interpolated to loglam (npix,)."""
    ref = _reference()
    ref_loglam = ref["coeff0"] + ref["coeff1"] * np.arange(ref["sigma"].size)
    return {
        "sigma": np.interp(loglam, ref_loglam, ref["sigma"]).astype(np.float32),
        "sky": np.interp(loglam, ref_loglam, ref["sky"]).astype(np.float32),
        "sky_lines": np.interp(loglam, ref_loglam, ref["sky_lines"]).astype(np.float32),
        "mask_bits": ref["mask_bits"],
        "mask_fraction": np.array([np.interp(loglam, ref_loglam, f) for f in ref["mask_fraction"]], np.float32),
    }


@lru_cache(maxsize=4)
def _legendre_basis(npix):
    x = np.linspace(-1.0, 1.0, npix)
    return np.stack([np.ones(npix)] + [np.polynomial.legendre.legval(x, np.eye(4)[k]) for k in (1, 2, 3)]).astype(np.float32)


def calibration_distortion(loglam, n, rng):
    """Smooth multiplicative flux-calibration error (n, npix) float32: 1 + Legendre orders 1-3."""
    coeff = np.concatenate([np.ones((n, 1)), rng.normal(0.0, CALIBRATION_RMS, (n, 3))], axis=1).astype(np.float32)
    return coeff @ _legendre_basis(loglam.size)


def observe(loglam, flux_true, rng, depth=None, dead=None, calibrate=True):
    """Add BOSS-like noise, sky residuals and masks to noiseless spectra.

    loglam : (npix,); flux_true : (n, npix) in 1e-17 erg/s/cm^2/A.
    depth : (n,) noise multiplier t_f (default lognormal, 0.05 dex per fiber);
    dead : (n,) bool, fibers returned with flux 0, ivar 0, and_mask NOPLUG|NODATA.
    Returns dict of (n, npix) arrays: 'flux', 'ivar' (float32), 'and_mask',
    'or_mask' (int32), 'sky', 'wavedisp' (float32; resolution.wavedisp, the same for every fiber).
    """
    n, npix = flux_true.shape
    ref = reference_on(loglam)
    depth = 10 ** rng.normal(0.0, 0.05, n) if depth is None else np.asarray(depth)
    signal = calibration_distortion(loglam, n, rng) if calibrate else np.ones((n, npix), np.float32)
    signal *= flux_true
    variance = np.maximum(signal, 0.0)
    variance *= np.float32(KAPPA)
    variance += 1.0
    variance *= (depth.astype(np.float32)[:, None] * ref["sigma"][None, :]) ** 2
    flux = standard_normal(rng, (n, npix))
    flux *= np.sqrt(variance) * np.float32(NOISE_OVER_ERROR)
    flux += signal
    residual = rng.normal(0.0, SKY_RESIDUAL, n).astype(np.float32)[:, None]
    for start, stop in _runs(ref["sky_lines"] > 0.05):
        flux[:, start:stop] += residual * ref["sky_lines"][None, start:stop]
    ivar = np.reciprocal(variance, out=variance)
    and_mask = _and_mask(ref, n, npix, rng)
    rows, cols = _sprinkle(and_mask, COMBINEREJ, 2.0, rng)
    ivar[rows, cols] = 0.0
    first = rng.integers(0, 12, n)
    last = npix - rng.integers(8, 70, n)
    for row in range(n):
        for edge in (slice(0, first[row]), slice(last[row], npix)):
            flux[row, edge], ivar[row, edge] = 0.0, 0.0
            and_mask[row, edge] |= np.int32(1 << NODATA)
    if dead is not None and np.any(dead):
        flux[dead], ivar[dead] = 0.0, 0.0
        and_mask[dead] = (1 << NOPLUG) | (1 << NODATA)
    or_mask = and_mask.copy()
    _sprinkle(or_mask, PARTIALREJECT, 30.0, rng)
    sky_scale = (depth / 0.9).astype(np.float32)[:, None]
    return {"flux": flux, "ivar": ivar, "and_mask": and_mask, "or_mask": or_mask,
            "sky": sky_scale * ref["sky"][None, :], "wavedisp": np.broadcast_to(wavedisp(loglam), (n, npix))}


def _and_mask(ref, n, npix, rng):
    """and_mask bits drawn with the per-pixel frequencies of real spectra (where above MIN_MASK_FRACTION)."""
    and_mask = np.zeros((n, npix), np.int32)
    for bit, fraction in zip(ref["mask_bits"], ref["mask_fraction"]):
        threshold = rng.random(n).astype(np.float32)[:, None]
        for start, stop in _runs(fraction > MIN_MASK_FRACTION):
            and_mask[:, start:stop] |= (fraction[None, start:stop] > threshold).astype(np.int32) << np.int32(bit)
    return and_mask


def _runs(flags):
    """(start, stop) of each run of True in a 1-d boolean array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))


def _sprinkle(mask, bit, mean_count, rng):
    """Set `bit` on a Poisson(mean_count) number of random pixels per row, in place; returns (rows, cols)."""
    n, npix = mask.shape
    count = rng.poisson(mean_count, n)
    rows = np.repeat(np.arange(n), count)
    cols = rng.integers(0, npix, rows.size)
    mask[rows, cols] |= np.int32(1 << bit)
    return rows, cols
