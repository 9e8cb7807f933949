"""Intervening metal absorbers on quasar sightlines: MgII doublets (recorded) and confusers.

Everything is drawn over the MgII doublet finder's path of each sightline
(`qsopipe.stages.mgii_regions.PATH_REST`: the 2796 line's position from 8000
km/s red of Lyman-alpha emission to 500 km/s blue of MgII emission), clipped
to the observable range OBSERVABLE_A, so that the path's three regions (the
CNN window, Lyman-alpha to CIV, proximate) all carry absorbers.

MgII absorbers draw (W_2796, W_2803) from a sample of the Raghunathan et al.
(2016) DR12 catalogue (doublet ratio clipped to 1-2), a rest-frame FWHM from
N(1.7 A, 0.7 A) truncated at 0.5 A (Zhao et al. 2019), and z_abs on the path
with the density of the same catalogue's redshifts (a Gaussian kernel
estimate, `dr12_redshift_cdf`). Each MgII absorber carries FeII
2600/2586/2382/2344 lines.

Confusers, the lines that can imitate an MgII doublet on the path: CIV
1548/1550 systems, each with its SiIV 1394/1403 doublet and weaker SiII 1526
and AlII 1670 lines; SiIV-only doublets; single unidentified lines. They are
recorded one row per line.
"""

from functools import lru_cache
from importlib.resources import files

import numpy as np

from qsopipe.pipeline.constants import (
    ALII_1670, CIV_1548, CIV_1550, FWHM_PER_SIGMA, MGII_2796, MGII_2803, MGII_SYSTEM_FEII_LINES, SIII_1526,
    SIIV_1394, SIIV_1403,
)
from qsopipe.stages.mgii_regions import CNN_WINDOW_REST, PATH_REST
from qsopipe.stages.simulate.profiles import LN10, absorb_lines, grid_step

#: Absorbers with W_2796 >= this (rest A) count as strong (Zhao et al. 2019 positives).
STRONG_EW = 0.3
#: Mean number of catalogue-like MgII absorbers per unit redshift of path (default mode).
MGII_DN_DZ = 0.4
#: Mean number of further MgII absorbers on a sightline given a strong one (`fraction` mode).
EXTRA_MGII_MEAN = 0.15
#: Observed wavelength range where an absorber can be seen by the simulator, A.
OBSERVABLE_A = (3800.0, 10300.0)
#: Shortest redshift span of a path (or CNN window) that gets MgII absorbers.
MIN_PATH_DZ = 0.02
#: Redshift bin width and Gaussian kernel sigma of the DR12 MgII redshift density.
DR12_Z_STEP = 0.01
DR12_Z_SMOOTHING = 0.1
#: Mean numbers per sightline of CIV systems, SiIV-only doublets and single unidentified lines.
CIV_SYSTEMS_MEAN = 0.6
SIIV_DOUBLETS_MEAN = 0.2
SINGLE_LINES_MEAN = 0.5
#: W_1548 / W_1550 of the CIV doublet.
CIV_DOUBLET_RATIO = 1.6
#: Range of W_1394 / W_1548 (uniform) in a CIV system, and of the SiIV doublet ratio W_1394 / W_1403.
SIIV_TO_CIV = (0.3, 0.7)
SIIV_DOUBLET_RATIO = (1.0, 2.0)
#: Low-ion lines of CIV systems: (ION, rest A, typical rest EW relative to CIV 1548), scattered by
#: LOW_ION_SCATTER_DEX (lognormal).
CIV_SYSTEM_LOW_ION_LINES = (("SIII", SIII_1526, 0.25), ("ALII", ALII_1670, 0.3))
LOW_ION_SCATTER_DEX = 0.2
#: Rest wavelengths given to the single unidentified lines (uniform), A; only their observed position matters.
SINGLE_REST_A = (1250.0, 2700.0)


@lru_cache(maxsize=1)
def _dr12_sample():
    """The shipped DR12 catalogue sample: dict of (m,) arrays 'z', 'w_2796', 'w_2803' (rest A)."""
    with files("qsopipe.stages.simulate").joinpath("data/mgii_dr12_distribution.npz").open("rb") as handle:
        data = np.load(handle)
        return {key: data[key] for key in ("z", "w_2796", "w_2803")}


def mgii_ew_sample():
    """(W_2796, W_2803) pairs, rest A, from the shipped DR12 catalogue sample; (m, 2)."""
    sample = _dr12_sample()
    return np.stack([sample["w_2796"], sample["w_2803"]], axis=1)


def draw_mgii_ew(n, rng, min_ew_2796=0.0):
    """Rest equivalent widths (n,), (n,) in A, doublet ratio W_2796/W_2803 clipped to [1, 2]."""
    sample = mgii_ew_sample()
    sample = sample[sample[:, 0] >= min_ew_2796]
    pick = sample[rng.integers(0, len(sample), n)]
    ew_2796 = pick[:, 0]
    ratio = np.clip(pick[:, 0] / np.maximum(pick[:, 1], 1e-3), 1.0, 2.0)
    return ew_2796, ew_2796 / ratio


@lru_cache(maxsize=1)
def dr12_redshift_cdf():
    """Cumulative distribution of the DR12 catalogue's MgII redshifts, over the observable redshifts.

    The density is constant in each DR12_Z_STEP bin, at a Gaussian kernel
    estimate (sigma DR12_Z_SMOOTHING) of the sample's z at the bin centre,
    between OBSERVABLE_A[0] / MGII_2796 - 1 and OBSERVABLE_A[1] / MGII_2803 - 1
    (0.36-2.67). Returns (edges (k + 1,), cdf (k + 1,)), cdf rising strictly from 0 to 1.
    """
    z_low, z_high = OBSERVABLE_A[0] / MGII_2796 - 1.0, OBSERVABLE_A[1] / MGII_2803 - 1.0
    edges = np.linspace(z_low, z_high, int(np.ceil((z_high - z_low) / DR12_Z_STEP)) + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    distance = (centres[:, None] - _dr12_sample()["z"][None, :]) / DR12_Z_SMOOTHING
    cdf = np.concatenate([[0.0], np.cumsum(np.exp(-0.5 * distance ** 2).sum(axis=1))])
    return edges, cdf / cdf[-1]


def draw_dr12_redshifts(z_min, z_max, rng):
    """One redshift per entry between z_min and z_max (m,), with the DR12 catalogue's z density; (m,)."""
    edges, cdf = dr12_redshift_cdf()
    low, high = np.interp(z_min, edges, cdf), np.interp(z_max, edges, cdf)
    return np.interp(low + rng.random(np.shape(z_min)) * (high - low), cdf, edges)


def draw_fwhm(n, rng):
    """Rest-frame FWHM of absorber lines, A: N(1.7, 0.7) truncated at 0.5 (redrawn)."""
    fwhm = rng.normal(1.7, 0.7, n)
    bad = fwhm < 0.5
    while bad.any():
        fwhm[bad] = rng.normal(1.7, 0.7, bad.sum())
        bad = fwhm < 0.5
    return fwhm


def path_wavelengths(z_qso):
    """Observed span of the finder's path on sightlines at z_qso (n,), clipped to OBSERVABLE_A, A.

    Returns (wave_min, wave_max), float64 (n,); wave_max <= wave_min where the path is not observable.
    """
    one_plus_z = 1.0 + np.asarray(z_qso, np.float64)
    return (np.maximum(PATH_REST[0] * one_plus_z, OBSERVABLE_A[0]),
            np.minimum(PATH_REST[1] * one_plus_z, OBSERVABLE_A[1]))


def mgii_path(z_qso):
    """MgII absorber redshift range (z_min, z_max) per sightline at z_qso (n,); z_max <= z_min when none.

    Both lines lie on the observable path (`path_wavelengths`), as the finder searches it.
    """
    wave_min, wave_max = path_wavelengths(z_qso)
    return wave_min / MGII_2796 - 1.0, wave_max / MGII_2803 - 1.0


def mgii_cnn_window(z_qso):
    """Redshift range (z_min, z_max) per sightline at z_qso (n,) with both MgII lines observable in the CNN window.

    z_max <= z_min when none. A subset of `mgii_path`, on the bounds that the
    training labels use (qsopipe.models.train_mgii.in_search_window).
    """
    one_plus_z = 1.0 + np.asarray(z_qso, np.float64)
    return (np.maximum(CNN_WINDOW_REST[0] * one_plus_z, OBSERVABLE_A[0]) / MGII_2796 - 1.0,
            np.minimum(CNN_WINDOW_REST[1] * one_plus_z, OBSERVABLE_A[1]) / MGII_2803 - 1.0)


def draw_mgii_absorbers(z_qso, rng, fraction=None):
    """MgII absorbers for sightlines at z_qso (n,), on each sightline's path (`mgii_path`).

    fraction None: a Poisson number with mean MGII_DN_DZ x path length (in z)
    on sightlines whose path is longer than MIN_PATH_DZ, z with the DR12
    density restricted to the path, EWs from the catalogue. fraction F: each
    such sightline gets, with probability F, one strong absorber (W_2796 >=
    STRONG_EW) in its CNN window (`mgii_cnn_window`; on the path where the
    window is shorter than MIN_PATH_DZ) plus a Poisson(EXTRA_MGII_MEAN) number
    of further ones on the path; the others get none.
    Returns dict of (m,) arrays: 'row' (sightline index), 'z_abs', 'ew_2796',
    'ew_2803' (rest A), 'fwhm' (rest A).
    """
    z_min, z_max = mgii_path(z_qso)
    length = np.clip(z_max - z_min, 0.0, None)
    eligible = length > MIN_PATH_DZ
    if fraction is None:
        count = np.where(eligible, rng.poisson(MGII_DN_DZ * length), 0)
        strong_first = np.zeros(count.size, bool)
    else:
        strong_first = eligible & (rng.random(length.size) < fraction)
        count = np.where(strong_first, 1 + rng.poisson(EXTRA_MGII_MEAN, length.size), 0)
    row = np.repeat(np.arange(length.size), count)
    first = np.r_[True, np.diff(row) != 0] if row.size else np.zeros(0, bool)
    need_strong = first & strong_first[row]
    window_min, window_max = mgii_cnn_window(z_qso)
    in_window = need_strong & (window_max - window_min > MIN_PATH_DZ)[row]
    z_abs = draw_dr12_redshifts(np.where(in_window, window_min[row], z_min[row]),
                                np.where(in_window, window_max[row], z_max[row]), rng)
    ew_2796, ew_2803 = draw_mgii_ew(row.size, rng)
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
    """Metal lines that can imitate an MgII doublet, over each sightline's path, for sightlines at z_qso (n,).

    - CIV systems (Poisson mean CIV_SYSTEMS_MEAN) with CIV 1548 between the
      path's start (`path_wavelengths`) and z_qso: W_1548 = 10^N(-0.1, 0.3) A,
      W_1550 = W_1548 / CIV_DOUBLET_RATIO; SiIV 1394/1403 at the same z with
      W_1394 / W_1548 uniform in SIIV_TO_CIV and W_1394 / W_1403 in
      SIIV_DOUBLET_RATIO; SiII 1526 and AlII 1670 (CIV_SYSTEM_LOW_ION_LINES).
    - SiIV-only doublets (mean SIIV_DOUBLETS_MEAN), SiIV 1394 between the
      path's start and z_qso, W_1394 = 10^N(-0.3, 0.3) A.
    - Single unidentified lines (mean SINGLE_LINES_MEAN) uniform in observed
      wavelength over the path, W = 10^N(-0.1, 0.3) A.
    The lines of one system share a rest FWHM (`draw_fwhm`).
    Returns dict of (k,) arrays, one entry per line: 'row', 'ion' ('CIV',
    'SIIV', 'SIII', 'ALII' or 'UNKNOWN'), 'rest_A', 'z_abs', 'ew' (rest A), 'fwhm' (rest A).
    """
    z_qso = np.asarray(z_qso, np.float64)
    n = z_qso.size
    wave_min, wave_max = path_wavelengths(z_qso)
    lines = []

    def systems(mean, rest_A, z_max):
        """Rows and redshifts of systems whose line rest_A lies between the path's start and z_max."""
        z_min = wave_min / rest_A - 1.0
        row = np.repeat(np.arange(n), np.where(z_max > z_min, rng.poisson(mean, n), 0))
        return row, z_min[row] + rng.random(row.size) * (z_max - z_min)[row]

    def add(ion, rest_A, row, z_abs, ew, fwhm):
        lines.append((np.full(row.size, ion, "U8"), np.full(row.size, rest_A), row, z_abs, ew, fwhm))

    civ_row, civ_z = systems(CIV_SYSTEMS_MEAN, CIV_1548, z_qso)
    civ_ew, civ_fwhm = 10 ** rng.normal(-0.1, 0.3, civ_row.size), draw_fwhm(civ_row.size, rng)
    siiv_ew = civ_ew * rng.uniform(*SIIV_TO_CIV, civ_row.size)
    add("CIV", CIV_1548, civ_row, civ_z, civ_ew, civ_fwhm)
    add("CIV", CIV_1550, civ_row, civ_z, civ_ew / CIV_DOUBLET_RATIO, civ_fwhm)
    add("SIIV", SIIV_1394, civ_row, civ_z, siiv_ew, civ_fwhm)
    add("SIIV", SIIV_1403, civ_row, civ_z, siiv_ew / rng.uniform(*SIIV_DOUBLET_RATIO, civ_row.size), civ_fwhm)
    for ion, rest_A, ratio in CIV_SYSTEM_LOW_ION_LINES:
        add(ion, rest_A, civ_row, civ_z, ratio * civ_ew * 10 ** rng.normal(0.0, LOW_ION_SCATTER_DEX, civ_row.size),
            civ_fwhm)
    siiv_row, siiv_z = systems(SIIV_DOUBLETS_MEAN, SIIV_1394, z_qso)
    siiv_ew, siiv_fwhm = 10 ** rng.normal(-0.3, 0.3, siiv_row.size), draw_fwhm(siiv_row.size, rng)
    add("SIIV", SIIV_1394, siiv_row, siiv_z, siiv_ew, siiv_fwhm)
    add("SIIV", SIIV_1403, siiv_row, siiv_z, siiv_ew / rng.uniform(*SIIV_DOUBLET_RATIO, siiv_row.size), siiv_fwhm)
    single_row = np.repeat(np.arange(n), np.where(wave_max > wave_min, rng.poisson(SINGLE_LINES_MEAN, n), 0))
    single_wave = wave_min[single_row] + rng.random(single_row.size) * (wave_max - wave_min)[single_row]
    single_rest = rng.uniform(*SINGLE_REST_A, single_row.size)
    lines.append((np.full(single_row.size, "UNKNOWN", "U8"), single_rest, single_row, single_wave / single_rest - 1.0,
                  10 ** rng.normal(-0.1, 0.3, single_row.size), draw_fwhm(single_row.size, rng)))
    ion, rest_A, row, z_abs, ew, fwhm = (np.concatenate(column) for column in zip(*lines))
    return {"row": row, "ion": ion, "rest_A": rest_A, "z_abs": z_abs, "ew": ew, "fwhm": fwhm}


def inject_confusers(loglam, flux, confusers):
    """Absorb the confuser lines (dict from draw_confusers, one entry per line) into flux (n, npix), in place."""
    return absorb_rest_lines(loglam, flux, confusers["row"], confusers["rest_A"], confusers["z_abs"],
                             confusers["ew"], confusers["fwhm"])
