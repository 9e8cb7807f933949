"""One resume rule: a rerun into the same OUTDIR redoes what its settings or inputs change, and only that."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import fitsio
import numpy as np
import pytest

from qsopipe.models.store import default_weights, file_sha256

LINES = ("LYA", "CIV", "CIII", "MGII", "HBETA", "HALPHA")


def qsopipe(*args):
    result = subprocess.run([sys.executable, "-m", "qsopipe.pipeline", *map(str, args)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    sim = tmp_path_factory.mktemp("sim")
    qsopipe("simulate", "--out", sim, "--plates", 2, "--fibers", 80, "--seed", 31, "--first-plate", 9400)
    return sim / "spectra"


def statuses(outdir):
    report = json.loads((outdir / "run_report.json").read_text())
    return {plate["name"]: plate["status"] for plate in report["plates"]}


def test_reruns_redo_what_changed_and_resume_the_rest(spectra, tmp_path):
    """Steps, each a `qsopipe run` into one OUTDIR (plain run first, done-markers then removed)."""
    inputs = tmp_path / "spectra"
    shutil.copytree(spectra, inputs)
    out = tmp_path / "run"
    qsopipe("run", inputs, "--out", out, "--workers", 1)
    for marker in (out / "done").glob("*.json"):
        marker.unlink()

    log = qsopipe("run", inputs, "--out", out, "--workers", 1, "--c-th", 0.9)
    assert log.count("quasarnet redone: c_th 0.4 -> 0.9") == 2, log
    assert set(statuses(out).values()) == {"done"}
    assert fitsio.read_header(out / "catalog.fits", ext="CATALOG")["C_TH"] == 0.9
    catalog = fitsio.read(out / "catalog.fits", ext="CATALOG")
    confidences = np.stack([catalog[f"C_{line}"] for line in LINES], axis=1)
    np.testing.assert_array_equal(catalog["IS_QSO_QN"], (confidences > 0.9).sum(axis=1) >= 1)

    log = qsopipe("run", inputs, "--out", out, "--workers", 1, "--c-th", 0.9)
    assert log.count("already complete") == 2, log
    assert set(statuses(out).values()) == {"resumed"}

    other = tmp_path / "other.keras"
    shutil.copy(default_weights("quasarnet"), other)
    with zipfile.ZipFile(other, "a") as archive:  # the same network in other bytes: another model file
        archive.comment = b"a copy"
    log = qsopipe("run", inputs, "--out", out, "--workers", 1, "--c-th", 0.9, "--qn-model", other)
    assert log.count("quasarnet redone: qn_model_sha256") == 2, log
    assert log.count("zfit redone: quasarnet changed") == 2, log
    assert log.count("mgii redone: quasarnet, zfit changed") == 2, log
    assert fitsio.read_header(out / "catalog.fits", ext=0)["QNSHA256"] == file_sha256(str(other))
    log = qsopipe("run", inputs, "--out", out, "--workers", 1, "--c-th", 0.9, "--qn-model", other)
    assert log.count("already complete") == 2, log

    edited = sorted(inputs.rglob("spPlate-*.fits"))[0]
    times = os.stat(edited)
    with fitsio.FITS(str(edited), "rw") as fits:
        fits[0].write(fits[0].read()[::-1].copy())  # other spectra on the same fibers
    os.utime(edited, ns=(times.st_atime_ns, times.st_mtime_ns))  # as cp -p or rsync -t leave it
    log = qsopipe("run", inputs, "--out", out, "--workers", 1, "--c-th", 0.9, "--qn-model", other)
    name = edited.name[len("spPlate-"):-len(".fits")]
    assert statuses(out) == {name: "done", **{n: "resumed" for n in statuses(out) if n != name}}
    assert f"plate {name}: quasarnet redone: shard changed" in log, log
