"""Building blocks for galaxy and carbon-star continua: Planck curves, absorption lines, molecular bands."""

import numpy as np

from qsopipe.pipeline.constants import HC_OVER_K
from qsopipe.stages.simulate.grid import rest_loglam

#: Carbon-star C2 Swan and CN band heads (A) and the direction in which they fade:
#: +1 the band degrades to the red of the head, -1 to the blue.
C2_CN_BANDS = ((4737.0, -1), (5165.0, -1), (5636.0, -1), (6060.0, -1), (7878.0, 1), (8750.0, 1), (9150.0, 1))


def planck_lambda(wave_A, temperature_K):
    """Planck f_lambda shape (arbitrary units) at wave_A for temperature_K (broadcasting)."""
    x = HC_OVER_K / (np.asarray(wave_A, np.float64) * np.asarray(temperature_K, np.float64))
    return (np.asarray(wave_A) / 5000.0) ** -5 / np.expm1(np.minimum(x, 700.0))


def absorption_template(lines, sigma_A):
    """Product of Gaussian absorption lines on rest_loglam(): lines is ((rest_A, rest EW A), ...)."""
    wave = 10.0 ** rest_loglam()
    transmission = np.ones_like(wave)
    for rest, ew in lines:
        sigma = max(sigma_A, ew / (np.sqrt(2.0 * np.pi) * 0.9))
        transmission *= 1.0 - ew / (np.sqrt(2.0 * np.pi) * sigma) * np.exp(-0.5 * ((wave - rest) / sigma) ** 2)
    return transmission


def band_optical_depth(bands, scale_A=150.0):
    """Molecular-band optical depth on rest_loglam(), unit strength: sharp head, exponential fade."""
    wave = 10.0 ** rest_loglam()
    tau = np.zeros_like(wave)
    for head, direction in bands:
        distance = direction * (wave - head)
        tau += np.where(distance >= 0.0, np.exp(-distance / scale_A), 0.0)
    return tau
