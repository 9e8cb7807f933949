"""Dust extinction curves: SMC-like (quasar hosts) and the Milky Way's (Galactic foreground)."""

import numpy as np

#: Milky Way R_V = A_V / E(B-V).
R_V_MILKY_WAY = 3.1
#: O'Donnell (1994) optical coefficients of a(x) and b(x), powers 0..8 of y = x - 1.82 (x in 1/micron).
ODONNELL_A = (1.0, 0.104, -0.609, 0.701, 1.137, -1.718, -0.827, 1.647, -0.505)
ODONNELL_B = (0.0, 1.952, 2.908, -3.989, -7.985, 11.102, 5.491, -10.805, 3.347)


def smc_k(wavelength_A):
    """SMC-like extinction A_lambda / E(B-V) (Prevot et al. 1984 power-law fit), dimensionless."""
    return 1.39 * (np.asarray(wavelength_A, np.float64) / 1.0e4) ** -1.2


def milky_way_k(wavelength_A, r_v=R_V_MILKY_WAY):
    """Milky Way extinction A_lambda / E(B-V) = a(x) R_V + b(x), dimensionless, same shape as wavelength_A.

    Cardelli, Clayton & Mathis (1989) infrared law (x < 1.1 / micron) with
    O'Donnell (1994)'s optical update (1.1 <= x <= 3.3 / micron), x = 1 /
    lambda; defined for 3030 A to 3.3 micron (ValueError outside).
    """
    x = 1.0e4 / np.asarray(wavelength_A, np.float64)
    if np.any((x < 0.3) | (x > 3.3)):
        raise ValueError("the CCM/O'Donnell law is used here for 3030 A to 3.3 micron only")
    y = x - 1.82
    infrared = x < 1.1
    a = np.where(infrared, 0.574 * x**1.61, np.polynomial.polynomial.polyval(y, ODONNELL_A))
    b = np.where(infrared, -0.527 * x**1.61, np.polynomial.polynomial.polyval(y, ODONNELL_B))
    return a * r_v + b


def milky_way_transmission(loglam, ebv):
    """Foreground transmission 10^(-0.4 E(B-V) k(lambda)), (n, npix) float32.

    loglam : (npix,) observed log10(A); ebv : (n,) E(B-V) in mag.
    """
    k = milky_way_k(10.0 ** np.asarray(loglam, np.float64)).astype(np.float32)
    return np.power(np.float32(10.0), np.float32(-0.4) * np.asarray(ebv, np.float32)[:, None] * k[None, :])
