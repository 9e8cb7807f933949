"""Issue 23: what a `qsopipe run` leaves for the people who share its OUTDIR.

Outputs honour the umask, the log of a normal run carries no Dask noise,
run_report.json says which code, command, models and time made it, and a
full disk stops the run early, names the file and leaves nothing half-written.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

QSOPIPE = str(Path(sys.executable).with_name("qsopipe"))

#: A sitecustomize.py for the run's processes: the write of a file named NO_SPACE_AT fails with ENOSPC.
NO_SPACE_HOOK = '''"""Test hook (tests/test_run_outputs.py): a full disk when the file named NO_SPACE_AT is written."""
import contextlib
import errno
import os

import qsopipe.pipeline.atomic

_NAME = os.environ["NO_SPACE_AT"]
_atomic_path = qsopipe.pipeline.atomic.atomic_path


@contextlib.contextmanager
def _full_disk_atomic_path(path):
    with _atomic_path(path) as tmp:
        yield tmp
        if os.path.basename(os.fspath(path)) == _NAME:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


qsopipe.pipeline.atomic.atomic_path = _full_disk_atomic_path
'''


def qsopipe(*args, env=None):
    """`qsopipe ARGS` under umask 022; returns the CompletedProcess."""
    return subprocess.run([QSOPIPE, *map(str, args)], capture_output=True, text=True, timeout=600, env=env,
                          preexec_fn=lambda: os.umask(0o022))


@pytest.fixture(scope="module")
def run_args(tmp_path_factory, tiny_models):
    """`qsopipe run` arguments minus --out: two simulated plates of 20 fibers, tiny models, one worker."""
    sim = tmp_path_factory.mktemp("sim")
    result = qsopipe("simulate", "--out", sim, "--plates", 2, "--fibers", 20, "--seed", 5)
    assert result.returncode == 0, result.stderr
    return [sim / "spectra", "--workers", 1, "--qn-model", tiny_models["qn"], "--mgii-model", tiny_models["mgii"]]


@pytest.fixture(scope="module")
def finished_run(run_args, tmp_path_factory):
    """(OUTDIR, CompletedProcess) of a run with --keep-shards."""
    out = tmp_path_factory.mktemp("run") / "out"
    result = qsopipe("run", *run_args, "--keep-shards", "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_outputs_honour_the_umask(finished_run):
    out, _ = finished_run
    outputs = [out / "catalog.fits", out / "run_report.json", *(out / "results").rglob("*.parquet"),
               *(out / "shards").rglob("*.parquet"), *(out / "done").glob("*.json")]
    assert len(outputs) == 2 + 3 * 2 + 2 + 2
    assert {str(path): oct(stat.S_IMODE(path.stat().st_mode)) for path in outputs} == \
        {str(path): "0o644" for path in outputs}
