"""Readers for metadata and truth catalogs: spAll and the DR12Q superset.

Both return a dict of numpy columns keyed by upper-case names, with every
requested optional column present (filled with its default when the file
lacks it), so callers never test for missing columns.
"""

import os

import numpy as np

from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.sdss.fitsfile import open_fits, read_columns

#: spAll columns read for metadata: name -> (dtype, default when absent).
SPALL_COLUMNS = {
    "PLATE": ("i4", None), "MJD": ("i4", None), "FIBERID": ("i4", None),
    "THING_ID": ("i8", -1), "PLUG_RA": ("f8", np.nan), "PLUG_DEC": ("f8", np.nan),
    "OBJTYPE": ("U16", ""), "CLASS": ("U8", ""), "SUBCLASS": ("U32", ""),
    "Z": ("f8", np.nan), "Z_ERR": ("f8", np.nan), "ZWARNING": ("i8", 0),
}

#: DR12Q-superset truth columns: name -> (dtype, default when absent). SIM_SUBTYPE is the simulated
#: truth's subtype (a star's spectral type, 'BAL', ...), '' in real catalogs.
DR12Q_COLUMNS = {
    "PLATE": ("i4", None), "MJD": ("i4", None), "FIBERID": ("i4", None),
    "THING_ID": ("i8", -1), "RA": ("f8", np.nan), "DEC": ("f8", np.nan),
    "CLASS_PERSON": ("i2", -1), "Z_VI": ("f8", np.nan), "Z_CONF_PERSON": ("i2", -1),
    "BAL_FLAG_VI": ("i2", -1), "BI_CIV": ("f8", np.nan), "SIM_SUBTYPE": ("U8", ""),
}


def balnicity_bal(bi_civ):
    """BI_CIV > 0 (km/s; NaN and DR12Q's -1 count as not BAL): the balnicity BAL label. bool (n,).

    The QuasarNET paper trains its BAL finder only where this label and the
    visual flag BAL_FLAG_VI agree; `qsopipe.models.boxes.training_targets`
    and `qsopipe.stages.evaluate` both use this one definition.
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(bi_civ, dtype=np.float64) > 0


#: Other spellings of required columns found in real catalogs.
_ALIASES = {"FIBERID": ("FIBER",), "Z_VI": ("Z",)}


def read_spall(path):
    """Read an spAll file (or subset): metadata and pipeline classifications per fiber."""
    return _read_table(path, SPALL_COLUMNS)


def read_dr12q(path, hdu=1):
    """Read a DR12Q-superset-style truth table (real DR12Q, a subset, or simulated truth)."""
    return _read_table(path, DR12Q_COLUMNS, hdu=hdu)


def _read_table(path, columns, hdu=1):
    path = os.fspath(path)
    with open_fits(path) as fits:
        if len(fits) <= hdu or fits[hdu].get_exttype() != "BINARY_TBL":
            raise InputError(path, f"no binary table in HDU{hdu}")
        table = fits[hdu]
        wanted = list(columns) + [alias for aliases in _ALIASES.values() for alias in aliases]
        data = read_columns(table, wanted)
        nrows = table.get_nrows()
    out = {}
    for name, (dtype, default) in columns.items():
        values = data.get(name)
        if values is None:
            values = next((data[a] for a in _ALIASES.get(name, ()) if a in data), None)
        if values is None:
            if default is None:
                raise InputError(path, f"table lacks required column {name}")
            values = np.full(nrows, default)
        if dtype.startswith("U"):
            values = np.char.strip(np.asarray(values).astype(str))
        out[name] = np.asarray(values).astype(dtype)
    return out
