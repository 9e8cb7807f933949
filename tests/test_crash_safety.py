"""Issue 10 (and 8): kill -9 a run at three moments, resume it, and get the same catalog.

The kill must land at a known moment, not after a guessed delay: a
`sitecustomize.py` put on PYTHONPATH of the killed run only (so the
pipeline's code is unchanged) wraps `qsopipe.pipeline.atomic.atomic_path`, and when a
file whose name matches KILL_AT_ATOMIC_WRITE has been written to its
temporary name but not yet renamed, SIGKILLs the run's whole process group
(the `qsopipe run` process and every Dask worker, which all import that
hook). The three moments are the shard of the second plate (preprocess,
with --keep-shards only: otherwise no shard is written), its QuasarNET
results (inference), and catalog.fits (the catalog write).
One OUTDIR is killed at each moment in turn, each killed run resuming the
one before (as a resubmitted batch job would), then resumed to the end
without the hook; the catalog must equal a clean run's in every column and
header card but DATE and the checksums, with every fiber exactly once.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

QSOPIPE = str(Path(sys.executable).with_name("qsopipe"))
PLATES, FIBERS = (7000, 7001), 20

KILL_HOOK = '''"""Test hook (tests/test_crash_safety.py): SIGKILL the run's process group at a chosen atomic write."""
import contextlib
import fnmatch
import os
import signal

import qsopipe.pipeline.atomic

_PATTERN = os.environ["KILL_AT_ATOMIC_WRITE"]
_atomic_path = qsopipe.pipeline.atomic.atomic_path


@contextlib.contextmanager
def _killing_atomic_path(path):
    with _atomic_path(path) as tmp:
        yield tmp
        if fnmatch.fnmatch(os.path.basename(os.fspath(path)), _PATTERN):
            os.killpg(0, signal.SIGKILL)


qsopipe.pipeline.atomic.atomic_path = _killing_atomic_path
'''

#: moment -> (file name whose rename is never reached, where that file lives under OUTDIR), in run order.
MOMENTS = {
    "preprocess": ("plate-7001-57001.parquet", "shards/PLATE=7001"),
    "inference": ("qn-7001-57001.parquet", "results/quasarnet"),
    "catalog_write": ("catalog.fits", "."),
}
#: Header cards that differ between any two writes of the same catalog.
VOLATILE_CARDS = {"DATE", "CHECKSUM", "DATASUM"}


def run_qsopipe(args, env=None, timeout=600):
    """`qsopipe ARGS` in a new session; whatever is left of its process group is killed on the way out."""
    process = subprocess.Popen([QSOPIPE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env=env)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, output)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Simulated plates, tiny models and the `qsopipe run` arguments minus --out."""
    from qsopipe.models.mgii import build_model
    from qsopipe.models.quasarnet import build_quasarnet

    root = tmp_path_factory.mktemp("crash")
    build_quasarnet(filters=8, dense_units=16).save(root / "qn.keras")
    build_model().save(root / "mgii.keras")
    result = run_qsopipe(["simulate", "--out", str(root / "sim"), "--plates", str(len(PLATES)),
                          "--fibers", str(FIBERS), "--seed", "3"])
    assert result.returncode == 0, result.stdout
    args = [str(root / "sim" / "spectra"), "--workers", "1",
            "--qn-model", str(root / "qn.keras"), "--mgii-model", str(root / "mgii.keras")]
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    return {"root": root, "args": args, "hook": hook}


def clean_run(setup, name):
    """An uninterrupted run into ROOT/NAME; returns its catalog path."""
    out = setup["root"] / name
    result = run_qsopipe(["run", *setup["args"], "--out", str(out)])
    assert result.returncode == 0, result.stdout
    return out / "catalog.fits"


@pytest.fixture(scope="module")
def reference(setup):
    return clean_run(setup, "reference")


def read_catalog(path):
    """Every HDU of a catalog: [(header cards but the volatile ones, {column: array})]."""
    hdus = []
    with fits.open(path) as handle:
        for hdu in handle:
            cards = [(card.keyword, card.value) for card in hdu.header.cards if card.keyword not in VOLATILE_CARDS]
            data = {} if hdu.data is None else {name: np.asarray(hdu.data[name]) for name in hdu.data.names}
            hdus.append((cards, data))
    return hdus


def assert_same_catalog(path, reference_path):
    """Equal headers (but DATE and checksums) and equal columns, HDU by HDU; NaN equals NaN."""
    got, want = read_catalog(path), read_catalog(reference_path)
    assert len(got) == len(want)
    for (got_cards, got_data), (want_cards, want_data) in zip(got, want):
        assert got_cards == want_cards
        assert list(got_data) == list(want_data)
        for name, values in want_data.items():
            np.testing.assert_array_equal(got_data[name], values, err_msg=name)


def assert_every_fiber_once(path):
    catalog = fits.getdata(path, "CATALOG")
    keys = sorted(zip(catalog["PLATE"].tolist(), catalog["FIBERID"].tolist()))
    assert keys == [(plate, fiber) for plate in PLATES for fiber in range(1, FIBERS + 1)]


@pytest.mark.parametrize("keep_shards", [True, False], ids=["shards-kept", "shards-in-memory"])
def test_kill_9_at_each_moment_then_resume_gives_the_same_catalog(setup, reference, keep_shards):
    out = setup["root"] / f"killed-{keep_shards}"
    shard_option = ["--keep-shards"] if keep_shards else []
    for moment, (name, folder) in MOMENTS.items():
        if moment == "preprocess" and not keep_shards:
            continue
        env = {**os.environ, "PYTHONPATH": str(setup["hook"]), "KILL_AT_ATOMIC_WRITE": name}
        killed = run_qsopipe(["run", *setup["args"], *shard_option, "--out", str(out)], env=env)
        assert killed.returncode == -signal.SIGKILL, (moment, killed.stdout)
        assert not (out / folder / name).exists(), f"{moment}: the killed write must not look complete"
        assert list((out / folder).glob(f".{name}.*.tmp")), f"{moment}: the kill must land inside the write"
        assert not (out / "catalog.fits").exists(), moment

    resumed = run_qsopipe(["run", *setup["args"], *shard_option, "--out", str(out)])
    assert resumed.returncode == 0, resumed.stdout
    assert (out / "shards").exists() == keep_shards
    assert_every_fiber_once(out / "catalog.fits")
    assert_same_catalog(out / "catalog.fits", reference)


def test_two_runs_of_the_same_inputs_give_the_same_catalog(setup, reference):
    assert_every_fiber_once(reference)
    assert_same_catalog(clean_run(setup, "again"), reference)
