"""The shipped quasar eigenspectra and the whole-pixel redshift grid they live on.

Rest-frame pixels share the MgII grid's phase: rest pixel k sits at
log10(lambda_rest / A) = MGII_LOGLAM_MIN + MGII_DLOGLAM k (k may be
negative), observed pixel i of a shard's MGII_FLUX at MGII_LOGLAM_MIN +
MGII_DLOGLAM i. A redshift with log10(1 + z) = MGII_DLOGLAM j ("shift j",
any real j) maps observed pixel i onto rest pixel i - j, so whole shifts
need no interpolation. The templates are redrock-templates' QSO-LOZ and
QSO-HIZ (BSD-3; stages/templates/README.md), rebuilt by
benchmarks/build_zfit_templates.py.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsopipe.pipeline import grids
from qsopipe.pipeline.constants import SPEED_OF_LIGHT_KMS

TEMPLATE_FILE = Path(__file__).resolve().parent / "templates" / "qso_templates.npz"
TEMPLATE_NAMES = ("LOZ", "HIZ")

#: Velocity of one whole-pixel shift, km/s (c ln(10) 1e-4 = 69.03).
PIXEL_KMS = SPEED_OF_LIGHT_KMS * np.log(10.0) * grids.MGII_DLOGLAM


@dataclass(frozen=True, eq=False)
class RestTemplate:
    """Eigenspectra on the rest-frame grid (equal and hashed by identity, so that kernels made from it can be cached).

    name : 'LOZ' or 'HIZ'
    basis : float64 (nbasis, nrest), arbitrary flux units; pixel m at rest pixel kmin + m
    kmin : int, rest pixel of basis[:, 0]
    zmin, zmax : redshift range the template was built for (its REDSHIFTS HDU)
    """

    name: str
    basis: np.ndarray
    kmin: int
    zmin: float
    zmax: float

    @property
    def nbasis(self):
        return self.basis.shape[0]

    @property
    def nrest(self):
        return self.basis.shape[1]

    def shift_range(self):
        """(first, last) whole shifts inside [zmin, zmax]."""
        return int(np.ceil(shift_of_redshift(self.zmin))), int(np.floor(shift_of_redshift(self.zmax)))


def shift_of_redshift(z):
    """Shift j (pixels, float) with log10(1 + z) = MGII_DLOGLAM j; same shape as z (z > -1)."""
    return np.log10(1.0 + np.asarray(z, np.float64)) / grids.MGII_DLOGLAM


def redshift_of_shift(j):
    """Redshift of shift j (pixels); same shape as j."""
    return 10.0 ** (grids.MGII_DLOGLAM * np.asarray(j, np.float64)) - 1.0


@functools.lru_cache(maxsize=4)
def load_templates(path=TEMPLATE_FILE):
    """The shipped templates, a tuple of RestTemplate in TEMPLATE_NAMES order (LOZ, HIZ)."""
    with np.load(path) as data:
        return tuple(RestTemplate(name, data[f"{name}_basis"].astype(np.float64), int(data[f"{name}_kmin"]),
                                  float(data[f"{name}_zrange"][0]), float(data[f"{name}_zrange"][1]))
                     for name in TEMPLATE_NAMES)
