"""Fiber ids: the TARGETID of a fiber, and the rows of a table that hold given ids."""

import numpy as np

from qsopipe.pipeline.errors import InputError

#: FIBERIDs TARGETID can hold: its last four digits, so 1..9999 (SDSS and BOSS plates have 640 or 1000 fibers).
FIBERID_RANGE = (1, 10**4 - 1)


def target_id(plate, mjd, fiberid):
    """TARGETID = PLATE * 10^9 + MJD * 10^4 + FIBERID (DR16Q's), int64, the arguments' broadcast shape."""
    return (np.asarray(plate, dtype=np.int64) * 10**9 + np.asarray(mjd, dtype=np.int64) * 10**4
            + np.asarray(fiberid, dtype=np.int64))


def check_fiberids(path, fiberid):
    """InputError naming `path` when a FIBERID of `fiberid` (int array, (n,)) is outside FIBERID_RANGE.

    Outside it, TARGETID would equal another fiber's (FIBERID 10000 of MJD m
    is fiber 0 of MJD m + 1), so such a file is refused when it is read.
    """
    fiberid = np.asarray(fiberid, dtype=np.int64)
    low, high = FIBERID_RANGE
    bad = np.unique(fiberid[(fiberid < low) | (fiberid > high)])
    if bad.size:
        raise InputError(path, f"FIBERID {', '.join(map(str, bad[:5].tolist()))} outside {low}..{high}: "
                               f"TARGETID = PLATE*10^9 + MJD*10^4 + FIBERID would collide")


def match_rows(keys, table_keys):
    """Row of `table_keys` holding each of `keys` (the first, if repeated): (index, found).

    keys (n,), table_keys (m,) : integer ids (TARGETID, THING_ID).
    Returns index int64 (n,), 0 where the key is absent, and found bool (n,).
    """
    keys = np.asarray(keys, dtype=np.int64)
    table_keys = np.asarray(table_keys, dtype=np.int64)
    if table_keys.size == 0:
        return np.zeros(keys.size, dtype=np.int64), np.zeros(keys.size, dtype=bool)
    order = np.argsort(table_keys, kind="stable")
    position = np.minimum(np.searchsorted(table_keys[order], keys), table_keys.size - 1)
    index = order[position]
    found = table_keys[index] == keys
    return np.where(found, index, 0), found
