"""`qsopipe run`: every stage plate by plate on Dask, then the catalog.

A plate is the unit of work and of failure: each is one Dask task
(`plate_task.process_plate`), a bad plate is reported and the others go on;
after a full disk no further plate starts. Outputs live under OUTDIR (see
`layout.RunLayout`); a rerun into the same OUTDIR redoes what changed and
resumes the rest. OUTDIR is checked writable before any work.

SIGTERM (what SLURM sends at a job's time limit) stops the run: it is
logged, the plates not finished are cancelled with the Dask client, and
run_report.json lists the finished plates and the others as 'interrupted';
no catalog is written (run_report.json's catalog is null), since it would
lack plates: a rerun into the same OUTDIR resumes the finished ones and
writes it. Exit statuses: `exit_status` (143, 128 + SIGTERM, when SIGTERM
stopped the run).
"""

import collections
import contextlib
import functools
import json
import logging
import os
import re
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter

import click

from qsopipe.pipeline import __version__, exit_status
from qsopipe.pipeline.atomic import atomic_path
from qsopipe.pipeline.config import ConfigError, config_options, load_config
from qsopipe.pipeline.discovery import discover, failures, log_rejects, require_plates
from qsopipe.pipeline.layout import RunLayout
from qsopipe.pipeline.plate_task import NO_COUNTS, process_plate
from qsopipe.pipeline.progress import PlateProgress
from qsopipe.pipeline.stage import log_changes

log = logging.getLogger("qsopipe.pipeline.run")

#: Status and reason, in run_report.json, of a plate that had not finished when SIGTERM stopped the run.
INTERRUPTED = ("interrupted", "the run was stopped by SIGTERM before this plate finished")


class Terminated(BaseException):
    """SIGTERM arrived (a batch system's time limit, or `kill`); a BaseException, so no `except Exception` eats it."""


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, the first SIGTERM is logged and raises Terminated in the main thread; later ones are ignored."""
    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.error("received SIGTERM: stopping, plates not finished are cancelled")
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def writable_outdir(outdir):
    """Make OUTDIR if needed and write a file in it; a one-line ClickException (exit 1) when it cannot."""
    try:
        os.makedirs(outdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=outdir):
            pass
    except OSError as err:
        raise click.ClickException(f"{outdir}: output directory cannot be written ({err.strerror})") from None


#: A Dask scheduler address: [protocol://]host:port.
SCHEDULER_ADDRESS = re.compile(r"^([a-z]+://)?[\w.\-\[\]:]+:\d+$")


def check_cluster(ctx, param, value):
    """--cluster: 'local', 'slurm' or a scheduler address; ConfigError (one line, exit 2) otherwise."""
    if value in ("local", "slurm") or SCHEDULER_ADDRESS.match(value):
        return value
    raise ConfigError(f"--cluster {value!r}: expected 'local', 'slurm' or a scheduler address such as "
                      "tcp://host:8786")


@contextlib.contextmanager
def dask_client(cluster, workers, config):
    """A dask.distributed Client on 'local', 'slurm' or a scheduler ADDRESS; closes what it started."""
    from distributed import Client

    from qsopipe.pipeline.shutdown_noise import QuietShutdown, drop_shutdown_races

    # Worker processes inherit the environment; configure_threads reads this before TF starts.
    os.environ["QSOPIPE_TF_THREADS"] = str(config["tf_threads"])
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().level))
    drop_shutdown_races()
    if cluster in ("local", "slurm"):
        from qsopipe.pipeline.slurm_cluster import make_cluster

        nworkers = workers or (max(1, len(os.sched_getaffinity(0))) if cluster == "local" else 2)
        log.info("starting a %s Dask cluster: %d single-threaded worker(s)", cluster, nworkers)
        # The scheduler's HTTP server on a free port: 8787 may be taken by another user's cluster on the node.
        options = ({"memory_limit": config["memory_limit"], "dashboard_address": None,
                    "scheduler_kwargs": {"dashboard_address": ":0"}} if cluster == "local"
                   else {"memory": config["memory_limit"]})
        with make_cluster(cluster, nworkers, **options) as dask_cluster, Client(dask_cluster) as client:
            client.register_plugin(QuietShutdown())
            if cluster == "slurm":
                client.wait_for_workers(1)
            yield client
    else:
        log.info("joining the Dask scheduler at %s", cluster)
        with Client(cluster) as client:
            client.register_plugin(QuietShutdown())
            yield client


def run_plates(client, plates, outdir, config, summaries):
    """Run the plates, as many at a time as the cluster has threads; log each as it finishes.

    Each plate's summary goes into `summaries` ({name: summary}) as it
    finishes. Once a plate fails for a full disk no other plate is started:
    those left are 'not run'. Logs the closing line once all have finished.
    """
    from distributed import as_completed

    progress = PlateProgress(len(plates))
    waiting = collections.deque(plates)
    running = as_completed()
    started = {}

    def start_more():
        while waiting and running.count() < max(1, sum(client.nthreads().values())):
            plate = waiting.popleft()
            future = client.submit(process_plate, plate, str(outdir), config, key=f"plate-{plate.name}", pure=False)
            started[future] = plate
            running.add(future)

    start_more()
    for future in running:
        summary = _plate_result(future, started.pop(future))
        summaries[summary["name"]] = summary
        log_changes(summary["name"], summary.get("stages", {}))
        for message in summary.get("skipped", {}).values():  # each starts with the file's path
            log.warning("not processed: %s", message)
        progress.update(summary)
        if summary.get("disk_full"):
            summaries.update((plate.name, _not_run(plate, summary)) for plate in waiting)
            waiting.clear()
        start_more()
    log.info(progress.summary_line(Counter(s["status"] for s in summaries.values())))


def in_plate_order(plates, summaries):
    """The summaries ({name: summary}) in the order of `plates`; a plate without one is 'interrupted'."""
    return [summaries.get(plate.name) or _plate_summary(plate, *INTERRUPTED) for plate in plates]


def _plate_summary(plate, status, reason):
    """The summary of a plate that no worker reported on."""
    return {"plate": plate.plate, "mjd": plate.mjd, "name": plate.name, "files": plate.files,
            "status": status, "reason": reason, **NO_COUNTS, "seconds": 0.0}


def _plate_result(future, plate):
    """The plate's summary from its finished future; a lost worker (memory, kill) fails the plate only."""
    try:
        return future.result()
    except Exception as err:
        return _plate_summary(plate, "failed", f"worker lost: {type(err).__name__}: {err}")


def _not_run(plate, disk_full):
    """The summary of a plate left out after `disk_full`, the summary of the plate that found the disk full."""
    return _plate_summary(plate, "not run", f"not started: the run stopped after plate {disk_full['name']} "
                                            f"found the disk full ({disk_full['reason']})")


def model_records(config):
    """{stage: {"path", "sha256"}} of the networks the run uses."""
    from qsopipe.models.store import file_sha256
    from qsopipe.stages import bal, mgii, quasarnet

    paths = {"quasarnet": quasarnet.model_path(config), "bal": bal.model_path(config), "mgii": mgii.model_path(config)}
    return {stage: {"path": str(path), "sha256": file_sha256(str(path))} for stage, path in paths.items()}


def write_report(path, summaries, rejects, config, catalog, wall_seconds):
    """run_report.json: what made it (version, command line, models), every input with its status, the catalog."""
    report = {
        "qsopipe_version": __version__,
        "command_line": shlex.join(sys.argv),
        "models": model_records(config),
        "wall_seconds": round(wall_seconds, 3),
        "catalog": str(catalog) if catalog else None,
        "config": config,
        "plates": summaries,
        "rejected": [{"path": r.path, "reason": r.reason, "status": r.status} for r in rejects],
        "counts": dict(Counter(s["status"] for s in summaries)),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    return report


@contextlib.contextmanager
def reported_on_sigterm(outdir, plates, finished, rejects, config, start):
    """On Terminated within: run_report.json of the `finished` summaries (the rest interrupted), no catalog, a
    log line, and exit `exit_status.TERMINATED`."""
    try:
        yield
    except Terminated:
        path = RunLayout(outdir).report
        write_report(path, in_plate_order(plates, finished), rejects, config, None, time.perf_counter() - start)
        log.error("stopped by SIGTERM: %d of %d plate(s) finished, the others interrupted; no catalog written; "
                  "%s written (a rerun into %s resumes)", len(finished), len(plates), path, outdir)
        raise SystemExit(exit_status.TERMINATED) from None


def write_run_catalog(outdir, summaries, rejects, config):
    """Assemble the catalog from the results of the plates that finished."""
    from qsopipe.stages.catalog import catalog_from_results

    paths = RunLayout(outdir)
    finished = [s["name"] for s in summaries if s["status"] in ("done", "resumed")]
    inputs = [_input_record(s, f) for s in summaries for f in s["files"]]
    inputs += [{"path": r.path, "plate": -1, "mjd": -1, "status": r.status, "reason": r.reason} for r in rejects]
    return catalog_from_results(paths.results, paths.catalog, plates=finished, inputs=inputs, config=config)


def _input_record(summary, path):
    """The catalog's INPUTS row of one file of a plate.

    A plate finished by an earlier run is 'done', so a resumed run writes
    the same catalog as an uninterrupted one (the run report still says
    'resumed'); a spec file the plate left out is 'failed' with its reason.
    """
    skipped = summary.get("skipped", {})
    status = "failed" if path in skipped else "done" if summary["status"] == "resumed" else summary["status"]
    return {"path": path, "plate": summary["plate"], "mjd": summary["mjd"], "status": status,
            "reason": skipped.get(path, summary["reason"])}


@click.command(name="run")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--cluster", default="local", show_default=True, callback=check_cluster,
              help="'local', 'slurm' or a scheduler ADDRESS.")
@config_options("workers", "qn_model", "bal_model", "mgii_model", "mgii_vetter", "c_th", "n_th", "c_th_single",
                "bal_th", "bal_prob_th", "mgii_threshold", "keep_shards")
def command(inputs, outdir, cluster, **options):
    """Run every plate stage (preprocess, quasarnet, zfit, bal, mgii) on each plate under INPUTS, then write
    OUTDIR/catalog.fits."""
    start = time.perf_counter()
    config = load_config(options.pop("config_file"), options)
    plates, rejects = discover(inputs)
    log_rejects(rejects)
    require_plates(plates, inputs)
    writable_outdir(outdir)
    log.info("%d plate(s) to process into %s", len(plates), outdir)
    finished = {}
    report_if_stopped = functools.partial(reported_on_sigterm, outdir, plates, finished, rejects, config, start)
    # The inner report_if_stopped writes the report before the cluster closes; the outer one covers its start.
    with sigterm_raises(), report_if_stopped():
        with dask_client(cluster, config["workers"], config) as client, report_if_stopped():
            run_plates(client, plates, outdir, config, finished)
        summaries = in_plate_order(plates, finished)
        disk_full = next((s for s in summaries if s.get("disk_full")), None)
        catalog = None if disk_full else write_run_catalog(outdir, summaries, rejects, config)
    write_report(RunLayout(outdir).report, summaries, rejects, config, catalog, time.perf_counter() - start)
    if disk_full:
        raise exit_status.DiskFull(f"{disk_full['reason']}; stopped before the catalog. Free space and rerun "
                                   "into the same OUTDIR: finished plates are kept")
    click.echo(str(catalog))
    if failures(rejects) or any(s["status"] == "failed" or s.get("skipped") for s in summaries):
        raise SystemExit(exit_status.FAILED)
