"""The in-memory plate every reader returns and every stage consumes."""

from dataclasses import dataclass, field

import numpy as np

#: Target-selection bitmask columns carried per fiber (0 where a file lacks one).
TARGET_COLUMNS = (
    "PRIMTARGET", "SECTARGET",
    "BOSS_TARGET1", "BOSS_TARGET2", "ANCILLARY_TARGET1", "ANCILLARY_TARGET2",
    "EBOSS_TARGET0", "EBOSS_TARGET1", "EBOSS_TARGET2",
)

#: The survey pipeline's own answer per fiber (a spec file's HDU2 row), with its default where a file has none.
PIPE_COLUMNS = {"Z_PIPE": ("f8", -1.0), "ZERR_PIPE": ("f8", -1.0), "ZWARNING_PIPE": ("i4", -1),
                "CLASS_PIPE": ("U6", "")}

#: Per-fiber id, plug-map and pipeline columns, with their numpy dtypes.
FIBER_COLUMNS = {
    "PLATE": "i4", "MJD": "i4", "FIBERID": "i4", "THING_ID": "i8",
    "RA": "f8", "DEC": "f8", "OBJTYPE": "U16",
    **{name: "i8" for name in TARGET_COLUMNS},
    **{name: dtype for name, (dtype, _) in PIPE_COLUMNS.items()},
}


def empty_fibers(n):
    """A fiber table of n rows with every FIBER_COLUMNS column at its default.

    Defaults: THING_ID -1, RA/DEC NaN, OBJTYPE '', PIPE_COLUMNS' defaults, everything else 0.
    """
    fibers = np.zeros(n, dtype=list(FIBER_COLUMNS.items()))
    fibers["THING_ID"] = -1
    fibers["RA"] = np.nan
    fibers["DEC"] = np.nan
    for name, (_, default) in PIPE_COLUMNS.items():
        fibers[name] = default
    return fibers


@dataclass
class Plate:
    """One plate-MJD's spectra on a log-lambda grid.

    Attributes
    ----------
    plate, mjd : int
    fibers : numpy structured array, shape (nfiber,)
        Columns FIBER_COLUMNS, sorted by FIBERID.
    loglam : ndarray of float64, shape (npix,) or (nfiber, npix)
        log10(wavelength / Angstrom). One row shared by all fibers when they
        sit on one grid (spPlate, or spec files aligned on the 1e-4 grid);
        one row per fiber otherwise.
    flux : ndarray of float32, shape (nfiber, npix)
        1e-17 erg/s/cm^2/A.
    ivar : ndarray of float32, shape (nfiber, npix)
        Inverse variance of flux; 0 where a pixel is missing.
    and_mask : ndarray of int32, shape (nfiber, npix)
        SDSS SPPIXMASK bits set in every exposure.
    sources : list of str
        The files this plate was read from.
    """

    plate: int
    mjd: int
    fibers: np.ndarray
    loglam: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    and_mask: np.ndarray
    sources: list = field(default_factory=list)

    @property
    def nfiber(self):
        return len(self.fibers)

    @property
    def name(self):
        """'pppp-mmmmm', the plate-MJD as SDSS file names spell it."""
        return f"{self.plate:04d}-{self.mjd:05d}"
