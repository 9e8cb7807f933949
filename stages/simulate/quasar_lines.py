"""Quasar broad and narrow emission lines: rest wavelengths, strengths, widths, shifts.

Strengths are rest-frame equivalent widths against the power-law continuum,
after Vanden Berk et al. (2001) and Shen et al. (2011), each with a lognormal
scatter; widths are FWHM in km/s with a lognormal scatter; shifts are
velocity offsets (negative = blueshift) with a Gaussian scatter. The FeII
pseudo-continuum is a separate multiplicative template (FEII_BLENDS).
"""

import numpy as np

from qsopipe.pipeline.constants import (
    ALIII_EMISSION, CIII_EMISSION, CIV_EMISSION, HALPHA, HBETA, HDELTA, HGAMMA, LYA, MGII_EMISSION, NII_6585, NV,
    OII, OIII_4959, OIII_5007, SII_6718, SII_6733,
)

#: name, rest wavelength (A), median rest EW (A), EW scatter (dex),
#: median FWHM (km/s), FWHM scatter (dex), mean shift (km/s), shift scatter (km/s)
QUASAR_LINES = (
    ("LYB_OVI", 1033.8, 10.0, 0.25, 5000.0, 0.12, 0.0, 300.0),
    ("LYA_BROAD", LYA, 45.0, 0.22, 6000.0, 0.12, 0.0, 400.0),
    ("LYA_CORE", LYA, 16.0, 0.25, 2000.0, 0.12, 0.0, 200.0),
    ("NV", NV, 12.0, 0.25, 4000.0, 0.12, 0.0, 300.0),
    ("OI", 1304.35, 2.0, 0.25, 3500.0, 0.10, 0.0, 300.0),
    ("CII", 1335.3, 0.8, 0.25, 3500.0, 0.10, 0.0, 300.0),
    ("SIIV_OIV", 1399.8, 9.0, 0.22, 5500.0, 0.12, -300.0, 500.0),
    ("CIV_BROAD", CIV_EMISSION, 22.0, 0.22, 7000.0, 0.12, -800.0, 700.0),
    ("CIV_CORE", CIV_EMISSION, 14.0, 0.25, 2500.0, 0.12, -200.0, 300.0),
    ("HEII", 1640.42, 2.5, 0.25, 5000.0, 0.12, 0.0, 300.0),
    ("ALIII", ALIII_EMISSION, 1.5, 0.25, 4000.0, 0.12, 0.0, 300.0),
    ("SIIII", 1892.0, 1.5, 0.25, 4000.0, 0.12, 0.0, 300.0),
    ("CIII", CIII_EMISSION, 20.0, 0.20, 6000.0, 0.12, -200.0, 400.0),
    ("MGII", MGII_EMISSION, 38.0, 0.20, 4500.0, 0.12, 0.0, 200.0),
    ("NEV", 3426.84, 1.2, 0.25, 1000.0, 0.10, 0.0, 100.0),
    ("OII", OII, 1.8, 0.30, 600.0, 0.10, 0.0, 50.0),
    ("NEIII", 3869.85, 1.5, 0.25, 800.0, 0.10, 0.0, 50.0),
    ("HDELTA", HDELTA, 6.0, 0.20, 4000.0, 0.12, 0.0, 200.0),
    ("HGAMMA", HGAMMA, 14.0, 0.20, 4000.0, 0.12, 0.0, 200.0),
    ("HBETA", HBETA, 55.0, 0.20, 4500.0, 0.12, 0.0, 200.0),
    ("OIII_4959", OIII_4959, 6.0, 0.30, 500.0, 0.10, 0.0, 50.0),
    ("OIII_5007", OIII_5007, 18.0, 0.30, 500.0, 0.10, 0.0, 50.0),
    ("HEI", 5877.3, 6.0, 0.20, 4000.0, 0.12, 0.0, 200.0),
    ("HALPHA", HALPHA, 260.0, 0.18, 3500.0, 0.12, 0.0, 200.0),
    ("NII_6585", NII_6585, 5.0, 0.30, 500.0, 0.10, 0.0, 50.0),
    ("SII_6718", SII_6718, 2.5, 0.30, 500.0, 0.10, 0.0, 50.0),
    ("SII_6733", SII_6733, 2.5, 0.30, 500.0, 0.10, 0.0, 50.0),
    ("PAEPSILON_OI", 8446.0, 8.0, 0.25, 3000.0, 0.10, 0.0, 200.0),
)

#: FeII blends as broad Gaussians: rest A, rest EW (A), FWHM (km/s).
FEII_BLENDS = ((2400.0, 18.0, 30000.0), (2620.0, 14.0, 20000.0), (3000.0, 10.0, 20000.0),
               (4570.0, 25.0, 9000.0), (5250.0, 25.0, 9000.0))

LINE_NAMES = tuple(line[0] for line in QUASAR_LINES)
_TABLE = np.array([line[1:] for line in QUASAR_LINES], dtype=np.float64)
REST_A, EW_A, EW_DEX, FWHM_KMS, FWHM_DEX, SHIFT_KMS, SHIFT_SD_KMS = _TABLE.T


def draw_line_parameters(n, rng, ew_scale=None):
    """Per-object line strengths, widths and shifts.

    Returns dict of (n, nline) arrays: 'ew' rest EW (A), 'fwhm' (km/s),
    'shift' (km/s). A per-object factor common to all lines (ew_scale, (n,),
    default lognormal 0.12 dex) keeps strong-lined quasars strong in every line.
    """
    nline = len(QUASAR_LINES)
    common = 10 ** rng.normal(0.0, 0.12, n) if ew_scale is None else np.asarray(ew_scale)
    ew = EW_A * 10 ** (EW_DEX * rng.standard_normal((n, nline))) * common[:, None]
    width_common = 10 ** rng.normal(0.0, 0.08, n)
    fwhm = FWHM_KMS * 10 ** (FWHM_DEX * rng.standard_normal((n, nline))) * width_common[:, None]
    shift = SHIFT_KMS + SHIFT_SD_KMS * rng.standard_normal((n, nline))
    return {"ew": ew, "fwhm": fwhm, "shift": shift}
