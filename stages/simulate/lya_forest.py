"""Lyman-alpha and Lyman-beta forest, Lyman-limit absorption, as transmission arrays.

Optical depth per pixel: tau = tau0(z) * exp(SIGMA_G * g - SIGMA_G^2 / 2), with g a unit
Gaussian field smoothed over SMOOTH_PIX pixels (about 200 km/s) and tau0(z) chosen so
that the mean transmission is exp(-tau_eff(z)), tau_eff = 0.0018 (1+z)^3.92
(Faucher-Giguere et al. 2008). Below the quasar's Lyman limit the flux is
suppressed by the integrated IGM opacity; some sightlines carry an intervening
Lyman-limit system.
"""

import numpy as np

from qsopipe.pipeline.constants import LYA, LYB, LYMAN_LIMIT
from qsopipe.stages.simulate.deviates import standard_normal

SIGMA_G = 1.6
SMOOTH_PIX = 3
#: Lyman-beta optical depth relative to Lyman-alpha at the same absorber redshift.
LYB_TO_LYA_TAU = 0.16
#: Fraction of sightlines with an intervening Lyman-limit system on the spectrum.
LLS_FRACTION = 0.3


def tau_eff(z):
    """Effective Lyman-alpha optical depth of the IGM at redshift z (Faucher-Giguere 2008)."""
    return 0.0018 * (1.0 + np.asarray(z)) ** 3.92


def _tau0_table():
    """Tabulate log tau0 against the resulting tau_eff for the lognormal field."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    log_tau0 = np.linspace(-8.0, 4.0, 400)
    field = np.exp(SIGMA_G * nodes - 0.5 * SIGMA_G**2)
    mean_t = (np.exp(-np.exp(log_tau0)[:, None] * field[None, :]) * weights).sum(axis=1)
    return -np.log(mean_t), log_tau0


_TAU_EFF_GRID, _LOG_TAU0_GRID = _tau0_table()


def tau0_for(tau_effective):
    """Amplitude tau0 of the lognormal optical depth giving mean transmission exp(-tau_eff)."""
    return np.exp(np.interp(np.log(np.maximum(tau_effective, 1e-12)), np.log(_TAU_EFF_GRID), _LOG_TAU0_GRID))


def smoothed_field(n, npix, rng):
    """Unit-variance Gaussian field, boxcar-correlated over SMOOTH_PIX pixels; (n, npix) float32."""
    white = standard_normal(rng, (n, npix + SMOOTH_PIX))
    cumulative = np.cumsum(white, axis=1, dtype=np.float32)
    return (cumulative[:, SMOOTH_PIX:] - cumulative[:, :-SMOOTH_PIX]) / np.float32(np.sqrt(SMOOTH_PIX))


def forest_transmission(loglam, z_qso, rng):
    """IGM transmission of quasar spectra, (n, npix) float32 in [0, 1].

    loglam : (npix,) observed log10(A); z_qso : (n,) emission redshifts.
    Returns (transmission, lls_z) where lls_z (n,) is the redshift of the
    intervening Lyman-limit system, or -1 where none was placed.
    """
    z_qso = np.asarray(z_qso, np.float64)
    n, npix = z_qso.size, loglam.size
    transmission = np.ones((n, npix), np.float32)
    lls_z = np.full(n, -1.0)
    wave = (10.0**loglam).astype(np.float32)
    blue_edge = LYA * (1.0 + z_qso)
    active = np.flatnonzero(blue_edge > wave[0])
    active = active[np.argsort(z_qso[active], kind="stable")]
    for chunk in np.array_split(active, min(4, active.size)) if active.size else []:
        ncol = min(int(np.searchsorted(wave, blue_edge[chunk].max())) + 1, npix)
        transmission[chunk, :ncol], lls_z[chunk] = _chunk_transmission(wave[:ncol], z_qso[chunk], blue_edge[chunk], rng)
    return transmission, lls_z


def _chunk_transmission(wave, z_qso, blue_edge, rng):
    """Transmission (n, ncol) and LLS redshifts (n,) of sightlines that all end within wave (ncol,)."""
    npix = wave.size
    field = smoothed_field(z_qso.size, npix, rng)
    z_lya = wave[None, :] / np.float32(LYA) - 1.0
    in_lya = wave[None, :] < blue_edge[:, None]
    tau = np.where(in_lya, tau0_for(tau_eff(np.maximum(z_lya, 0.0))).astype(np.float32) * np.exp(SIGMA_G * field - 0.5 * SIGMA_G**2), 0.0)
    z_lyb = wave[None, :] / np.float32(LYB) - 1.0
    in_lyb = wave[None, :] < (LYB * (1.0 + z_qso))[:, None]
    shifted = np.roll(field, npix // 3, axis=1)
    tau += np.where(in_lyb, LYB_TO_LYA_TAU * tau0_for(tau_eff(z_lyb)).astype(np.float32) * np.exp(SIGMA_G * shifted - 0.5 * SIGMA_G**2), 0.0)
    tau += _lyman_continuum_tau(wave, z_qso)
    lls_tau, lls_z = _lyman_limit_systems(wave, z_qso, rng)
    tau += lls_tau
    return np.exp(-tau), lls_z


def _lyman_continuum_tau(wave, z_qso):
    """Mean IGM photoelectric opacity below the quasar's Lyman limit, (n, npix)."""
    limit = LYMAN_LIMIT * (1.0 + z_qso)[:, None]
    depth = np.clip(1.0 - wave[None, :] / limit, 0.0, None)
    return (25.0 * depth * (1.0 + z_qso[:, None]) / 4.0).astype(np.float32)


def _lyman_limit_systems(wave, z_qso, rng):
    """Optical depth of one intervening Lyman-limit system on LLS_FRACTION of sightlines."""
    n = z_qso.size
    has = rng.random(n) < LLS_FRACTION
    z_min = np.maximum(wave[0] / LYMAN_LIMIT - 1.0, 0.0)
    z_lls = z_min + rng.random(n) * np.maximum(z_qso - z_min, 0.0)
    has &= z_lls > z_min
    tau_limit = 10 ** rng.uniform(-0.3, 1.3, n)
    edge = LYMAN_LIMIT * (1.0 + z_lls)[:, None]
    below = wave[None, :] < edge
    tau = np.where(below & has[:, None], tau_limit[:, None] * (wave[None, :] / edge) ** 3, 0.0)
    return tau.astype(np.float32), np.where(has, z_lls, -1.0)
