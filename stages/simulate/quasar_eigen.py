"""Quasar emission spectra drawn from redrock's QSO eigenspectra with the spread of real quasars.

The eigenspectra are the ones the redshift fit uses (redrock-templates
QSO-LOZ and QSO-HIZ v1.1, BSD-3, `stages/templates/`): LOZ below
LOZ_MAX_Z, HIZ above. Each simulated quasar is sum_k c_k basis_k (k = 0..3);
its coefficients c are those of one real SDSS quasar (fitted by
`benchmarks/make_simulate_reference.py`, normalised to a mean model flux of
1, shipped as `data/qso_eigen_coefficients.npz`) plus a Gaussian deviate
with KERNEL_SCALE^2 times the sample covariance: a smoothed bootstrap of
the real quasars' emission-line strengths, widths, shifts, FeII, Balmer
continuum and continuum shapes, with their correlations. Draws whose
spectrum dips below POSITIVE_FLOOR of its median on the observed range are
drawn again.

HIZ has a mean Lyman-alpha forest transmission built in (redrock's
Kamble et al. 2020 model); it is divided out with the simulator's own mean
transmission (`lya_forest.tau_eff`, Faucher-Giguere et al. 2008) at
HIZ_FOREST_Z, the median redshift of the real HIZ quasars, so that the
simulator's forest, Lyman-limit systems and Lyman-continuum suppression
apply once. The two mean-transmission laws differ by a few per cent.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np

from qsopipe.pipeline import grids
from qsopipe.pipeline.constants import LYA, LYB
from qsopipe.stages.redshift_templates import load_templates
from qsopipe.stages.simulate.lya_forest import LYB_TO_LYA_TAU, tau_eff

COEFFICIENT_FILE = Path(__file__).resolve().parent / "data" / "qso_eigen_coefficients.npz"
#: Quasars below this redshift take the LOZ eigenspectra, the others HIZ.
LOZ_MAX_Z = 1.5
#: Kernel of the smoothed bootstrap: its deviates have KERNEL_SCALE^2 times the real coefficients' covariance.
KERNEL_SCALE = 0.8
#: A draw is kept when its observed-frame spectrum stays above this fraction of its median.
POSITIVE_FLOOR = 0.05
#: Redshift at which HIZ's built-in mean forest transmission is divided out.
HIZ_FOREST_Z = 2.4
#: Below this rest wavelength (A) the unabsorbed HIZ spectrum is continued flat in f_lambda.
LYMAN_EDGE_A = 920.0
#: Draws tried before a real quasar's coefficients are taken unperturbed.
MAX_REDRAWS = 8


@lru_cache(maxsize=1)
def _real_coefficients():
    """Real quasars' normalised eigen coefficients: {'LOZ': (n, 4), 'HIZ': (m, 4)} float64."""
    with np.load(COEFFICIENT_FILE) as data:
        return {name: data[f"{name}_coefficients"].astype(np.float64) for name in ("LOZ", "HIZ")}


@lru_cache(maxsize=1)
def _rest_bases():
    """Per template name: (eigenspectra as shipped (4, nrest), the same with HIZ's mean forest divided out,
    log10 rest A of pixel 0), float64."""
    bases = {}
    for template in load_templates():
        loglam_rest = grids.MGII_LOGLAM_MIN + grids.MGII_DLOGLAM * (template.kmin + np.arange(template.nrest))
        unabsorbed = _unabsorbed(template.basis, 10.0 ** loglam_rest) if template.name == "HIZ" else template.basis
        bases[template.name] = (template.basis, unabsorbed, loglam_rest[0])
    return bases


def _unabsorbed(basis, wave_rest):
    """HIZ eigenspectra with the mean forest transmission of a z = HIZ_FOREST_Z quasar divided out."""
    wave_obs = wave_rest * (1.0 + HIZ_FOREST_Z)
    tau = np.where(wave_rest < LYA, tau_eff(np.maximum(wave_obs / LYA - 1.0, 0.0)), 0.0)
    tau += np.where(wave_rest < LYB, LYB_TO_LYA_TAU * tau_eff(np.maximum(wave_obs / LYB - 1.0, 0.0)), 0.0)
    unabsorbed = basis * np.exp(tau)[None, :]
    edge = np.searchsorted(wave_rest, LYMAN_EDGE_A)
    unabsorbed[:, :edge] = unabsorbed[:, edge:edge + 1]
    return unabsorbed


def template_names(z):
    """'LOZ' or 'HIZ' per quasar; z (n,) -> (n,) str."""
    return np.where(np.asarray(z) < LOZ_MAX_Z, "LOZ", "HIZ")


def draw_coefficients(name, n, rng):
    """Eigen coefficients (n, 4) for template `name`: real quasars' coefficients plus the kernel."""
    real = _real_coefficients()[name]
    picked = real[rng.integers(0, real.shape[0], n)]
    return picked + KERNEL_SCALE * rng.multivariate_normal(np.zeros(real.shape[1]), np.cov(real.T), n)


def emission_spectra(loglam, z, rng):
    """Unabsorbed quasar spectra (n, npix) float32, arbitrary units, and their coefficients (n, 4).

    loglam : (npix,) observed log10(A), uniform; z : (n,) emission redshifts.
    Each spectrum is its template's eigen combination sampled (linearly) at
    the rest wavelengths of the observed pixels, edge values beyond the
    template's range. A draw still not positive after MAX_REDRAWS takes a
    real quasar's coefficients unperturbed (clipped at 0).
    """
    z = np.asarray(z, np.float64)
    flux = np.zeros((z.size, loglam.size), np.float32)
    coefficients = np.zeros((z.size, 4))
    names = template_names(z)
    for name in ("LOZ", "HIZ"):
        todo = np.flatnonzero(names == name)
        for attempt in range(MAX_REDRAWS + 1):
            if todo.size == 0:
                break
            last = attempt == MAX_REDRAWS
            real = _real_coefficients()[name]
            drawn = real[rng.integers(0, real.shape[0], todo.size)] if last else draw_coefficients(name, todo.size, rng)
            spectra = sample_rest(name, drawn, loglam, z[todo])
            keep = last | (spectra.min(axis=1) > POSITIVE_FLOOR * np.median(spectra, axis=1))
            flux[todo[keep]] = np.maximum(spectra[keep], 0.0)
            coefficients[todo[keep]] = drawn[keep]
            todo = todo[~keep]
    return flux, coefficients


def sample_rest(name, coefficients, loglam, z):
    """Eigen combinations coefficients @ basis at observed loglam; (n, npix) float32.

    coefficients : (n, 4); loglam : (npix,) observed log10(A); z : (n,).
    """
    _, basis, loglam0 = _rest_bases()[name]
    return _interpolate(coefficients @ basis, loglam0, loglam,
                        np.log10(1.0 + np.asarray(z, np.float64))).astype(np.float32)


def basis_at(name, loglam, z):
    """The template's four eigenspectra as shipped (HIZ with its mean forest) at observed loglam for one
    redshift z; (4, npix) float64."""
    basis, _, loglam0 = _rest_bases()[name]
    return _interpolate(basis, loglam0, loglam, np.full(basis.shape[0], np.log10(1.0 + z)))


def _interpolate(rest, loglam0, loglam, log1pz):
    """Rows of rest (n, nrest) on the 1e-4 dex grid from loglam0, linearly at loglam - log1pz (n,); (n, npix).

    Beyond the grid the edge values are taken.
    """
    position = (loglam[None, :] - log1pz[:, None] - loglam0) / grids.MGII_DLOGLAM
    position = np.clip(position, 0.0, rest.shape[1] - 1.0)
    left = np.minimum(position.astype(np.int64), rest.shape[1] - 2)
    frac = position - left
    low = np.take_along_axis(rest, left, axis=1)
    return low + frac * (np.take_along_axis(rest, left + 1, axis=1) - low)


def rest_mean(name, coefficients, low_A, high_A):
    """Mean unabsorbed rest-frame f_lambda of the eigen combinations over [low_A, high_A]; (n,) float64."""
    _, basis, loglam0 = _rest_bases()[name]
    loglam_rest = loglam0 + grids.MGII_DLOGLAM * np.arange(basis.shape[1])
    inside = (loglam_rest >= np.log10(low_A)) & (loglam_rest <= np.log10(high_A))
    return np.asarray(coefficients) @ basis[:, inside].mean(axis=1)
