"""The truth table of a simulation run: DIR/truth.fits.

HDU1 TRUTH, one row per fiber of every plate, DR12Q-superset names: PLATE, MJD,
FIBERID, THING_ID, OBJTYPE, CLASS_PERSON (1 star, 3 quasar, 30 BAL quasar,
4 galaxy, 0 sky or dead fiber), Z_VI (-1 for sky and dead fibers), Z_CONF_PERSON
(3 clean, 0 none), BAL_FLAG_VI, BI_CIV (km/s), plus the simulator's SIM_KIND,
SIM_SUBTYPE and MAG (ugriz, AB). HDU2 MGII_ABSORBERS: PLATE, MJD, FIBERID, Z_ABS,
EW_2796, EW_2803 (rest-frame A), FWHM (rest-frame A). HDU3 METAL_ABSORBERS: the
confuser lines, one row per line (ION 'CIV', 'SIIV', 'SIII' for SiII, 'ALII' or
'UNKNOWN'; WAVE_REST, Z_ABS, EW and FWHM of that line; the lines of one system
share Z_ABS; FeII lines of MgII absorbers are not listed).
"""

import os
from pathlib import Path

import fitsio
import numpy as np

from qsopipe.pipeline import __version__

TRUTH_DTYPE = [("PLATE", "i4"), ("MJD", "i4"), ("FIBERID", "i4"), ("THING_ID", "i8"), ("OBJTYPE", "S16"),
               ("CLASS_PERSON", "i2"), ("Z_VI", "f8"), ("Z_CONF_PERSON", "i2"), ("BAL_FLAG_VI", "i2"),
               ("BI_CIV", "f8"), ("SIM_KIND", "S8"), ("SIM_SUBTYPE", "S8"), ("MAG", "f4", (5,))]
MGII_DTYPE = [("PLATE", "i4"), ("MJD", "i4"), ("FIBERID", "i4"), ("Z_ABS", "f8"), ("EW_2796", "f4"),
              ("EW_2803", "f4"), ("FWHM", "f4")]
METAL_DTYPE = [("PLATE", "i4"), ("MJD", "i4"), ("FIBERID", "i4"), ("ION", "S8"), ("WAVE_REST", "f8"),
               ("Z_ABS", "f8"), ("EW", "f4"), ("FWHM", "f4")]
UNITS = {"Z_ABS": "", "EW_2796": "Angstrom", "EW_2803": "Angstrom", "FWHM": "Angstrom", "BI_CIV": "km/s",
         "WAVE_REST": "Angstrom", "EW": "Angstrom", "MAG": "mag"}


def plate_truth(sim):
    """(truth rows (nfiber,), MgII rows, metal rows) of one SimulatedPlate."""
    spectra, plugmap = sim.spectra, sim.plugmap
    truth = np.zeros(len(plugmap), TRUTH_DTYPE)
    truth["PLATE"], truth["MJD"] = sim.plate, sim.mjd
    for name in ("FIBERID", "THING_ID", "OBJTYPE"):
        truth[name] = plugmap[name]
    for name in ("CLASS_PERSON", "Z_VI", "Z_CONF_PERSON", "BAL_FLAG_VI", "BI_CIV", "MAG"):
        truth[name] = spectra.truth[name]
    truth["SIM_KIND"], truth["SIM_SUBTYPE"] = spectra.truth["KIND"], spectra.truth["SUBTYPE"]
    return truth, _absorbers(sim, spectra.mgii, MGII_DTYPE), _absorbers(sim, spectra.metals, METAL_DTYPE)


def _absorbers(sim, table, dtype):
    rows = np.zeros(len(table), dtype)
    rows["PLATE"], rows["MJD"] = sim.plate, sim.mjd
    rows["FIBERID"] = sim.plugmap["FIBERID"][table["ROW"]]
    for name in rows.dtype.names[3:]:
        rows[name] = table[name]
    order = np.lexsort((rows["Z_ABS"], rows["FIBERID"]))
    return rows[order]


def write_truth(path, truths, mgii, metals, seed):
    """Write truth.fits from per-plate lists of rows; written to a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    header = [{"name": "SIMSEED", "value": int(seed), "comment": "qsopipe simulate --seed"},
              {"name": "QSOPIPEV", "value": __version__, "comment": "qsopipe version"}]
    with fitsio.FITS(tmp, "rw", clobber=True) as fits:
        fits.write(None, header=header)
        for name, rows, dtype in (("TRUTH", truths, TRUTH_DTYPE), ("MGII_ABSORBERS", mgii, MGII_DTYPE),
                                  ("METAL_ABSORBERS", metals, METAL_DTYPE)):
            table = np.concatenate(rows) if rows else np.zeros(0, dtype)
            units = [UNITS.get(column, "") for column in table.dtype.names]
            fits.write(table, extname=name, units=units)
    os.replace(tmp, path)
    return path
