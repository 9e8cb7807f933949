"""Where along a quasar sightline the MgII stage looks, and the region each absorber lies in.

Two spans of the quasar's rest frame, both in Angstrom of the MgII 2796
line's position:

- the CNN window (Zhao et al. 2019): from CNN_WINDOW_MARGIN_KMS red of CIV
  emission to as far blue of MgII emission; the CNN sees only this;
- the doublet finder's path: from PATH_LYA_MARGIN_KMS red of Lyman-alpha
  emission (beyond NV 1240, out of the forest) to PATH_MGII_MARGIN_KMS blue
  of MgII emission, as the traditional catalogues search it, less the CIV
  gap (CIV_GAP_REST): from PROXIMATE_KMS blue of CIV 1548 to the CNN
  window's start, where associated CIV absorbers and the CIV emission line
  (which the running continuum cannot follow) would imitate doublets.

An absorber's REGION is a bitmask of `MgIIRegion`: in the CNN window,
between Lyman-alpha and the CIV gap (LYA_CIV), and within PROXIMATE_KMS of
the quasar (PROXIMATE, inside the window: the path ends where the window
does, as the DR12 catalogue's reddest absorbers do, because the running
continuum cannot follow the MgII emission line's peak).
"""

import enum

import numpy as np

from qsopipe.pipeline.constants import (CIV_1548, CIV_EMISSION, LYA, MGII_2796, MGII_2803, MGII_EMISSION,
                                        SPEED_OF_LIGHT_KMS)

#: Margin kept off the CIV and MgII emission lines at the CNN window's ends, km/s (the DR12
#: catalogue's reddest absorbers sit 3000 km/s blue of MgII).
CNN_WINDOW_MARGIN_KMS = 3000.0
#: The doublet finder's path starts this far red of Lyman-alpha emission, km/s (NV 1240 lies 6000 km/s red).
PATH_LYA_MARGIN_KMS = 8000.0
#: The path ends this far blue of MgII emission, km/s.
PATH_MGII_MARGIN_KMS = 3000.0
#: Absorbers closer than this to the quasar's redshift are proximate, km/s.
PROXIMATE_KMS = 5000.0

#: Rest wavelengths (of the 2796 line's position) at the ends of the CNN window and of the path, A.
CNN_WINDOW_REST = (CIV_EMISSION * (1 + CNN_WINDOW_MARGIN_KMS / SPEED_OF_LIGHT_KMS),
                   MGII_EMISSION * (1 - CNN_WINDOW_MARGIN_KMS / SPEED_OF_LIGHT_KMS))
PATH_REST = (LYA * (1 + PATH_LYA_MARGIN_KMS / SPEED_OF_LIGHT_KMS),
             MGII_EMISSION * (1 - PATH_MGII_MARGIN_KMS / SPEED_OF_LIGHT_KMS))
#: Rest wavelengths of the CIV gap's ends, A: no MgII line is searched for in between.
CIV_GAP_REST = (CIV_1548 * (1 - PROXIMATE_KMS / SPEED_OF_LIGHT_KMS), CNN_WINDOW_REST[0])


class MgIIRegion(enum.IntFlag):
    """REGION bits of an absorber."""

    CNN_WINDOW = 1  #: 2796 inside the CNN window
    LYA_CIV = 2     #: 2796 between the path's start and the CIV gap
    PROXIMATE = 4   #: within PROXIMATE_KMS of the quasar


def absorber_regions(z_abs, z_qso):
    """REGION bits (MgIIRegion) of absorbers at z_abs on quasars at z_qso; arrays broadcast, int16.

    Bounds are on the lines' rest wavelengths in the quasar frame, MGII_2796
    (1 + z_abs) / (1 + z_qso) and the same for 2803, as the finder searches:
    an absorber gets 0 unless both lines lie on the path and neither in the
    CIV gap.
    """
    rest = MGII_2796 * (1.0 + np.asarray(z_abs, np.float64)) / (1.0 + np.asarray(z_qso, np.float64))
    rest_2803 = rest * (MGII_2803 / MGII_2796)
    in_path = (rest >= PATH_REST[0]) & (rest_2803 <= PATH_REST[1])
    in_path &= (rest_2803 <= CIV_GAP_REST[0]) | (rest >= CIV_GAP_REST[1])
    window = in_path & (rest >= CNN_WINDOW_REST[0]) & (rest <= CNN_WINDOW_REST[1])
    lya_civ = in_path & (rest <= CIV_GAP_REST[0])
    proximate = in_path & (rest >= MGII_2796 * (1 - PROXIMATE_KMS / SPEED_OF_LIGHT_KMS))
    regions = (np.where(window, MgIIRegion.CNN_WINDOW, 0) | np.where(lya_civ, MgIIRegion.LYA_CIV, 0)
               | np.where(proximate, MgIIRegion.PROXIMATE, 0))
    return regions.astype(np.int16)
