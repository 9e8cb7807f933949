"""Opening FITS files so that every failure is an InputError naming the file."""

import os
from contextlib import contextmanager

import fitsio
import numpy as np

from qsopipe.pipeline.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def open_fits(path):
    """Open `path` with fitsio; unreadable, empty or non-FITS files raise InputError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "file does not exist")
    if not os.path.isfile(path):
        raise InputError(path, "not a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(path, "file is not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise InputError(path, "file is empty (0 bytes)")
    try:
        with open(path, "rb") as handle:
            start = handle.read(6)
    except OSError as err:
        raise InputError(path, f"file is not readable ({err.strerror})") from None
    if start != b"SIMPLE" and not start.startswith(_GZIP_MAGIC):
        raise InputError(path, "not a FITS file (no SIMPLE card at the start)")
    try:
        fits = fitsio.FITS(path)
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable FITS file ({_first_line(err)})") from None
    try:
        yield fits
    except (OSError, ValueError) as err:
        raise InputError(path, f"truncated or corrupt FITS data ({_first_line(err)})") from None
    finally:
        fits.close()


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def header_number(path, header, key, kind=float, default=None, hdu="HDU0"):
    """header[key] as `kind` (float or int), `default` when absent; InputError saying what is wrong if no number."""
    if key not in header:
        return default
    value = header[key]
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{hdu} header {key} = {value!r} is not a number") from None


def table_columns(hdu):
    """Map upper-case column name to the name as stored in a binary-table HDU."""
    return {name.upper(): name for name in hdu.get_colnames()}


def read_columns(hdu, wanted, rows=None):
    """Read the columns of `wanted` present in a table HDU, case-insensitively.

    Returns a dict keyed by the upper-case names in `wanted`; missing columns
    are simply absent.
    """
    stored = table_columns(hdu)
    present = [name for name in wanted if name in stored]
    if not present:
        return {}
    data = hdu.read(columns=[stored[name] for name in present], rows=rows)
    return {name: np.asarray(data[stored[name]]) for name in present}
