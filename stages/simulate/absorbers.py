"""Intervening metal absorbers on quasar sightlines: MgII doublets (recorded) and confusers.

MgII absorbers draw (W_2796, W_2803) from a sample of the Raghunathan et al.
(2016) DR12 catalogue (doublet ratio clipped to 1-2) and a rest-frame FWHM from
N(1.7 A, 0.7 A) truncated at 0.5 A (Zhao et al. 2019). They are placed between
the CIV and MgII emission redshifts of the sightline (rest 1550-2800 A) and below
z_qso. Each MgII absorber carries FeII 2600/2586/2382/2344 lines. Independent
CIV 1548/1550 doublets and single unidentified lines act as confusers.
"""

from functools import lru_cache
from importlib.resources import files

import numpy as np

from qsopipe.pipeline.constants import (
    CIV_1548, CIV_1550, FWHM_PER_SIGMA, MGII_2796, MGII_2803, MGII_SYSTEM_FEII_LINES, SPEED_OF_LIGHT_KMS,
)
from qsopipe.stages.simulate.profiles import LN10, absorb_lines, grid_step

#: Absorbers with W_2796 >= this (rest A) count as strong (Zhao et al. 2019 positives).
STRONG_EW = 0.3
#: Mean number of catalogue-like MgII absorbers per unit redshift (default mode).
MGII_DN_DZ = 0.4
#: Search window in rest wavelength of the quasar, A (red of CIV, blue of MgII emission).
WINDOW_REST_A = (1550.0, 2800.0)
#: Absorbers stay this far (km/s) below the quasar's MgII emission.
PROXIMITY_KMS = 3000.0
#: Observed wavelength range where an MgII absorber can be seen by the simulator, A.
OBSERVABLE_A = (3800.0, 10300.0)


@lru_cache(maxsize=1)
def mgii_ew_sample():
    """(W_2796, W_2803) pairs, rest A, from the shipped DR12 catalogue sample; (m, 2)."""
    with files("qsopipe.stages.simulate").joinpath("data/mgii_dr12_distribution.npz").open("rb") as handle:
        data = np.load(handle)
        return np.stack([data["w_2796"], data["w_2803"]], axis=1)


def draw_mgii_ew(n, rng, min_ew_2796=0.0):
    """Rest equivalent widths (n,), (n,) in A, doublet ratio W_2796/W_2803 clipped to [1, 2]."""
    sample = mgii_ew_sample()
    sample = sample[sample[:, 0] >= min_ew_2796]
    pick = sample[rng.integers(0, len(sample), n)]
    ew_2796 = pick[:, 0]
    ratio = np.clip(pick[:, 0] / np.maximum(pick[:, 1], 1e-3), 1.0, 2.0)
    return ew_2796, ew_2796 / ratio


def draw_fwhm(n, rng):
    """Rest-frame FWHM of absorber lines, A: N(1.7, 0.7) truncated at 0.5 (redrawn)."""
    fwhm = rng.normal(1.7, 0.7, n)
    bad = fwhm < 0.5
    while bad.any():
        fwhm[bad] = rng.normal(1.7, 0.7, bad.sum())
        bad = fwhm < 0.5
    return fwhm


def mgii_window(z_qso):
    """Allowed absorber redshift range (z_min, z_max) per sightline; z_max <= z_min when none."""
    z_qso = np.asarray(z_qso, np.float64)
    z_min = np.maximum((1.0 + z_qso) * WINDOW_REST_A[0] / MGII_2796 - 1.0, OBSERVABLE_A[0] / MGII_2796 - 1.0)
    z_max = np.minimum((1.0 + z_qso) * (1.0 - PROXIMITY_KMS / SPEED_OF_LIGHT_KMS) * WINDOW_REST_A[1] / MGII_2796 - 1.0,
                       OBSERVABLE_A[1] / MGII_2803 - 1.0)
    return z_min, z_max


def draw_mgii_absorbers(z_qso, rng, fraction=None):
    """MgII absorbers for sightlines at z_qso (n,).

    fraction None: Poisson number with mean MGII_DN_DZ x window length,
    EWs from the catalogue. fraction F: each eligible sightline gets, with
    probability F, one strong absorber (W_2796 >= STRONG_EW) plus a Poisson(0.15)
    number of further ones; the others get none.
    Returns dict of (m,) arrays: 'row' (sightline index), 'z_abs', 'ew_2796',
    'ew_2803' (rest A), 'fwhm' (rest A).
    """
    z_min, z_max = mgii_window(z_qso)
    length = np.clip(z_max - z_min, 0.0, None)
    eligible = length > 0.02
    if fraction is None:
        count = np.where(eligible, rng.poisson(MGII_DN_DZ * length), 0)
        strong_first = np.zeros(count.size, bool)
    else:
        has = eligible & (rng.random(length.size) < fraction)
        count = np.where(has, 1 + rng.poisson(0.15, length.size), 0)
        strong_first = has
    row = np.repeat(np.arange(length.size), count)
    first = np.r_[True, np.diff(row) != 0] if row.size else np.zeros(0, bool)
    z_abs = z_min[row] + rng.random(row.size) * length[row]
    ew_2796, ew_2803 = draw_mgii_ew(row.size, rng)
    need_strong = first & strong_first[row]
    strong_2796, strong_2803 = draw_mgii_ew(need_strong.sum(), rng, min_ew_2796=STRONG_EW)
    ew_2796[need_strong], ew_2803[need_strong] = strong_2796, strong_2803
    return {"row": row, "z_abs": z_abs, "ew_2796": ew_2796, "ew_2803": ew_2803, "fwhm": draw_fwhm(row.size, rng)}


def inject_mgii_doublet(loglam, flux, z_abs, ew_2796, ew_2803, fwhm, rows=None):
    """Multiply MgII 2796/2803 absorption doublets into spectra, in place; returns flux.

    loglam : (npix,) uniform log10(A) grid. flux : (n, npix) or (npix,) float
    array (any continuum level; absorption is multiplicative). z_abs, ew_2796,
    ew_2803 (rest-frame A), fwhm (rest-frame A, Gaussian FWHM of each line):
    (m,) arrays or scalars. rows : (m,) row of flux for each absorber (default
    0..m-1; a row may carry several absorbers).
    """
    flux_2d = flux if flux.ndim == 2 else flux[None, :]
    z_abs, ew_2796, ew_2803, fwhm = (np.atleast_1d(np.asarray(a, np.float64)) for a in (z_abs, ew_2796, ew_2803, fwhm))
    rows = np.arange(z_abs.size) if rows is None else np.asarray(rows)
    for rest, ew in ((MGII_2796, ew_2796), (MGII_2803, ew_2803)):
        absorb_rest_lines(loglam, flux_2d, rows, rest, z_abs, ew, fwhm)
    return flux


def absorb_rest_lines(loglam, flux, rows, rest_A, z_abs, ew_rest_A, fwhm_rest_A):
    """Absorb one line per entry (rest_A at z_abs, rest EW, rest FWHM) into flux rows, in place.

    Rows that appear several times are handled in successive passes so windows never collide.
    """
    grid_step(loglam)
    rest_A = np.broadcast_to(np.asarray(rest_A, np.float64), z_abs.shape)
    sigma_loglam = fwhm_rest_A / FWHM_PER_SIGMA / rest_A / LN10
    pending = np.arange(rows.size)
    while pending.size:
        _, first = np.unique(rows[pending], return_index=True)
        batch = pending[first]
        absorb_lines(flux, loglam, rows[batch], rest_A[batch] * (1.0 + z_abs[batch]),
                     ew_rest_A[batch] * (1.0 + z_abs[batch]), sigma_loglam[batch])
        pending = np.setdiff1d(pending, batch, assume_unique=True)
    return flux


def inject_feii(loglam, flux, absorbers):
    """FeII lines at the redshifts of the MgII absorbers (dict from draw_mgii_absorbers), in place."""
    for rest, ratio in MGII_SYSTEM_FEII_LINES:
        absorb_rest_lines(loglam, flux, absorbers["row"], rest, absorbers["z_abs"],
                          ratio * absorbers["ew_2796"], absorbers["fwhm"])
    return flux


def draw_confusers(z_qso, rng):
    """CIV doublets (Poisson mean 0.6 per sightline with Lya+CIV path) and single lines (mean 0.5).

    Returns dict of (m,) arrays: 'row', 'ion' ('CIV' or 'UNKNOWN'), 'rest_A' (of
    the stronger line), 'z_abs', 'ew' (rest A of the stronger line), 'fwhm' (rest A).
    """
    z_qso = np.asarray(z_qso, np.float64)
    n = z_qso.size
    civ_zmin = np.maximum(3700.0 / CIV_1548 - 1.0, (1.0 + z_qso) * 1216.0 / CIV_1548 - 1.0)
    civ_zmax = z_qso - 0.01
    civ_count = np.where(civ_zmax > civ_zmin, rng.poisson(0.6, n), 0)
    single_count = rng.poisson(0.5, n)
    civ_row, single_row = np.repeat(np.arange(n), civ_count), np.repeat(np.arange(n), single_count)
    civ_z = civ_zmin[civ_row] + rng.random(civ_row.size) * (civ_zmax - civ_zmin)[civ_row]
    single_rest = rng.uniform(1250.0, 2700.0, single_row.size)
    single_z = rng.uniform(3800.0, 9500.0, single_row.size) / single_rest - 1.0
    row = np.concatenate([civ_row, single_row])
    return {
        "row": row,
        "ion": np.array(["CIV"] * civ_row.size + ["UNKNOWN"] * single_row.size, dtype="U8"),
        "rest_A": np.concatenate([np.full(civ_row.size, CIV_1548), single_rest]),
        "z_abs": np.concatenate([civ_z, single_z]),
        "ew": 10 ** rng.normal(-0.1, 0.3, row.size),
        "fwhm": draw_fwhm(row.size, rng),
    }


def inject_confusers(loglam, flux, confusers):
    """Absorb the confuser lines (dict from draw_confusers) into flux, in place."""
    absorb_rest_lines(loglam, flux, confusers["row"], confusers["rest_A"], confusers["z_abs"],
                      confusers["ew"], confusers["fwhm"])
    civ = np.flatnonzero(confusers["ion"] == "CIV")
    absorb_rest_lines(loglam, flux, confusers["row"][civ], CIV_1550, confusers["z_abs"][civ],
                      confusers["ew"][civ] / 1.6, confusers["fwhm"][civ])
    return flux
