"""Dask clusters for `qsopipe run --cluster local|slurm`.

`make_cluster(kind, workers, **opts)` returns an object to hand to
`distributed.Client`:

- ``"local"``: a LocalCluster of `workers` single-threaded processes (one per
  core: the networks and the numpy code are run one thread per worker).
- ``"slurm"`` from a login node or a batch script: a dask-jobqueue
  SLURMCluster that submits `workers` single-core worker jobs. The caller
  should `client.wait_for_workers(...)` before timing anything.
- ``"slurm"`` inside an `srun` step with several tasks (``srun -n N qsopipe
  run ... --cluster slurm``): a dask-jobqueue SLURMRunner, where task 0 runs
  the scheduler, task 1 this client code and the others workers. Only task 1
  returns from `make_cluster`; the others exit when the client closes.

dask, distributed and dask_jobqueue are imported inside the functions so
that importing this module (and `qsopipe --help`) stays cheap.
"""

import os
import sys

#: Exported in every worker job so BLAS and TensorFlow use the one core the
#: worker was given instead of oversubscribing the node.
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}


def make_cluster(kind, workers, **opts):
    """A Client-able Dask cluster of `workers` single-core workers.

    Options for ``"slurm"`` (all optional): host (the address workers reach
    the scheduler at; default this machine's outward IP), queue, account, memory (per worker, default "2GB"),
    walltime (default "01:00:00"), log_directory, job_extra_directives,
    scheduler_file (SLURMRunner only). Unknown options go to the cluster class.
    """
    if kind == "local":
        return _local_cluster(workers, **opts)
    if kind == "slurm":
        if in_srun_step():
            return _slurm_runner(**opts)
        return _slurm_cluster(workers, **opts)
    raise ValueError(f"unknown cluster kind {kind!r}: expected 'local' or 'slurm'")


def in_srun_step(environ=os.environ):
    """True inside an srun step of several tasks (not in the batch script).

    The batch step also sets SLURM_JOB_ID, SLURM_PROCID and SLURM_NTASKS, but
    only srun sets SLURM_STEP_ID; a batch script that ran SLURMRunner would
    make itself the scheduler and wait forever for tasks that never start.
    """
    return (
        "SLURM_JOB_ID" in environ
        and "SLURM_STEP_ID" in environ
        and int(environ.get("SLURM_NTASKS", "1")) > 1
    )


def scheduler_host(host=None):
    if host:
        return host
    from distributed.utils import get_ip

    # The interface used to reach other machines: worker jobs on other nodes
    # connect to it, and so do those on this node.
    return get_ip()


def _local_cluster(workers, **opts):
    from distributed import LocalCluster

    os.environ.update(THREAD_ENV)
    opts.setdefault("processes", True)
    opts.setdefault("threads_per_worker", 1)
    return LocalCluster(n_workers=workers, **opts)


def _slurm_cluster(workers, host=None, memory="2GB", walltime="01:00:00", **opts):
    from dask_jobqueue import SLURMCluster

    prologue = [f"export {name}={value}" for name, value in THREAD_ENV.items()]
    cluster = SLURMCluster(
        cores=1,
        processes=1,
        memory=memory,
        walltime=walltime,
        job_name="qsopipe-worker",
        # Worker jobs must run the same interpreter (and so the same qsopipe)
        # as the client, not whatever `python` their login shell finds.
        python=sys.executable,
        # Port 0 for the dashboard: several clusters on one login node must
        # not fight over :8787.
        scheduler_options={"host": scheduler_host(host), "dashboard_address": ":0"},
        job_script_prologue=prologue + list(opts.pop("job_script_prologue", [])),
        **opts,
    )
    cluster.scale(jobs=workers)
    return cluster


def _slurm_runner(host=None, scheduler_file=None, **opts):
    from dask_jobqueue.slurm import SLURMRunner

    os.environ.update(THREAD_ENV)
    job_id = os.environ["SLURM_JOB_ID"]
    # The scheduler writes its address here; every task must see the same
    # file, so it goes in the submit directory (a shared filesystem).
    scheduler_file = scheduler_file or os.path.join(
        os.environ.get("SLURM_SUBMIT_DIR", os.getcwd()), f".qsopipe-scheduler-{job_id}.json"
    )
    scheduler_options = {"scheduler_file": scheduler_file}
    if host:
        scheduler_options["host"] = host
    is_client = os.environ.get("SLURM_PROCID") == "1"
    try:
        return SLURMRunner(scheduler_file=scheduler_file, scheduler_options=scheduler_options, **opts)
    except KeyboardInterrupt:
        # The scheduler and worker tasks end by sending themselves SIGINT once
        # the client has closed; that is their normal, successful end.
        if is_client:
            raise
        raise SystemExit(0)
