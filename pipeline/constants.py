"""Physical constants, the rest wavelengths of the lines the code uses, and DR12Q class codes.

Wavelengths are rest-frame vacuum Angstrom unless a name says otherwise.
Each value is written here once. Where the code uses two values for one
line they are different quantities, named for what they are: CIV_1548 is
the blue component of the CIV absorption doublet, CIV_EMISSION the
centroid of the broad emission line.
"""

#: Speed of light, km/s.
SPEED_OF_LIGHT_KMS = 299792.458
#: hc/k (Planck constant times speed of light over Boltzmann constant), Angstrom Kelvin.
HC_OVER_K = 1.4388e8
#: FWHM of a Gaussian over its sigma, 2 sqrt(2 ln 2) to four decimals.
FWHM_PER_SIGMA = 2.3548

#: Hydrogen: Lyman-alpha, Lyman-beta and the Lyman limit; the Balmer series from Halpha to H10
#: (HEPSILON_AIR: Hepsilon at its air wavelength) and the Balmer limit.
LYA = 1215.67
LYB = 1025.72
LYMAN_LIMIT = 911.75
HALPHA = 6564.61
HBETA = 4862.68
HGAMMA = 4341.68
HDELTA = 4102.89
HEPSILON = 3971.20
HEPSILON_AIR = 3970.07
H_ZETA = 3890.16
H_ETA = 3836.47
H_THETA = 3798.98
BALMER_LIMIT = 3646.0

#: Centroids of metal emission lines of quasars and galaxies (blends where the line is a multiplet).
NV = 1240.14
CIV_EMISSION = 1549.06
ALIII_EMISSION = 1857.4
CIII_EMISSION = 1908.73
MGII_EMISSION = 2798.75
OII = 3728.48
OIII_4959 = 4960.30
OIII_5007 = 5008.24
NII_6585 = 6585.27
SII_6718 = 6718.29
SII_6733 = 6732.67

#: Stellar absorption features of stars and galaxies: CaII K and H, the G band (CH), Mg b, Na D and
#: the CaII triplet's two strongest lines.
CAII_K = 3934.78
CAII_H = 3969.59
G_BAND = 4305.0
MGI_B = 5176.7
NAI_D = 5894.0
CAII_8544 = 8544.4
CAII_8664 = 8664.5

#: Narrow absorption lines of intervening absorbers: the components of the CIV, SiIV and MgII
#: doublets, SiII 1526, AlII 1670, FeII and MgI.
CIV_1548 = 1548.2049
CIV_1550 = 1550.7785
SIIV_1394 = 1393.755
SIIV_1403 = 1402.770
SIII_1526 = 1526.707
ALII_1670 = 1670.789
FEII_2344 = 2344.21
FEII_2374 = 2374.46
FEII_2382 = 2382.77
FEII_2586 = 2586.65
FEII_2600 = 2600.17
MGII_2796 = 2796.3542699
MGII_2803 = 2803.5314853
MGI_2853 = 2852.96
#: FeII lines that strong MgII absorbers carry: (rest A, typical rest EW relative to MgII 2796).
MGII_SYSTEM_FEII_LINES = ((FEII_2600, 0.45), (FEII_2586, 0.3), (FEII_2382, 0.4), (FEII_2344, 0.3))

#: CIII] and MgII at the wavelengths of QuasarNET's published line list, which its finders were trained on.
CIII_QUASARNET = 1908.734
MGII_QUASARNET = 2796.3511
#: Halpha at its air wavelength, as QuasarNET's published line list gives it.
HALPHA_AIR = 6562.8
#: QuasarNET's emission-line finders, in output order: (name, rest wavelength in Angstrom).
QN_LINES = (
    ("LYA", LYA),
    ("CIV", CIV_1548),
    ("CIII", CIII_QUASARNET),
    ("MGII", MGII_QUASARNET),
    ("HBETA", HBETA),
    ("HALPHA", HALPHA_AIR),
)
#: The BAL finder sits on CIV(1548) and comes after the emission lines.
QN_BAL_LINE = ("CIV", CIV_1548)
#: Every QuasarNET finder in output order: the emission lines, then the BAL finder (BAL_CIV).
QN_FINDERS = QN_LINES + (("BAL_" + QN_BAL_LINE[0], QN_BAL_LINE[1]),)

#: DR12Q CLASS_PERSON codes; UNKNOWN (0) is a fiber without a visual class (sky and dead fibers).
CLASS_PERSON = {"UNKNOWN": 0, "STAR": 1, "QSO": 3, "QSO_BAL": 30, "GALAXY": 4}
#: CLASS_PERSON codes counted as quasars.
QUASAR_CLASSES = (CLASS_PERSON["QSO"], CLASS_PERSON["QSO_BAL"])
#: DR12Q Z_CONF_PERSON of a confident visual redshift (the highest).
Z_CONF_CONFIDENT = 3
