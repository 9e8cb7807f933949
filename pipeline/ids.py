"""Fiber ids: the TARGETID of a fiber, and the rows of a table that hold given ids."""

import numpy as np


def target_id(plate, mjd, fiberid):
    """TARGETID = PLATE * 10^9 + MJD * 10^4 + FIBERID (DR16Q's), int64, the arguments' broadcast shape."""
    return (np.asarray(plate, dtype=np.int64) * 10**9 + np.asarray(mjd, dtype=np.int64) * 10**4
            + np.asarray(fiberid, dtype=np.int64))


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
