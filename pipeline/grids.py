"""Wavelength grids of the networks' inputs (facts from the papers).

All grids are uniform in log10(wavelength / Angstrom).
"""

import numpy as np

#: Native SDSS/BOSS coadd pixel width, in log10(Angstrom).
NATIVE_DLOGLAM = 1e-4

#: QuasarNET input grid: 443 bins of 1e-3 dex from 3600 A to 10000 A (Busca & Balland 2018).
QN_WAVE_MIN = 3600.0
QN_WAVE_MAX = 10000.0
QN_LOGLAM_MIN = np.log10(QN_WAVE_MIN)
QN_LOGLAM_MAX = np.log10(QN_WAVE_MAX)
QN_DLOGLAM = 1e-3
QN_NBINS = int((QN_LOGLAM_MAX - QN_LOGLAM_MIN) / QN_DLOGLAM)
#: Number of boxes each QuasarNET finder cuts the grid into.
QN_NBOXES = 13

#: MgII CNN input grid: 3841 pixels of 1e-4 dex from 3800 A (Zhao et al. 2019).
MGII_LOGLAM_MIN = np.log10(3800.0)
MGII_DLOGLAM = 1e-4
MGII_NPIX = 3841

#: and_mask bit 25, COMBINEREJ: QuasarNET's published weights saw ivar = 0 there.
COMBINEREJ_BIT = 25


def mgii_loglam():
    """log10(A) of the MgII CNN grid pixels, shape (3841,)."""
    return MGII_LOGLAM_MIN + MGII_DLOGLAM * np.arange(MGII_NPIX)
