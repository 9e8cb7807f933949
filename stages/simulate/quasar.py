"""Quasar spectra on a log-lambda grid: continuum, emission lines, host, dust, IGM, BALs, absorbers.

Science functions on arrays: `draw_quasar_redshifts` and `quasar_spectra`
return arrays; the noiseless flux is in arbitrary units, to be scaled to a
magnitude by `photometry.scale_to_magnitude`.
"""

from functools import lru_cache

import numpy as np

from qsopipe.pipeline.constants import BALMER_LIMIT, FWHM_PER_SIGMA, SPEED_OF_LIGHT_KMS
from qsopipe.stages.simulate import absorbers, bal, lya_forest
from qsopipe.stages.simulate.extinction import smc_k
from qsopipe.stages.simulate.galaxies import galaxy_template
from qsopipe.stages.simulate.grid import rest_frame, rest_loglam
from qsopipe.stages.simulate.profiles import LN10, add_emission_lines, velocity_sigma_loglam
from qsopipe.stages.simulate.quasar_lines import FEII_BLENDS, REST_A, draw_line_parameters

#: Continuum break (A, rest): bluer, slope alpha_nu ~ N(-0.45, 0.35); redder, flatter in f_nu.
BREAK_A = 4660.0
#: Instrumental Gaussian sigma of BOSS, log10(A) (about 1 pixel, 69 km/s).
INSTRUMENT_SIGMA_LOGLAM = 1.0e-4
#: Continuum reference wavelength (rest A) where f_lambda = 1 before scaling.
NORM_A = 3000.0


def draw_quasar_redshifts(n, rng):
    """BOSS-like quasar redshifts (n,): main peak near 2.3, a 0.3-2 tail and a z > 3 tail, 0 < z < 5.5."""
    kind = rng.random(n)
    main = np.clip(rng.lognormal(np.log(2.4), 0.13, n), 2.0, 5.5)
    low = np.clip(rng.triangular(0.1, 1.6, 2.1, n), 0.05, 2.1)
    high = np.clip(3.0 + rng.exponential(0.55, n), 3.0, 5.5)
    return np.where(kind < 0.62, main, np.where(kind < 0.92, low, high))


@lru_cache(maxsize=1)
def _feii_template():
    """Rest-frame FeII pseudo-continuum relative to the power law, on rest_loglam()."""
    wave = 10.0 ** rest_loglam()
    template = np.zeros_like(wave)
    for rest, ew, fwhm in FEII_BLENDS:
        sigma = rest * fwhm / FWHM_PER_SIGMA / SPEED_OF_LIGHT_KMS
        template += ew / (np.sqrt(2.0 * np.pi) * sigma) * np.exp(-0.5 * ((wave - rest) / sigma) ** 2)
    return template


@lru_cache(maxsize=1)
def _continuum_bumps():
    """Rest-frame Balmer continuum (< 3646 A) relative to the power law, on rest_loglam()."""
    wave = 10.0 ** rest_loglam()
    balmer = (np.minimum(wave, BALMER_LIMIT) / BALMER_LIMIT) ** 3 * np.exp(
        -3.0 * (1.0 - np.minimum(wave, BALMER_LIMIT) / BALMER_LIMIT))
    edge = 1.0 / (1.0 + np.exp((wave - 3700.0) / 60.0))
    return 0.2 * balmer * edge * (wave > 1800.0)


@lru_cache(maxsize=1)
def _smc_template():
    return smc_k(10.0 ** rest_loglam())


def draw_quasar_parameters(z, rng):
    """Per-quasar physical parameters for redshifts z (n,).

    Returns dict: 'alpha_nu' (n,) UV slope; 'alpha_nu_red' (n,) slope red of BREAK_A;
    'ebv' (n,) SMC E(B-V), mag; 'feii_scale' (n,) FeII strength factor; 'host_fraction' (n,) host share of the flux at
    5100 A rest; 'lines' (dict of (n, nline) arrays, see draw_line_parameters).
    """
    n = z.size
    return {
        "alpha_nu": rng.normal(-0.45, 0.35, n),
        "alpha_nu_red": rng.normal(-1.4, 0.3, n),
        "ebv": np.where(rng.random(n) < 0.1, rng.exponential(0.08, n), rng.exponential(0.015, n)),
        "host_fraction": np.clip(0.5 * np.exp(-z / 0.35) * rng.lognormal(0.0, 0.4, n), 0.0, 0.8),
        "feii_scale": rng.lognormal(0.0, 0.25, n),
        "lines": draw_line_parameters(n, rng),
    }


def unabsorbed_spectra(loglam, z, params):
    """Continuum + emission lines + host + dust, no IGM; (n, npix) float32, f_lambda = 1 at NORM_A rest."""
    z = np.asarray(z, np.float64)
    x = (loglam[None, :] - np.log10(1.0 + z)[:, None]).astype(np.float32)
    xb, xn = np.float32(np.log10(BREAK_A)), np.float32(np.log10(NORM_A))
    slope_blue = (-(2.0 + params["alpha_nu"])).astype(np.float32)[:, None]
    slope_red = (-(2.0 + params["alpha_nu_red"])).astype(np.float32)[:, None]
    offset_red = slope_blue * (xb - xn)
    exponent = np.where(x < xb, slope_blue * (x - xn), offset_red + slope_red * (x - xb))
    flux = np.exp(np.float32(LN10) * exponent)
    feii = params["feii_scale"].astype(np.float32)[:, None]
    flux *= 1.0 + rest_frame(_continuum_bumps(), loglam, z) + feii * rest_frame(_feii_template(), loglam, z)
    _add_lines(flux, loglam, z, params)
    host = params["host_fraction"]
    with_host = np.flatnonzero(host > 0.01)
    if with_host.size:
        continuum_5100 = (5100.0 / NORM_A) ** (-(2.0 + params["alpha_nu"][with_host])) * (5100.0 / BREAK_A) ** (
            params["alpha_nu"][with_host] - params["alpha_nu_red"][with_host])
        scale = (host[with_host] / (1.0 - host[with_host]) * continuum_5100).astype(np.float32)
        flux[with_host] += scale[:, None] * rest_frame(galaxy_template("old"), loglam, z[with_host])
    flux *= np.exp(np.float32(-0.921) * params["ebv"].astype(np.float32)[:, None] * rest_frame(_smc_template(), loglam, z))
    return flux


def _add_lines(flux, loglam, z, params):
    """Add every emission line of QUASAR_LINES to flux (n, npix), in place."""
    lines = params["lines"]
    rows = np.arange(z.size)
    lo, hi = 10.0 ** loglam[0], 10.0 ** loglam[-1]
    for k, rest in enumerate(REST_A):
        centre = rest * (1.0 + z) * (1.0 + lines["shift"][:, k] / SPEED_OF_LIGHT_KMS)
        sigma = np.hypot(velocity_sigma_loglam(lines["fwhm"][:, k]), INSTRUMENT_SIGMA_LOGLAM)
        margin = 5.0 * sigma * LN10 * centre
        visible = (centre + margin > lo) & (centre - margin < hi)
        if not visible.any():
            continue
        r = rows[visible]
        x_rest = rest / NORM_A
        x_break = BREAK_A / NORM_A
        alpha, alpha_red = params["alpha_nu"][r], params["alpha_nu_red"][r]
        continuum = np.where(rest < BREAK_A, x_rest ** (-(2.0 + alpha)),
                             x_break ** (-(2.0 + alpha)) * (rest / BREAK_A) ** (-(2.0 + alpha_red)))
        add_emission_lines(flux, loglam, r, centre[visible], lines["ew"][r, k] * (1.0 + z[r]),
                           sigma[visible], continuum)


def quasar_spectra(loglam, z, rng, mgii_fraction=None, bal_fraction=bal.BAL_FRACTION):
    """Noiseless quasar spectra with their truth.

    loglam : (npix,) uniform log10(A) grid; z : (n,) emission redshifts.
    mgii_fraction : None for the natural absorber incidence, or the fraction of
    eligible sightlines given a strong MgII absorber (see absorbers.draw_mgii_absorbers).
    Returns (flux (n, npix) float32, arbitrary units; truth dict with 'bi_civ',
    'bal_flag_vi', 'has_troughs' (n,), 'mgii' absorber dict (absorbers.draw_mgii_absorbers),
    'metals' confuser-line dict (absorbers.draw_confusers)).
    """
    z = np.asarray(z, np.float64)
    n = z.size
    params = draw_quasar_parameters(z, rng)
    flux = unabsorbed_spectra(loglam, z, params)
    is_bal = (z > bal.BAL_MIN_Z) & (rng.random(n) < bal_fraction)
    bal_rows = np.flatnonzero(is_bal)
    bi = np.zeros(n)
    if bal_rows.size:
        troughs = bal.draw_troughs(bal_rows.size, rng)
        sub = flux[bal_rows]
        bal.apply_troughs(sub, loglam, z[bal_rows], troughs)
        flux[bal_rows] = sub
        bi[bal_rows] = bal.balnicity_index(bal.BI_VELOCITY, bal.trough_transmission(bal.BI_VELOCITY, troughs))
    transmission, _ = lya_forest.forest_transmission(loglam, z, rng)
    flux *= transmission
    mgii = absorbers.draw_mgii_absorbers(z, rng, fraction=mgii_fraction)
    absorbers.inject_mgii_doublet(loglam, flux, mgii["z_abs"], mgii["ew_2796"], mgii["ew_2803"], mgii["fwhm"], rows=mgii["row"])
    absorbers.inject_feii(loglam, flux, mgii)
    metals = absorbers.draw_confusers(z, rng)
    absorbers.inject_confusers(loglam, flux, metals)
    truth = {"bi_civ": bi, "bal_flag_vi": bal.visual_flag(bi, is_bal, rng), "has_troughs": is_bal,
             "mgii": mgii, "metals": metals}
    return flux, truth
