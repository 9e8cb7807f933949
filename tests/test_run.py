"""`qsopipe run` on a LocalCluster gives the catalog the stage-by-stage commands give."""

import json
import os
import subprocess
import sys

import fitsio
import numpy as np
import pytest

from qsopipe.models.store import default_weights
from qsopipe.pipeline.slurm_cluster import THREAD_ENV


def qsopipe(*args):
    """Run a qsopipe command in a subprocess, BLAS single-threaded as on the run's workers (so that the
    redshift fit's sums are done in the same order); returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "qsopipe.pipeline", *map(str, args)], env={**os.environ, **THREAD_ENV},
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    result = qsopipe("simulate", "--out", out, "--plates", 2, "--fibers", 60, "--seed", 7, "--first-plate", 9300)
    assert result.returncode == 0, result.stderr
    return out


def read_hdu(path, name):
    data = fitsio.read(path, ext=name)
    return {column: data[column] for column in data.dtype.names}


def assert_same_table(left, right):
    assert left.keys() == right.keys()
    for column in left:
        np.testing.assert_array_equal(left[column], right[column], err_msg=column)


def test_run_equals_stage_by_stage(sim, tmp_path):
    spectra = sim / "spectra"
    run = qsopipe("run", spectra, "--out", tmp_path / "run", "--workers", 2)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("catalog.fits")
    assert "[2/2] plate" in run.stderr and "spectra/s, ETA" in run.stderr

    steps = [("preprocess", spectra, "--out", tmp_path / "shards"),
             ("quasarnet", tmp_path / "shards", "--out", tmp_path / "results"),
             ("zfit", tmp_path / "shards", "--qn", tmp_path / "results", "--out", tmp_path / "results"),
             ("bal", tmp_path / "shards", "--qn", tmp_path / "results", "--out", tmp_path / "results"),
             ("mgii", tmp_path / "shards", "--qn", tmp_path / "results", "--out", tmp_path / "results"),
             ("catalog", tmp_path / "results", "--out", tmp_path / "catalog.fits")]
    for step in steps:
        result = qsopipe(*step)
        assert result.returncode == 0, (step[0], result.stderr)

    same = qsopipe("quasarnet", tmp_path / "shards", "--out", tmp_path / "results")
    assert same.returncode == 0 and same.stderr.count("up to date, skipped") == 2, same.stderr
    fits_again = qsopipe("zfit", tmp_path / "shards", "--qn", tmp_path / "results", "--out", tmp_path / "results")
    assert fits_again.returncode == 0 and fits_again.stderr.count("up to date, skipped") == 2, fits_again.stderr
    assert (tmp_path / "run" / "results" / "zfit" / "zfit-9300-57000.parquet").is_file()
    other = qsopipe("quasarnet", tmp_path / "shards", "--out", tmp_path / "other", "--c-th", 0.5)
    changed = qsopipe("quasarnet", tmp_path / "shards", "--out", tmp_path / "other", "--c-th", 0.4)
    assert other.returncode == 0 and changed.returncode == 0, (other.stderr, changed.stderr)
    assert "skipped" not in changed.stderr and changed.stderr.count("quasars in") == 2, changed.stderr

    by_run = tmp_path / "run" / "catalog.fits"
    by_stage = tmp_path / "catalog.fits"
    catalog = read_hdu(by_run, "CATALOG")
    assert len(catalog["FIBERID"]) == 120
    assert_same_table(catalog, read_hdu(by_stage, "CATALOG"))
    assert_same_table(read_hdu(by_run, "MGII_ABSORBERS"), read_hdu(by_stage, "MGII_ABSORBERS"))
    header = fitsio.read_header(by_run, ext="CATALOG")
    assert header["QNSHA256"] and header["C_TH"] == 0.4 and header["BAL_TH"] == 0.48
    assert header["BASHA256"] and header["BALP_TH"] == 0.01

    report = json.loads((tmp_path / "run" / "run_report.json").read_text())
    assert [p["status"] for p in report["plates"]] == ["done", "done"]

    rerun = qsopipe("run", spectra, "--out", tmp_path / "run", "--workers", 1)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("already complete") == 2
    assert_same_table(catalog, read_hdu(by_run, "CATALOG"))


def test_shipped_weights_are_the_defaults():
    assert default_weights("quasarnet").is_file() and default_weights("mgii").is_file()


def test_every_default_is_a_checked_setting():
    from qsopipe.pipeline.config import SETTINGS, check_value, defaults

    config = defaults()
    assert set(config) == set(SETTINGS)
    for key, value in config.items():
        assert check_value(key, value, "config.yaml") == value
