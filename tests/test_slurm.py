"""The sbatch scripts and Dask-on-SLURM against a real (one-node) SLURM.

CI brings SLURM up with .ci/slurm-up.sh; elsewhere this module is skipped
unless `sbatch` is on PATH and `sinfo` answers. Jobs run with
QSOPIPE_PYTHON set to this interpreter, so they use the qsopipe under test
(the scripts unset it before running qsopipe).
Every test shares one small simulation (2 plates x 40 fibers).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
JOB_TIMEOUT = 300


def _slurm_answers():
    if shutil.which("sbatch") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


if not _slurm_answers():
    pytest.skip("no SLURM here (sbatch missing or sinfo fails); see .ci/slurm-up.sh",
                allow_module_level=True)


def job_env():
    return dict(os.environ, QSOPIPE_PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2")


def qsopipe_env():
    # Not QSOPIPE_PYTHON: qsopipe reads every QSOPIPE_* variable as configuration.
    return {k: v for k, v in job_env().items() if k != "QSOPIPE_PYTHON"}


def qsopipe(*args, cwd=None):
    """Run `qsopipe ARGS` in this interpreter; fail with its output on error."""
    result = subprocess.run([sys.executable, "-m", "qsopipe.pipeline", *map(str, args)], cwd=cwd,
                            env=qsopipe_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert result.returncode == 0, f"qsopipe {args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def sbatch_wait(script, *args, logdir, env=None, cwd=REPO):
    """Submit REPO/slurm/SCRIPT with ARGS, wait for it; return (exit code, its .out text)."""
    log = Path(logdir) / f"{script}-%j.out"
    result = subprocess.run(
        ["sbatch", "--wait", "--parsable", f"--output={log}", str(REPO / "slurm" / script),
         *map(str, args)],
        cwd=cwd, env=env or job_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT)
    job_id = result.stdout.strip().split(";")[0]
    out = Path(str(log).replace("%j", job_id))
    text = out.read_text() if job_id and out.exists() else ""
    return result.returncode, f"{text}\n[sbatch stderr]\n{result.stderr}"


def read_catalog(path):
    from astropy.io import fits

    with fits.open(path) as hdul:
        return np.asarray(hdul["CATALOG"].data).copy()


def fiber_ids(table):
    return sorted(zip(table["PLATE"].tolist(), table["MJD"].tolist(), table["FIBERID"].tolist()))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    # One node: a pytest temporary directory is visible to the jobs.
    return tmp_path_factory.mktemp("slurm")


@pytest.fixture(scope="module")
def sim(work):
    qsopipe("simulate", "--out", work / "sim", "--plates", 2, "--fibers", 40, "--seed", 1)
    return work / "sim"


@pytest.fixture(scope="module")
def expected_fibers(sim):
    from astropy.io import fits

    with fits.open(sim / "truth.fits") as hdul:
        truth = np.asarray(hdul[1].data)
    assert len(truth) == 2 * 40
    return fiber_ids(truth)


@pytest.fixture(scope="module")
def batch_run(sim, work):
    """`sbatch --wait slurm/run.sbatch SPECTRA --out OUT`: the default, local-Dask path."""
    out = work / "run-batch"
    code, log = sbatch_wait("run.sbatch", sim / "spectra", "--out", out, logdir=work)
    return code, log, out


def test_slurm_cluster_workers_are_single_core_jobs(work):
    from distributed import Client

    from qsopipe.pipeline.slurm_cluster import make_cluster

    with make_cluster("slurm", 2, memory="1GB", log_directory=str(work)) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        env = client.run(lambda: (os.environ.get("SLURM_JOB_ID"), os.environ.get("OMP_NUM_THREADS")))
    jobs = {job for job, _ in env.values()}
    assert len(jobs) == 2 and None not in jobs, env
    assert {threads for _, threads in env.values()} == {"1"}, env
    assert_no_worker_jobs_left()


RUNNER_SCRIPT = """
import os
from distributed import Client
from qsopipe.pipeline.slurm_cluster import make_cluster

with make_cluster("slurm", 0) as runner, Client(runner) as client:
    client.wait_for_workers(1, timeout=60)
    print("worker task", client.submit(lambda: os.environ["SLURM_PROCID"]).result(), flush=True)
"""


def test_slurm_runner_inside_one_allocation(work):
    # srun starts 3 tasks: scheduler, client, one worker. -O (overcommit)
    # lets 3 tasks share a 2-core CI node.
    script = work / "runner_check.py"
    script.write_text(RUNNER_SCRIPT)
    log = work / "runner.out"
    result = subprocess.run(
        ["sbatch", "--wait", "-n", "3", "-O", "--mem=3G", f"--output={log}",
         f"--wrap=srun {sys.executable} {script}"],
        cwd=work, env=qsopipe_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT)
    text = log.read_text() if log.exists() else result.stderr
    assert result.returncode == 0, text
    assert "worker task 2" in text, text


def test_train_sbatch_reports_its_device(sim, work):
    model = work / "qn.keras"
    venv_qsopipe = REPO / ".venv" / "bin" / "qsopipe"
    # Under `make test` this interpreter is the repository's .venv: then
    # submit from elsewhere without QSOPIPE_PYTHON, so the script must find
    # that .venv from its own path.
    find_venv = Path(sys.executable).parent == venv_qsopipe.parent
    code, log = sbatch_wait("train.sbatch", "quasarnet", "--sim", sim, "--epochs", 1, "--out", model,
                            logdir=work, env=qsopipe_env() if find_venv else None, cwd=work)
    assert code == 0, log
    assert "training on GPU" in log or "no GPU found, training on CPU" in log, log
    if find_venv:
        assert f"using {venv_qsopipe}" in log, log
    assert model.is_file(), log


def test_run_sbatch_writes_every_fiber(batch_run, expected_fibers):
    code, log, out = batch_run
    assert code == 0, log
    assert "--cluster local --workers" in log, log
    assert fiber_ids(read_catalog(out / "catalog.fits")) == expected_fibers
    json.loads((out / "run_report.json").read_text())


def test_slurm_cluster_matches_local_run(batch_run, sim, work):
    code, log, local_out = batch_run
    assert code == 0, log
    out = work / "run-slurmcluster"
    # The client runs here; dask-jobqueue submits the two worker jobs, whose
    # .out files land in cwd.
    qsopipe("run", sim / "spectra", "--out", out, "--cluster", "slurm", "--workers", 2, cwd=work)

    local, distributed = read_catalog(local_out / "catalog.fits"), read_catalog(out / "catalog.fits")
    assert distributed.dtype.names == local.dtype.names
    order_local, order_dist = np.argsort(local["TARGETID"]), np.argsort(distributed["TARGETID"])
    for name in local.dtype.names:
        a, b = local[name][order_local], distributed[name][order_dist]
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(b, a, err_msg=name)
    assert_no_worker_jobs_left()


def assert_no_worker_jobs_left():
    """Closing the SLURMCluster must cancel its worker jobs."""
    deadline = time.monotonic() + 30
    while True:
        queue = subprocess.run(["squeue", "-h", "--name=qsopipe-worker", "-o", "%i %t"],
                               capture_output=True, text=True).stdout.strip()
        if not queue or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not queue, f"worker jobs still queued: {queue}"
