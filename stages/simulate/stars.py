"""Stellar spectra of the types that scatter into quasar colour space.

Subtypes and their shares among the stars (STAR_TYPES) are set by hand to
the make-up of the stellar contaminants of BOSS quasar targets as the
target-selection and visual-inspection papers describe it (Ross et al. 2012,
ApJS 199, 3; Paris et al. 2012/2017, the DR9Q/DR12Q inspections): the
2.2 < z < 3.5 quasar colour track crosses the stellar locus at F/A colours, so
metal-poor F/G halo turn-off stars are the bulk (F 29%, G 15%); A and
blue-horizontal-branch stars (A 13%) and white dwarfs (WD 13%) come from the
UV-excess side; M dwarfs (12%) enter through the red bands and photometric
errors; K stars (8%) fewer, as the quasar locus avoids theirs; hot B stars
and subdwarfs (4%), cataclysmic variables (CV 3%) and carbon stars (CARBON 3%)
are rare. They are not measured: the real spectra at hand hold one star.
Spectrophotometric standards (STD) are F stars.

A, B, F, G, K, M and WD spectra are redrock-templates archetypes
(coefficients x eigenspectra, stages/templates/star_archetypes.npz, drawn
uniformly among the kept archetypes of the type); CV spectra are the redrock
CV eigenspectra with coefficients (1, c1, c2), c1 and c2 ~ N(0, 1) clipped
to +-2 (the flux stays positive within that box); CARBON stars are analytic:
a 2800-3600 K Planck continuum with metal lines and C2 Swan and CN bands.
Each star has a radial velocity (Student-t, 6 degrees of freedom, scale 130
km/s: a halo-like dispersion of ~160 km/s with a tail, clipped to +-600 km/s),
Galactic extinction (E(B-V) exponential with mean 0.04 mag, Milky Way R_V = 3.1
law) and the instrument's resolution (resolution.wavedisp).
"""

from functools import lru_cache
from importlib.resources import files

import numpy as np

from qsopipe.pipeline.constants import (
    CAII_8544, CAII_8664, CAII_H, CAII_K, G_BAND, MGI_B, NAI_D, SPEED_OF_LIGHT_KMS,
)
from qsopipe.stages.simulate.extinction import milky_way_transmission
from qsopipe.stages.simulate.grid import COEFF0, COEFF1, rest_frame
from qsopipe.stages.simulate.profiles import LN10, absorb_lines
from qsopipe.stages.simulate.resolution import gaussian_matrix, sigma_on_grid, wavedisp
from qsopipe.stages.simulate.stellar_features import C2_CN_BANDS, band_optical_depth, planck_lambda

#: Subtype name and share among stars.
STAR_TYPES = (("F", 0.29), ("G", 0.15), ("A", 0.13), ("WD", 0.13), ("M", 0.12), ("K", 0.08), ("B", 0.04),
              ("CV", 0.03), ("CARBON", 0.03))
STAR_TYPE_NAMES = tuple(t[0] for t in STAR_TYPES)
#: Subtype of the spectrophotometric standards.
STANDARD_TYPE = "F"
#: Radial velocities: scale (km/s) and degrees of freedom of a Student t, clipped at +-RV_MAX_KMS.
RV_SCALE_KMS, RV_DOF, RV_MAX_KMS = 130.0, 6, 600.0
#: Mean of the exponential E(B-V) distribution (mag).
EBV_MEAN = 0.04
#: CV eigenspectrum coefficients: N(0, CV_COEFF_SIGMA) clipped to +-CV_COEFF_MAX, relative to the first.
CV_COEFF_SIGMA, CV_COEFF_MAX = 1.0, 2.0
#: Carbon stars: temperature range (K); metal lines, rest A and rest EW (A) at unit strength.
CARBON_TEMPERATURE_K = (2800.0, 3600.0)
METAL_LINES = ((CAII_K, 12.0), (CAII_H, 9.0), (4227.9, 2.0), (G_BAND, 5.0), (MGI_B, 5.0), (NAI_D, 4.0),
               (8500.4, 2.5), (CAII_8544, 4.0), (CAII_8664, 3.5))
#: Linear interpolation at a fractional pixel f broadens by variance f (1 - f); its mean over f (pixel^2).
LINEAR_INTERPOLATION_VARIANCE = 1.0 / 6.0


@lru_cache(maxsize=1)
def _templates():
    with files("qsopipe.stages").joinpath("templates/star_archetypes.npz").open("rb") as handle:
        return dict(np.load(handle))


def draw_star_types(n, rng, standard=None):
    """Index into STAR_TYPE_NAMES per star, (n,) int; standard : optional (n,) bool, those are STANDARD_TYPE."""
    shares = np.array([t[1] for t in STAR_TYPES])
    kind = rng.choice(len(STAR_TYPES), size=n, p=shares / shares.sum())
    if standard is not None:
        kind = np.where(standard, STAR_TYPE_NAMES.index(STANDARD_TYPE), kind)
    return kind


def draw_radial_velocities(n, rng):
    """Heliocentric radial velocities (n,) km/s: RV_SCALE_KMS x Student t (RV_DOF), clipped to +-RV_MAX_KMS."""
    return np.clip(RV_SCALE_KMS * rng.standard_t(RV_DOF, n), -RV_MAX_KMS, RV_MAX_KMS)


def draw_ebv(n, rng):
    """Galactic E(B-V) (n,) mag, exponential with mean EBV_MEAN."""
    return rng.exponential(EBV_MEAN, n)


def star_spectra(loglam, kind, rng, velocity_kms=None, ebv=None):
    """Noiseless stellar spectra as observed: (flux (n, npix) float32, arbitrary units; z (n,) = v/c).

    loglam : (npix,) uniform log10(A) grid inside 3560-10400 A. kind : (n,)
    index into STAR_TYPE_NAMES. velocity_kms, ebv : optional (n,) radial
    velocities (km/s) and E(B-V) (mag), drawn when None. Archetypes are
    shifted by their velocity (linear interpolation in log10 lambda), convolved
    to resolution.wavedisp (the CV eigenspectra are observed spectra, already at
    that resolution) and reddened by the Milky Way law.
    """
    kind = np.asarray(kind)
    if velocity_kms is None:
        velocity_kms = draw_radial_velocities(kind.size, rng)
    if ebv is None:
        ebv = draw_ebv(kind.size, rng)
    z = np.asarray(velocity_kms, np.float64) / SPEED_OF_LIGHT_KMS
    flux = np.empty((kind.size, loglam.size), np.float32)
    for index, name in enumerate(STAR_TYPE_NAMES):
        rows = np.flatnonzero(kind == index)
        if rows.size and name == "CARBON":
            flux[rows] = carbon_spectra(loglam, z[rows], rng)
        elif rows.size:
            flux[rows] = shift_to_grid(template_spectra(name, rows.size, rng), loglam, z[rows])
    templates = _templates()
    observed = np.isin(np.array(STAR_TYPE_NAMES)[kind], templates["types"][templates["observed"]])
    rows = np.flatnonzero(~observed)
    if rows.size:
        flux[rows] = (resolution_matrix(loglam) @ flux[rows].T).T
    flux *= milky_way_transmission(loglam, ebv)
    return flux, z


def template_spectra(name, n, rng):
    """n rest-frame spectra (n, NT) float32 of subtype `name` on the shipped template grid, flux >= 0.

    Archetype types: uniformly drawn archetypes (unit mean flux over 5500-6900 A);
    CV: coefficients (1, c1, c2) with c ~ N(0, CV_COEFF_SIGMA) clipped to +-CV_COEFF_MAX.
    """
    templates = _templates()
    basis = templates[f"{name}_basis"]
    if name == "CV":
        coeff = np.clip(rng.normal(0.0, CV_COEFF_SIGMA, (n, basis.shape[0])), -CV_COEFF_MAX, CV_COEFF_MAX)
        coeff[:, 0] = 1.0
    else:
        archetypes = templates[f"{name}_coeff"]
        coeff = archetypes[rng.integers(0, archetypes.shape[0], n)]
    return np.maximum(coeff.astype(np.float32) @ basis, 0.0)


def shift_to_grid(template, loglam, z):
    """Rest-frame template spectra (n, NT) on the shipped grid, observed at redshifts z (n,) on loglam (npix,).

    Linear interpolation in log10(lambda); returns (n, npix) float32 (the end
    values beyond the template's range). On a grid of the template's step
    (the spPlate and MgII grids) each row is one window of the template.
    """
    first = (loglam[0] - np.log10(1.0 + z) - COEFF0) / COEFF1 - _templates()["kmin"]
    last = template.shape[1] - 1
    step = (loglam[-1] - loglam[0]) / max(loglam.size - 1, 1) / COEFF1
    if abs(step - 1.0) < 1e-6 and first.min() >= 0.0 and first.max() + loglam.size < last:
        start = first.astype(np.int64)
        fraction = (first - start).astype(np.float32)[:, None]
        window = np.lib.stride_tricks.sliding_window_view(template, loglam.size + 1, axis=1)[np.arange(z.size), start]
        return window[:, :-1] + fraction * (window[:, 1:] - window[:, :-1])
    position = np.clip(first[:, None] + step * np.arange(loglam.size)[None, :], 0.0, last)
    left = np.minimum(position.astype(np.int64), last - 1)
    fraction = (position - left).astype(np.float32)
    low = np.take_along_axis(template, left, axis=1)
    high = np.take_along_axis(template, left + 1, axis=1)
    return low + fraction * (high - low)


def resolution_matrix(loglam):
    """Sparse (npix, npix) convolution taking shifted templates on the uniform grid loglam (npix,) to wavedisp.

    Its per-pixel sigma^2 is wavedisp^2 less the templates' shipped sigma_px^2
    and the mean broadening of the linear interpolation; the same for every fiber.
    """
    return _resolution_matrix(float(loglam[0]), float(loglam[-1]), loglam.size)


@lru_cache(maxsize=4)
def _resolution_matrix(loglam_first, loglam_last, npix):
    loglam = np.linspace(loglam_first, loglam_last, npix)
    remaining = wavedisp(loglam).astype(np.float64) ** 2 - _templates()["sigma_px"] ** 2 - LINEAR_INTERPOLATION_VARIANCE
    return gaussian_matrix(sigma_on_grid(loglam, np.sqrt(np.maximum(remaining, 0.0))))


@lru_cache(maxsize=1)
def _c2_cn_optical_depth():
    return band_optical_depth(C2_CN_BANDS)


def carbon_spectra(loglam, z, rng):
    """Analytic carbon-star spectra (n, npix) float32 at redshifts z (n,) on loglam (npix,).

    A Planck continuum (CARBON_TEMPERATURE_K), METAL_LINES and C2 Swan and CN bands.
    """
    n = z.size
    temperature = np.exp(rng.uniform(*np.log(CARBON_TEMPERATURE_K), n))
    wave = 10.0 ** loglam
    flux = planck_lambda(wave[None, :], temperature[:, None]) / planck_lambda(5000.0, temperature)[:, None]
    flux = flux.astype(np.float32)
    strength = np.clip((7500.0 - temperature) / 3000.0, 0.0, 1.6) * rng.lognormal(0.0, 0.2, n)
    rows = np.arange(n)
    for rest, ew in METAL_LINES:
        centre = rest * (1.0 + z)
        absorb_lines(flux, loglam, rows, centre, ew * strength, np.full(n, 3.5) / centre / LN10)
    bands = rng.uniform(0.3, 0.9, n).astype(np.float32)
    flux *= np.exp(-bands[:, None] * rest_frame(_c2_cn_optical_depth(), loglam, z))
    return flux
