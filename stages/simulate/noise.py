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

#: SDSS SPPIXMASK bits used here.
NOPLUG, COMBINEREJ, NODATA, BRIGHTSKY, PARTIALREJECT = 0, 25, 24, 23, 19
#: Object photon-noise coefficient (per unit 1e-17 erg/s/cm^2/A), fitted on bright real spectra.
KAPPA = 0.4
#: Sky-subtraction residual amplitude, fraction of the sky line flux (rms per fiber).
SKY_RESIDUAL = 0.015
#: Flux-calibration distortion: rms of the Legendre coefficients of orders 1-3.
CALIBRATION_RMS = 0.04


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


def calibration_distortion(loglam, n, rng):
    """Smooth multiplicative flux-calibration error (n, npix) float32: 1 + Legendre orders 1-3."""
    x = np.linspace(-1.0, 1.0, loglam.size)
    basis = np.stack([np.polynomial.legendre.legval(x, np.eye(4)[k]) for k in (1, 2, 3)])
    coeff = rng.normal(0.0, CALIBRATION_RMS, (n, 3))
    return (1.0 + coeff @ basis).astype(np.float32)


def observe(loglam, flux_true, rng, depth=None, dead=None, calibrate=True):
    """Add BOSS-like noise, sky residuals and masks to noiseless spectra.

    loglam : (npix,); flux_true : (n, npix) in 1e-17 erg/s/cm^2/A.
    depth : (n,) noise multiplier t_f (default lognormal, 0.12 dex per fiber);
    dead : (n,) bool, fibers returned with flux 0, ivar 0, and_mask NOPLUG|NODATA.
    Returns dict of (n, npix) arrays: 'flux', 'ivar' (float32), 'and_mask',
    'or_mask' (int32), 'sky', 'wavedisp' (float32).
    """
    n, npix = flux_true.shape
    ref = reference_on(loglam)
    depth = 10 ** rng.normal(0.0, 0.05, n) if depth is None else np.asarray(depth)
    signal = flux_true * calibration_distortion(loglam, n, rng) if calibrate else flux_true.astype(np.float32)
    sigma_sky = depth.astype(np.float32)[:, None] * ref["sigma"][None, :]
    sigma = sigma_sky * np.sqrt(1.0 + np.float32(KAPPA) * np.maximum(signal, 0.0))
    residual = rng.normal(0.0, SKY_RESIDUAL, n).astype(np.float32)[:, None] * ref["sky_lines"][None, :]
    flux = signal + residual + sigma * rng.standard_normal((n, npix), dtype=np.float32)
    ivar = 1.0 / (sigma * sigma)
    and_mask = _and_mask(ref, n, npix, rng)
    rejected = (and_mask >> COMBINEREJ) & 1 == 1
    nodata = (and_mask >> NODATA) & 1 == 1
    ivar[rejected | nodata] = 0.0
    flux[nodata] = 0.0
    if dead is not None and np.any(dead):
        flux[dead], ivar[dead] = 0.0, 0.0
        and_mask[dead] = (1 << NOPLUG) | (1 << NODATA)
    or_mask = and_mask.copy()
    _sprinkle(or_mask, PARTIALREJECT, 30.0, rng)
    sky_scale = (depth / 0.9).astype(np.float32)[:, None]
    wave = 10.0 ** loglam
    wavedisp = (1.0 + 0.25 * ((wave - 6500.0) / 3500.0) ** 2).astype(np.float32)
    return {"flux": flux, "ivar": ivar.astype(np.float32), "and_mask": and_mask, "or_mask": or_mask,
            "sky": sky_scale * ref["sky"][None, :], "wavedisp": np.broadcast_to(wavedisp, (n, npix)).copy()}


def _and_mask(ref, n, npix, rng):
    """and_mask bits: real per-pixel frequencies, COMBINEREJ pixels, NODATA outside each fiber's coverage."""
    and_mask = np.zeros((n, npix), np.int32)
    for bit, fraction in zip(ref["mask_bits"], ref["mask_fraction"]):
        threshold = rng.random(n).astype(np.float32)[:, None]
        and_mask |= np.where(fraction[None, :] > threshold, np.int32(1 << int(bit)), np.int32(0))
    _sprinkle(and_mask, COMBINEREJ, 2.0, rng)
    first = rng.integers(0, 12, n)
    last = npix - rng.integers(8, 70, n)
    pixel = np.arange(npix)
    outside = (pixel[None, :] < first[:, None]) | (pixel[None, :] >= last[:, None])
    and_mask[outside] |= np.int32(1 << NODATA)
    return and_mask


def _sprinkle(mask, bit, mean_count, rng):
    """Set `bit` on a Poisson(mean_count) number of random pixels per row, in place."""
    n, npix = mask.shape
    count = rng.poisson(mean_count, n)
    rows = np.repeat(np.arange(n), count)
    mask[rows, rng.integers(0, npix, rows.size)] |= np.int32(1 << bit)
