"""The catalogs of `make demo`'s simulation and of the real spectra match a recorded digest.

The record (tests/data/catalog_digests.json) was made by the code as it
stood before the stage interface was introduced, and re-recorded when the
redshift fit came (new Z, ZERR, ZWARNING, SOURCE_Z, DELTACHI2 and ZF* cards;
MGII_PROB and the absorbers' Z_QSO changed, the MgII search being placed with
Z; every other column as it was) and when Z_PIPE, ZERR_PIPE, ZWARNING_PIPE
and CLASS_PIPE came (added, nothing else changed) and when NLINES_QN and the
QN_FLAG bit SINGLE_LINE came (NLINES_QN added, QN_FLAG changed on the
single-line quasars, nothing else, checked against a record of the code
before made on the same machine; the demo record then also took in the
simulator's eigenspectrum quasars, recorded by neither), and on 2026-12-04
when the catalog changed on purpose in several ways at once: the simulator's
archetype stars and WAVEDISP (demo), the retrained QuasarNET, the MgII
finder's new rules and TensorFlow's oneDNN operations turned off (both
records), and when the BAL CNN came (BAL_PROB, BAL_FLAG and the BALP_TH,
BAMODEL and BASHA256 cards added, nothing else changed); a refactoring must leave
every recorded header card and column as it was (see catalog_digest.py for
what is left out). A change that means to alter the catalog re-records it:
RECORD_CATALOG_DIGESTS=1 pytest tests/test_catalog_identity.py

The networks' float results depend on the CPU's vector instructions and on
the TensorFlow and numpy builds, so the record holds the environment it was
made in, and on another one the tests skip saying so (re-record there first,
from the commit before a refactoring, to check it on that machine).
"""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from catalog_digest import catalog_record, differences

RECORD = Path(__file__).parent / "data" / "catalog_digests.json"
REAL_SPECTRA = ("dr16_spec_lite_picca", "spec_full_pyqsofit")
#: CPU flags that choose TensorFlow's and numpy's kernels.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def environment():
    """What the catalog's float results depend on besides the code: CPU kind and vector flags, library builds."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {"machine": platform.machine(), "vector_flags": [flag for flag in VECTOR_FLAGS if flag in flags],
            **{name: _version(name) for name in ("numpy", "tensorflow-cpu", "keras")}}


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def qsopipe(*args):
    subprocess.run([sys.executable, "-m", "qsopipe.pipeline", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(autouse=True)
def same_environment():
    """Skip unless this is the environment the record was made in (or the record is being made)."""
    if os.environ.get("RECORD_CATALOG_DIGESTS"):
        return
    recorded = json.loads(RECORD.read_text())["environment"]
    if recorded != environment():
        pytest.skip(f"digests recorded with {recorded}, this is {environment()}")


def check(name, catalog, root):
    actual = catalog_record(catalog, f"{root}/")
    if os.environ.get("RECORD_CATALOG_DIGESTS"):
        recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        RECORD.write_text(json.dumps({**recorded, name: actual, "environment": environment()}, indent=1,
                                     sort_keys=True) + "\n")
    expected = json.loads(RECORD.read_text())[name]
    assert differences(expected, actual) == []


def test_demo_simulation_catalog_unchanged(tmp_path):
    sim = tmp_path / "sim"
    qsopipe("simulate", "--out", sim, "--plates", 3, "--fibers", 500, "--seed", 2026, "--first-plate", 9000)
    qsopipe("run", sim / "spectra", "--out", tmp_path / "run", "--workers", 2)
    check("demo_simulation", tmp_path / "run" / "catalog.fits", sim / "spectra")


@pytest.mark.shared
def test_real_spectra_catalog_unchanged(tmp_path, sdss_dir):
    qsopipe("run", *(sdss_dir / name for name in REAL_SPECTRA), "--out", tmp_path / "run", "--workers", 2)
    check("real_spectra", tmp_path / "run" / "catalog.fits", sdss_dir)
