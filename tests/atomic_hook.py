"""A sitecustomize.py that makes something happen inside one atomic write of a `qsopipe` run.

Put on PYTHONPATH of the run only (the pipeline's code is unchanged), it
wraps `qsopipe.pipeline.atomic.atomic_path` in the run's process and every
Dask worker; when a file whose name matches $AT_ATOMIC_WRITE has been
written to its temporary name, before the rename, it runs ACTION there
(tests/test_crash_safety.py kills or holds the run; tests/test_run_outputs.py fills the disk).
"""

HOOK = '''"""Test hook (tests/atomic_hook.py): {action} at the atomic write of $AT_ATOMIC_WRITE."""
import contextlib
import errno
import fnmatch
import os
import pathlib
import signal
import time

import qsopipe.pipeline.atomic

_PATTERN = os.environ["AT_ATOMIC_WRITE"]
_atomic_path = qsopipe.pipeline.atomic.atomic_path


@contextlib.contextmanager
def _hooked_atomic_path(path):
    with _atomic_path(path) as tmp:
        yield tmp
        if fnmatch.fnmatch(os.path.basename(os.fspath(path)), _PATTERN):
            {action}


qsopipe.pipeline.atomic.atomic_path = _hooked_atomic_path
'''

#: Kill the run's whole process group (the `qsopipe run` process and its Dask workers).
KILL = "os.killpg(0, signal.SIGKILL)"
#: Create the file $HOLD_FLAG names, then hold the writing process (a Dask worker) for 600 s.
HOLD = "pathlib.Path(os.environ['HOLD_FLAG']).touch(); time.sleep(600)"
#: The write fails as on a full disk.
NO_SPACE = "raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))"


def write_hook(folder, action):
    """folder/sitecustomize.py running the Python statement `action`; returns `folder` for PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(HOOK.format(action=action))
    return folder
