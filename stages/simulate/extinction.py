"""Rest-frame dust extinction curves."""

import numpy as np


def smc_k(wavelength_A):
    """SMC-like extinction A_lambda / E(B-V) (Prevot et al. 1984 power-law fit), dimensionless."""
    return 1.39 * (np.asarray(wavelength_A, np.float64) / 1.0e4) ** -1.2
