"""Shared fixtures: the real SDSS data beside the checkout (skipped cleanly when absent), a
`qsopipe` run in a fresh interpreter that must not import TensorFlow, and tiny untrained models."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SDSS_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; the test is skipped when it is not there."""
    if not (SHARED_DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sdss_dir(shared_data):
    return shared_data / "sdss"


#: Runs `qsopipe ARGS...` (argv[1:]) through the command group, then fails if TensorFlow or Keras got imported.
_RUN_WITHOUT_TENSORFLOW = """
import sys
from qsopipe.pipeline.cli import cli
cli.main(sys.argv[1:], prog_name="qsopipe", standalone_mode=False)
imported = [name for name in ("tensorflow", "keras") if name in sys.modules]
assert not imported, f"qsopipe {sys.argv[1]} imported {imported}"
"""


@pytest.fixture()
def run_without_tensorflow():
    """run(*args): `qsopipe args...` in a fresh interpreter; fails when it fails or imports TensorFlow or Keras."""
    def run(*args):
        subprocess.run([sys.executable, "-c", _RUN_WITHOUT_TENSORFLOW, *map(str, args)], check=True)
    return run


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{"qn": path, "bal": path, "mgii": path}: untrained QuasarNET, BAL and MgII CNN .keras files, small enough
    to run in seconds."""
    from qsopipe.models import bal, mgii
    from qsopipe.models.quasarnet import build_quasarnet

    root = tmp_path_factory.mktemp("models")
    build_quasarnet(filters=8, dense_units=16).save(root / "qn.keras")
    bal.build_model().save(root / "bal.keras")
    mgii.build_model().save(root / "mgii.keras")
    return {"qn": root / "qn.keras", "bal": root / "bal.keras", "mgii": root / "mgii.keras"}
