"""Stellar spectra of the types that scatter into quasar colour space.

F/G/K/M dwarfs (Planck continua with Balmer, CaII H&K, G band, Mg b, Na D, CaII
triplet and, for M, TiO bands), A/BHB stars (strong, fairly narrow Balmer lines
and a Balmer jump), DA white dwarfs (very broad Balmer lines) and carbon stars
(C2 Swan and CN bands).
"""

from functools import lru_cache

import numpy as np

from qsopipe.pipeline.constants import (
    BALMER_LIMIT, CAII_8544, CAII_8664, CAII_H, CAII_K, G_BAND, HC_OVER_K, MGI_B, NAI_D, SPEED_OF_LIGHT_KMS,
)
from qsopipe.stages.simulate.grid import rest_frame, rest_loglam
from qsopipe.stages.simulate.profiles import LN10, absorb_lines
from qsopipe.stages.simulate.stellar_features import (
    BALMER_A, C2_CN_BANDS, TIO_BANDS, band_optical_depth, planck_lambda)

#: type name, share among stars, temperature range (K)
STAR_TYPES = (
    ("FG", 0.44, (5300.0, 7200.0)),
    ("K", 0.14, (4000.0, 5300.0)),
    ("M", 0.13, (2800.0, 3900.0)),
    ("A_BHB", 0.13, (7500.0, 10500.0)),
    ("WD", 0.13, (7500.0, 30000.0)),
    ("CARBON", 0.03, (2800.0, 3600.0)),
)
STAR_TYPE_NAMES = tuple(t[0] for t in STAR_TYPES)
#: Metal lines: rest A, rest EW (A) at 4500 K, scaling steeply down with temperature.
METAL_LINES = ((CAII_K, 12.0), (CAII_H, 9.0), (4227.9, 2.0), (G_BAND, 5.0), (MGI_B, 5.0), (NAI_D, 4.0),
               (8500.4, 2.5), (CAII_8544, 4.0), (CAII_8664, 3.5))


def draw_star_types(n, rng, standard=None):
    """Index into STAR_TYPES per star (n,) int, and temperatures (n,) K.

    standard : optional (n,) bool; those stars are F-type spectrophotometric
    standards (type FG, 5800-6800 K).
    """
    shares = np.array([t[1] for t in STAR_TYPES])
    kind = rng.choice(len(STAR_TYPES), size=n, p=shares / shares.sum())
    if standard is not None:
        kind = np.where(standard, STAR_TYPE_NAMES.index("FG"), kind)
    low = np.array([t[2][0] for t in STAR_TYPES])[kind]
    high = np.array([t[2][1] for t in STAR_TYPES])[kind]
    if standard is not None:
        low, high = np.where(standard, 5800.0, low), np.where(standard, 6800.0, high)
    log_t = rng.uniform(np.log(low), np.log(high))
    return kind, np.exp(log_t)


@lru_cache(maxsize=1)
def _balmer_jump():
    return (10.0 ** rest_loglam() < BALMER_LIMIT).astype(np.float64)


@lru_cache(maxsize=2)
def _bands(name):
    return band_optical_depth(TIO_BANDS if name == "TIO" else C2_CN_BANDS)


def star_spectra(loglam, kind, temperature, rng):
    """Noiseless stellar spectra (n, npix) float32, arbitrary units.

    kind : (n,) index into STAR_TYPES; temperature : (n,) K. Radial velocities
    are drawn from N(0, 120 km/s); returns (flux, z) with z (n,) = v/c.
    """
    kind, temperature = np.asarray(kind), np.asarray(temperature, np.float64)
    n = kind.size
    z = rng.normal(0.0, 120.0, n) / SPEED_OF_LIGHT_KMS
    wave = (10.0 ** loglam).astype(np.float32)
    x = (np.float32(HC_OVER_K) / wave)[None, :] * (1.0 / temperature).astype(np.float32)[:, None]
    flux = (wave / np.float32(5000.0)) ** -5 / np.expm1(np.minimum(x, np.float32(80.0)))
    flux /= planck_lambda(5000.0, temperature).astype(np.float32)[:, None]
    name = np.array(STAR_TYPE_NAMES)[kind]
    _balmer(flux, loglam, z, name, temperature, rng)
    _metals(flux, loglam, z, temperature, name, rng)
    for band, which in (("TIO", name == "M"), ("C2CN", name == "CARBON")):
        rows = np.flatnonzero(which)
        if rows.size:
            strength = np.clip((4000.0 - temperature[rows]) / 1500.0, 0.05, 0.7) if band == "TIO" else rng.uniform(0.3, 0.9, rows.size)
            flux[rows] *= np.exp(-strength.astype(np.float32)[:, None] * rest_frame(_bands(band), loglam, z[rows]))
    return flux, z


def _balmer(flux, loglam, z, name, temperature, rng):
    """Balmer lines and jump: strongest near 9500 K (13000 K and very broad for DA white dwarfs)."""
    n = z.size
    strength = np.where(name == "WD", np.exp(-0.5 * ((temperature - 13000.0) / 9000.0) ** 2),
                        np.exp(-0.5 * ((temperature - 9500.0) / 2500.0) ** 2))
    ew_hdelta = np.where(name == "WD", 45.0, np.where(name == "A_BHB", 16.0, 8.0)) * strength * rng.lognormal(0.0, 0.2, n)
    ew_hdelta = np.where(np.isin(name, ("M", "CARBON")), 0.0, ew_hdelta)
    sigma_A = np.where(name == "WD", rng.uniform(25.0, 45.0, n), np.where(name == "A_BHB", rng.uniform(6.0, 12.0, n), 7.0))
    rows = np.flatnonzero(ew_hdelta > 0.05)
    for k, rest in enumerate(BALMER_A):
        scale = (1.3, 1.15, 1.05, 1.0, 0.9, 0.75, 0.6, 0.5)[k]
        centre = rest * (1.0 + z[rows])
        absorb_lines(flux, loglam, rows, centre, scale * ew_hdelta[rows], sigma_A[rows] / centre / LN10)
    jump = np.clip(0.45 * strength * (name != "WD") + 0.2 * (name == "WD"), 0.0, 0.6)
    rows = np.flatnonzero(jump > 0.02)
    if rows.size:
        flux[rows] *= 1.0 - jump[rows].astype(np.float32)[:, None] * rest_frame(_balmer_jump(), loglam, z[rows])


def _metals(flux, loglam, z, temperature, name, rng):
    """Metal lines whose strength grows towards cool stars; absent in white dwarfs."""
    strength = np.clip((7500.0 - temperature) / 3000.0, 0.0, 1.6) * (name != "WD") * rng.lognormal(0.0, 0.2, z.size)
    rows = np.flatnonzero(strength > 0.02)
    for rest, ew in METAL_LINES:
        centre = rest * (1.0 + z[rows])
        absorb_lines(flux, loglam, rows, centre, ew * strength[rows], np.full(rows.size, 3.5) / centre / LN10)
