"""Galaxy spectra: stellar-population templates with a 4000 A break, narrow emission lines,
and broad-line (low-z AGN) galaxies.
"""

from functools import lru_cache

import numpy as np

from qsopipe.pipeline.constants import (
    CAII_8544, CAII_8664, CAII_H, CAII_K, G_BAND, HALPHA, HBETA, HDELTA, HEPSILON_AIR, HGAMMA, H_ZETA, MGI_B,
    MGII_EMISSION, NAI_D, NII_6585, OII, OIII_4959, OIII_5007, SII_6718, SII_6733, SPEED_OF_LIGHT_KMS,
)
from qsopipe.stages.simulate.grid import rest_frame, rest_loglam
from qsopipe.stages.simulate.profiles import LN10, add_emission_lines, velocity_sigma_loglam
from qsopipe.stages.simulate.stellar_features import absorption_template, planck_lambda

#: Stellar absorption features of galaxies: rest A, rest EW A (old population).
GALAXY_ABSORPTION = ((CAII_K, 8.0), (CAII_H, 7.0), (G_BAND, 5.0), (HDELTA, 2.0), (HBETA, 2.5),
                     (MGI_B, 5.0), (5270.0, 2.5), (NAI_D, 3.5), (HALPHA, 2.0), (CAII_8544, 3.0), (CAII_8664, 2.5))
#: Narrow emission lines: name, rest A, rest EW (A) for a star-forming galaxy.
GALAXY_EMISSION = (("OII", OII, 25.0), ("HBETA", HBETA, 12.0), ("OIII_4959", OIII_4959, 5.0),
                   ("OIII_5007", OIII_5007, 15.0), ("HALPHA", HALPHA, 45.0), ("NII_6548", 6549.86, 5.0),
                   ("NII_6585", NII_6585, 15.0), ("SII_6718", SII_6718, 8.0), ("SII_6733", SII_6733, 6.0))
#: Broad Balmer lines of broad-line galaxies: rest A, rest EW A, FWHM km/s.
BROAD_LINES = ((HBETA, 45.0, 4000.0), (HALPHA, 220.0, 3500.0), (HGAMMA, 12.0, 4000.0), (MGII_EMISSION, 35.0, 4500.0))


@lru_cache(maxsize=2)
def galaxy_template(population):
    """Rest-frame galaxy continuum on rest_loglam(), f_lambda = 1 at 5500 A.

    population : 'old' (red, strong 4000 A break and metal lines) or 'young'
    (blue, weak break, Balmer absorption).
    """
    wave = 10.0 ** rest_loglam()
    if population == "old":
        continuum = planck_lambda(wave, 4300.0) * (1.0 - 0.55 / (1.0 + np.exp((wave - 4000.0) / 25.0)))
        continuum *= 1.0 - 0.5 / (1.0 + np.exp((wave - 2900.0) / 150.0))
        lines = GALAXY_ABSORPTION
    else:
        continuum = planck_lambda(wave, 9000.0) * (1.0 - 0.15 / (1.0 + np.exp((wave - 3700.0) / 40.0)))
        lines = ((HDELTA, 6.0), (HGAMMA, 6.0), (HBETA, 6.0), (HEPSILON_AIR, 6.0), (H_ZETA, 4.0), (CAII_K, 2.0))
    continuum = continuum * absorption_template(lines, sigma_A=8.0)
    return continuum / np.interp(5500.0, wave, continuum)


def draw_galaxy_redshifts(n, rng):
    """Galaxy redshifts (n,), 0.02-0.8, most near 0.4-0.6 (BOSS CMASS/LOWZ-like)."""
    return np.clip(np.where(rng.random(n) < 0.75, rng.normal(0.52, 0.1, n), rng.uniform(0.02, 0.45, n)), 0.02, 0.8)


def galaxy_spectra(loglam, z, rng, broad_line=None):
    """Noiseless galaxy spectra (n, npix) float32, arbitrary units (about 1 at 5500 A rest).

    z : (n,) redshifts; broad_line : (n,) bool, adds broad Balmer (and MgII) lines
    of a low-luminosity AGN. Star formation (young share, emission-line strength)
    is drawn per galaxy.
    """
    z = np.asarray(z, np.float64)
    n = z.size
    young = np.clip(rng.beta(1.2, 4.0, n), 0.0, 1.0).astype(np.float32)
    flux = (1.0 - young)[:, None] * rest_frame(galaxy_template("old"), loglam, z)
    flux += young[:, None] * rest_frame(galaxy_template("young"), loglam, z)
    line_strength = young * rng.lognormal(0.0, 0.5, n)
    sigma_v = rng.uniform(80.0, 250.0, n)
    rows = np.arange(n)
    sigma = np.hypot(sigma_v / SPEED_OF_LIGHT_KMS / LN10, 1.0e-4)
    for _name, rest, ew in GALAXY_EMISSION:
        _add_visible(flux, loglam, rows, rest * (1.0 + z), ew * line_strength * (1.0 + z), sigma, np.ones(n))
    if broad_line is not None and np.any(broad_line):
        agn = np.flatnonzero(broad_line)
        strength = rng.lognormal(0.0, 0.3, agn.size)
        for rest, ew, fwhm in BROAD_LINES:
            sigma_broad = np.full(agn.size, velocity_sigma_loglam(fwhm)) * rng.lognormal(0.0, 0.15, agn.size)
            _add_visible(flux, loglam, agn, rest * (1.0 + z[agn]), ew * strength * (1.0 + z[agn]), sigma_broad,
                         np.ones(agn.size))
        flux[agn] += (0.3 * strength[:, None] * (10.0 ** loglam / (5500.0 * (1.0 + z[agn, None]))) ** -1.5).astype(np.float32)
    return flux


def _add_visible(flux, loglam, rows, centre_A, ew_obs_A, sigma_loglam, continuum):
    visible = (centre_A > 10.0 ** loglam[0] * 0.98) & (centre_A < 10.0 ** loglam[-1] * 1.02)
    add_emission_lines(flux, loglam, rows[visible], centre_A[visible], ew_obs_A[visible], sigma_loglam[visible],
                       continuum[visible])
