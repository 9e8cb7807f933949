"""The array-level generator: observed spectra and truth for N objects of given kinds on any grid.

This is what the plate simulator uses and what training code calls to make
labelled spectra on its own grid (e.g. the MgII CNN grid).
"""

from dataclasses import dataclass

import numpy as np

from qsopipe.pipeline.constants import CLASS_PERSON, Z_CONF_CONFIDENT
from qsopipe.stages.simulate import galaxies, noise, quasar, stars
from qsopipe.stages.simulate.photometry import magnitudes, scale_to_magnitude

#: Object kinds the generator knows, with their DR12Q CLASS_PERSON.
#: STD: bright F stars observed as spectrophotometric standards.
KINDS = {"QSO": CLASS_PERSON["QSO"], "STAR": CLASS_PERSON["STAR"], "STD": CLASS_PERSON["STAR"],
         "GALAXY": CLASS_PERSON["GALAXY"], "BLGALAXY": CLASS_PERSON["QSO"],
         "SKY": CLASS_PERSON["UNKNOWN"], "DEAD": CLASS_PERSON["UNKNOWN"]}
#: Magnitude ranges (r, AB) and the slope of log N(<r) per magnitude, per kind.
MAG_RANGES = {"QSO": (17.8, 22.0, 0.22), "STAR": (19.0, 22.0, 0.25), "STD": (16.0, 18.5, 0.1), "GALAXY": (18.0, 20.3, 0.2),
              "BLGALAXY": (18.0, 20.3, 0.2)}

TRUTH_DTYPE = [("KIND", "U8"), ("SUBTYPE", "U8"), ("CLASS_PERSON", "i2"), ("Z_VI", "f8"),
               ("Z_CONF_PERSON", "i2"), ("BAL_FLAG_VI", "i2"), ("BI_CIV", "f8"), ("MAG", "f4", (5,))]
MGII_DTYPE = [("ROW", "i4"), ("Z_ABS", "f8"), ("EW_2796", "f4"), ("EW_2803", "f4"), ("FWHM", "f4")]
METAL_DTYPE = [("ROW", "i4"), ("ION", "U8"), ("WAVE_REST", "f8"), ("Z_ABS", "f8"), ("EW", "f4"), ("FWHM", "f4")]


@dataclass
class SimulatedSpectra:
    """Observed spectra of N objects and their truth.

    loglam (npix,) float64; flux, ivar, flux_true, sky, wavedisp (N, npix)
    float32 (flux in 1e-17 erg/s/cm^2/A); and_mask, or_mask (N, npix) int32;
    truth (N,) structured array TRUTH_DTYPE; mgii (M,) MGII_DTYPE (rest-frame A,
    ROW indexes the spectra); metals (K,) METAL_DTYPE (confuser lines, one row per line).
    """

    loglam: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    and_mask: np.ndarray
    or_mask: np.ndarray
    sky: np.ndarray
    wavedisp: np.ndarray
    flux_true: np.ndarray
    truth: np.ndarray
    mgii: np.ndarray
    metals: np.ndarray


def draw_magnitudes(kind, n, rng):
    """r-band AB magnitudes (n,) for one kind: log N(<r) rising with the kind's slope."""
    low, high, slope = MAG_RANGES[kind]
    a = np.log(10.0) * slope
    u = rng.random(n)
    return np.log(np.exp(a * low) + u * (np.exp(a * high) - np.exp(a * low))) / a


def simulate_objects(loglam, kinds, rng, *, z=None, mag=None, mgii_fraction=None, with_noise=True):
    """Simulate observed spectra of objects of the given kinds on a uniform log10(A) grid.

    loglam : (npix,) uniform log10(A) grid. kinds : (N,) str, keys of KINDS.
    z : optional (N,) redshifts (used for QSO, GALAXY, BLGALAXY rows; NaN = draw).
    mag : optional (N,) r-band AB magnitudes (NaN = draw). mgii_fraction : None
    for natural MgII absorber incidence, else the fraction of eligible quasar
    sightlines given a strong absorber. with_noise : False returns flux = flux_true,
    ivar = 1 and empty masks. Returns SimulatedSpectra.
    """
    loglam = np.asarray(loglam, np.float64)
    kinds = np.asarray(kinds).astype("U8")
    n = kinds.size
    truth = np.zeros(n, TRUTH_DTYPE)
    truth["KIND"] = kinds
    truth["CLASS_PERSON"] = [KINDS[k] for k in kinds]
    truth["Z_VI"] = -1.0
    z_in = np.full(n, np.nan) if z is None else np.asarray(z, np.float64)
    mag_in = np.full(n, np.nan) if mag is None else np.asarray(mag, np.float64)
    flux = np.zeros((n, loglam.size), np.float32)
    mgii, metals = np.zeros(0, MGII_DTYPE), np.zeros(0, METAL_DTYPE)
    rows = np.flatnonzero(kinds == "QSO")
    if rows.size:
        zq = np.where(np.isnan(z_in[rows]), quasar.draw_quasar_redshifts(rows.size, rng), z_in[rows])
        flux[rows], qtruth = quasar.quasar_spectra(loglam, zq, rng, mgii_fraction=mgii_fraction)
        truth["Z_VI"][rows] = zq
        truth["BI_CIV"][rows] = qtruth["bi_civ"]
        truth["BAL_FLAG_VI"][rows] = qtruth["bal_flag_vi"]
        truth["CLASS_PERSON"][rows] = np.where(qtruth["bal_flag_vi"] == 1, CLASS_PERSON["QSO_BAL"], CLASS_PERSON["QSO"])
        truth["SUBTYPE"][rows] = np.where(qtruth["has_troughs"], "BAL", "")
        mgii = _absorber_table(MGII_DTYPE, rows, qtruth["mgii"], {"Z_ABS": "z_abs", "EW_2796": "ew_2796",
                                                                  "EW_2803": "ew_2803", "FWHM": "fwhm"})
        metals = _absorber_table(METAL_DTYPE, rows, qtruth["metals"], {"ION": "ion", "WAVE_REST": "rest_A",
                                                                      "Z_ABS": "z_abs", "EW": "ew", "FWHM": "fwhm"})
    rows = np.flatnonzero(np.isin(kinds, ("STAR", "STD")))
    if rows.size:
        star_kind = stars.draw_star_types(rows.size, rng, standard=kinds[rows] == "STD")
        flux[rows], truth["Z_VI"][rows] = stars.star_spectra(loglam, star_kind, rng)
        truth["SUBTYPE"][rows] = np.array(stars.STAR_TYPE_NAMES)[star_kind]
    rows = np.flatnonzero(np.isin(kinds, ("GALAXY", "BLGALAXY")))
    if rows.size:
        zg = np.where(np.isnan(z_in[rows]), galaxies.draw_galaxy_redshifts(rows.size, rng), z_in[rows])
        flux[rows] = galaxies.galaxy_spectra(loglam, zg, rng, broad_line=kinds[rows] == "BLGALAXY")
        truth["Z_VI"][rows] = zg
        truth["SUBTYPE"][rows] = np.where(kinds[rows] == "BLGALAXY", "BROADLN", "")
    _scale(loglam, flux, kinds, mag_in, rng)
    truth["MAG"] = magnitudes(loglam, flux)
    truth["Z_CONF_PERSON"] = np.where(truth["CLASS_PERSON"] > 0, Z_CONF_CONFIDENT, 0)
    if not with_noise:
        zeros = np.zeros(flux.shape, np.int32)
        return SimulatedSpectra(loglam, flux, np.ones_like(flux), zeros, zeros.copy(), np.zeros_like(flux),
                                np.ones_like(flux), flux, truth, mgii, metals)
    observed = noise.observe(loglam, flux, rng, dead=kinds == "DEAD")
    return SimulatedSpectra(loglam=loglam, flux_true=flux, truth=truth, mgii=mgii, metals=metals, **observed)


def _scale(loglam, flux, kinds, mag_in, rng):
    """Scale each object row to its r magnitude (drawn per kind where mag_in is NaN)."""
    for kind in MAG_RANGES:
        rows = np.flatnonzero(kinds == kind)
        if rows.size:
            mag = np.where(np.isnan(mag_in[rows]), draw_magnitudes(kind, rows.size, rng), mag_in[rows])
            flux[rows] = scale_to_magnitude(loglam, flux[rows], mag)


def _absorber_table(dtype, rows, absorbers, columns):
    """Structured absorber table; ROW maps the per-quasar index back to the object row."""
    table = np.zeros(absorbers["row"].size, dtype)
    table["ROW"] = rows[absorbers["row"]]
    for name, key in columns.items():
        table[name] = absorbers[key]
    return table
