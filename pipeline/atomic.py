"""Write-then-rename, so a killed process never leaves a file that looks complete."""

import errno
import os
import secrets
from contextlib import contextmanager

#: errno values that mean the file system has no room left for this user.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class NoSpaceError(OSError):
    """An output could not be written because its file system is full (or the quota is reached)."""

    def __init__(self, path, cause):
        super().__init__(cause.errno or errno.ENOSPC, "no space left on device (disk full or over quota)",
                         os.fspath(path))

    def __str__(self):
        return f"{self.filename}: {self.strerror}"


def is_no_space(err):
    """True when OSError `err` says the disk is full, by errno or (pyarrow) by its message."""
    return err.errno in NO_SPACE_ERRNOS or "No space left on device" in str(err)


def _create_beside(path):
    """Create an empty temporary file beside `path`, its mode set by the umask like any new file."""
    directory, name = os.path.split(path)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only on success.

    The temporary name starts with '.' and ends with '.tmp', so globs of
    finished outputs never see it; on any exception it is removed. A full
    disk raises NoSpaceError naming `path`.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = _create_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, NoSpaceError) and is_no_space(err):
            raise NoSpaceError(path, err) from err
        raise

