"""Quasar spectra on a log-lambda grid: eigenspectra, host, dust, IGM, BALs, absorbers.

Science functions on arrays: `draw_quasar_redshifts` and `quasar_spectra`
return arrays; the noiseless flux is in arbitrary units, to be scaled to a
magnitude by `photometry.scale_to_magnitude`. The emission (continuum,
lines, FeII, Balmer continuum) comes from `quasar_eigen`.
"""

from functools import lru_cache

import numpy as np

from qsopipe.stages.simulate import absorbers, bal, lya_forest, quasar_eigen
from qsopipe.stages.simulate.extinction import smc_k
from qsopipe.stages.simulate.galaxies import galaxy_template
from qsopipe.stages.simulate.grid import rest_frame, rest_loglam

#: Rest-frame window (A) whose mean f_lambda the host fraction refers to.
HOST_WINDOW_A = (5050.0, 5150.0)


def draw_quasar_redshifts(n, rng):
    """Quasar redshifts (n,): a BOSS-like peak near 2.4, a flat 0.05-2.1 share for whole-release catalogues, a z > 3 tail.

    Shares: 50% lognormal around 2.4 (2.0-5.5), 38% uniform in 0.05-2.1
    (14% of all quasars below z 0.8), 12% 3 + exponential(0.55) up to 5.5.
    """
    kind = rng.random(n)
    main = np.clip(rng.lognormal(np.log(2.4), 0.13, n), 2.0, 5.5)
    low = rng.uniform(0.05, 2.1, n)
    high = np.clip(3.0 + rng.exponential(0.55, n), 3.0, 5.5)
    return np.where(kind < 0.50, main, np.where(kind < 0.88, low, high))


@lru_cache(maxsize=1)
def _smc_template():
    return smc_k(10.0 ** rest_loglam())


def draw_quasar_parameters(z, rng):
    """Per-quasar parameters besides the eigen coefficients, for redshifts z (n,).

    Returns dict: 'ebv' (n,) SMC E(B-V), mag; 'host_fraction' (n,) host
    share of the flux in HOST_WINDOW_A (rest), falling with z (median 0.5 e^(-z/0.35)).
    """
    n = z.size
    return {
        "ebv": np.where(rng.random(n) < 0.1, rng.exponential(0.08, n), rng.exponential(0.015, n)),
        "host_fraction": np.clip(0.5 * np.exp(-z / 0.35) * rng.lognormal(0.0, 0.4, n), 0.0, 0.8),
    }


def unabsorbed_spectra(loglam, z, params, rng):
    """Eigenspectrum emission + host + dust, no IGM; (n, npix) float32, arbitrary units.

    The host (an old stellar population) is added to LOZ quasars only; at the
    HIZ redshifts its share is below 1%.
    """
    z = np.asarray(z, np.float64)
    flux, coefficients = quasar_eigen.emission_spectra(loglam, z, rng)
    host = params["host_fraction"]
    with_host = np.flatnonzero((host > 0.01) & (quasar_eigen.template_names(z) == "LOZ"))
    if with_host.size:
        quasar_level = quasar_eigen.rest_mean("LOZ", coefficients[with_host], *HOST_WINDOW_A)
        wave = 10.0 ** rest_loglam()
        inside = (wave >= HOST_WINDOW_A[0]) & (wave <= HOST_WINDOW_A[1])
        host_level = galaxy_template("old")[inside].mean()
        scale = (host[with_host] / (1.0 - host[with_host]) * np.maximum(quasar_level, 0.0) / host_level).astype(np.float32)
        flux[with_host] += scale[:, None] * rest_frame(galaxy_template("old"), loglam, z[with_host])
    flux *= np.exp(np.float32(-0.921) * params["ebv"].astype(np.float32)[:, None] * rest_frame(_smc_template(), loglam, z))
    return flux


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
    flux = unabsorbed_spectra(loglam, z, params, rng)
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
