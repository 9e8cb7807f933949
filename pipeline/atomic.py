"""Write-then-rename, so a killed process never leaves a file that looks complete."""

import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only on success.

    The temporary name starts with '.' and ends with '.tmp', so globs of
    finished outputs never see it; on any exception it is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(handle)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def is_up_to_date(output, inputs):
    """True if `output` exists and is newer than every file in `inputs`."""
    try:
        made = os.path.getmtime(output)
    except OSError:
        return False
    return all(os.path.getmtime(source) <= made for source in inputs)
