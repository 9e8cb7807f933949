"""Wavelength grids and line lists shared by the stages (facts from the papers).

All grids are uniform in log10(wavelength / Angstrom).
"""

import numpy as np

#: Native SDSS/BOSS coadd pixel width, in log10(Angstrom).
NATIVE_DLOGLAM = 1e-4

#: QuasarNET input grid: 443 bins of 1e-3 dex from 3600 A (Busca & Balland 2018).
QN_LOGLAM_MIN = np.log10(3600.0)
QN_LOGLAM_MAX = np.log10(10000.0)
QN_DLOGLAM = 1e-3
QN_NBINS = int((QN_LOGLAM_MAX - QN_LOGLAM_MIN) / QN_DLOGLAM)

#: MgII CNN input grid: 3841 pixels of 1e-4 dex from 3800 A (Zhao et al. 2019).
MGII_LOGLAM_MIN = np.log10(3800.0)
MGII_DLOGLAM = 1e-4
MGII_NPIX = 3841

#: and_mask bit 25, COMBINEREJ: QuasarNET's published weights saw ivar = 0 there.
COMBINEREJ_BIT = 25

#: QuasarNET line finders, in output order: (name, rest wavelength in Angstrom).
QN_LINES = (
    ("LYA", 1215.67),
    ("CIV", 1548.2049),
    ("CIII", 1908.734),
    ("MGII", 2796.3511),
    ("HBETA", 4862.68),
    ("HALPHA", 6562.8),
)
#: The BAL finder sits on CIV(1548) and comes after the emission lines.
QN_BAL_LINE = ("CIV", 1548.2049)
#: Number of boxes per finder.
QN_NBOXES = 13

#: MgII doublet rest wavelengths, Angstrom.
MGII_2796 = 2796.3542699
MGII_2803 = 2803.5314853


def mgii_loglam():
    """log10(A) of the MgII CNN grid pixels, shape (3841,)."""
    return MGII_LOGLAM_MIN + MGII_DLOGLAM * np.arange(MGII_NPIX)
