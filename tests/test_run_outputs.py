"""Issue 23: what a `qsopipe run` leaves for the people who share its OUTDIR.

Outputs honour the umask; the log of a normal run carries no Dask noise and
one line per plate whose spec files are superseded by its spPlate (no
failure); run_report.json says which code, command, models and time made
it; a full disk stops the run early, names the file and leaves nothing
half-written.
"""

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import fitsio
import pytest

from atomic_hook import NO_SPACE, write_hook

QSOPIPE = str(Path(sys.executable).with_name("qsopipe"))


def qsopipe(*args, env=None):
    """`qsopipe ARGS` under umask 022; returns the CompletedProcess."""
    return subprocess.run([QSOPIPE, *map(str, args)], capture_output=True, text=True, timeout=600, env=env,
                          preexec_fn=lambda: os.umask(0o022))


@pytest.fixture(scope="module")
def run_args(tmp_path_factory, tiny_models):
    """`qsopipe run` arguments minus --out: a BOSS-like tree of two plates of 20 fibers (spPlate and
    spectra/lite), tiny models, one worker."""
    sim = tmp_path_factory.mktemp("sim")
    result = qsopipe("simulate", "--out", sim, "--plates", 2, "--fibers", 20, "--seed", 5, "--spec-lite")
    assert result.returncode == 0, result.stderr
    return [sim / "spectra", "--workers", 1, "--qn-model", tiny_models["qn"], "--bal-model", tiny_models["bal"],
            "--mgii-model", tiny_models["mgii"]]


@pytest.fixture(scope="module")
def finished_run(run_args, tmp_path_factory):
    """(OUTDIR, CompletedProcess) of a run with --keep-shards, Dask's usual dashboard port taken."""
    out = tmp_path_factory.mktemp("run") / "out"
    with socket.socket() as busy:
        try:
            busy.bind(("", 8787))
        except OSError:
            pass  # taken already
        result = qsopipe("run", *run_args, "--keep-shards", "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def report(outdir):
    return json.loads((outdir / "run_report.json").read_text())


def test_outputs_honour_the_umask(finished_run):
    out, _ = finished_run
    outputs = [out / "catalog.fits", out / "run_report.json", *(out / "results").rglob("*.parquet"),
               *(out / "shards").rglob("*.parquet"), *(out / "done").glob("*.json")]
    assert len(outputs) == 2 + 5 * 2 + 2 + 2  # catalog and report, 5 results and a shard per plate, markers
    assert {str(path): oct(stat.S_IMODE(path.stat().st_mode)) for path in outputs} == \
        {str(path): "0o644" for path in outputs}


def test_superseded_spec_files_are_one_line_per_plate_and_no_failure(finished_run):
    out, result = finished_run
    assert result.stderr.count("file(s) not read") == 2, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    rejected = report(out)["rejected"]
    assert len(rejected) == 40 and {entry["status"] for entry in rejected} == {"superseded"}
    inputs = fitsio.read(out / "catalog.fits", ext="INPUTS")
    assert sorted(set(inputs["STATUS"])) == ["done", "superseded"]


def test_a_normal_run_logs_no_dask_noise(finished_run):
    _, result = finished_run
    for noise in ("is already in use", "still alive", "UserWarning", "Traceback"):
        assert noise not in result.stderr, result.stderr


def test_report_names_version_command_models_and_wall_time(finished_run, run_args, tiny_models):
    from qsopipe.models.store import file_sha256
    from qsopipe.pipeline import __version__

    out, _ = finished_run
    made = report(out)
    assert made["qsopipe_version"] == __version__
    assert made["command_line"].split()[1:3] == ["run", str(run_args[0])] and "--keep-shards" in made["command_line"]
    assert made["models"] == {stage: {"path": str(tiny_models[key]), "sha256": file_sha256(str(tiny_models[key]))}
                              for stage, key in (("quasarnet", "qn"), ("bal", "bal"), ("mgii", "mgii"))}
    assert 0 < made["wall_seconds"] < 600


def test_rerun_reports_resumed_plates(finished_run, run_args):
    out, _ = finished_run
    result = qsopipe("run", *run_args, "--keep-shards", "--out", out)
    assert result.returncode == 0, result.stderr
    assert [plate["status"] for plate in report(out)["plates"]] == ["resumed", "resumed"]


def test_full_disk_names_the_file_stops_early_and_leaves_nothing_half_written(run_args, tmp_path):
    hook = write_hook(tmp_path / "hook", NO_SPACE)
    env = {**os.environ, "PYTHONPATH": str(hook), "AT_ATOMIC_WRITE": "qn-7000-57000.parquet"}
    out = tmp_path / "out"
    result = qsopipe("run", *run_args, "--out", out, env=env)
    assert result.returncode == 3, result.stderr
    written = out / "results" / "quasarnet" / "qn-7000-57000.parquet"
    assert f"Error: {written}: no space left on device" in result.stderr, result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert {plate["name"]: plate["status"] for plate in report(out)["plates"]} == \
        {"7000-57000": "failed", "7001-57001": "not run"}
    assert not list(out.rglob("*.tmp")) and not written.exists() and not (out / "catalog.fits").exists()
    assert not (out / "results" / "quasarnet" / "qn-7001-57001.parquet").exists()
