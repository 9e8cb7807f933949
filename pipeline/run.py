"""`qsopipe run`: every stage plate by plate on Dask, then the catalog.

A plate is the unit of work and of failure: each is one Dask task
(`plate_task.process_plate`), a bad plate is reported and the others go on.
Outputs live under OUTDIR (see `plate_task.layout`); a rerun into the same
OUTDIR skips finished plates. Exit status: 0 when every input was processed,
1 when any input failed or was rejected.
"""

import contextlib
import json
import logging
import os
import time
from collections import Counter

import click

from qsopipe.pipeline.atomic import atomic_path
from qsopipe.pipeline.config import config_options, load_config
from qsopipe.pipeline.discovery import discover
from qsopipe.pipeline.layout import RunLayout
from qsopipe.pipeline.plate_task import NO_COUNTS, process_plate
from qsopipe.pipeline.progress import PlateProgress
from qsopipe.pipeline.stage import log_changes

log = logging.getLogger("qsopipe.pipeline.run")

@contextlib.contextmanager
def dask_client(cluster, workers, config):
    """A dask.distributed Client on 'local', 'slurm' or a scheduler ADDRESS; closes what it started."""
    from distributed import Client

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Worker processes inherit the environment; configure_threads reads this before TF starts.
    os.environ["QSOPIPE_TF_THREADS"] = str(config["tf_threads"])
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().level))
    if cluster in ("local", "slurm"):
        from qsopipe.pipeline.slurm_cluster import make_cluster

        nworkers = workers or (max(1, len(os.sched_getaffinity(0))) if cluster == "local" else 2)
        log.info("starting a %s Dask cluster: %d single-threaded worker(s)", cluster, nworkers)
        options = ({"memory_limit": config["memory_limit"], "dashboard_address": None} if cluster == "local"
                   else {"memory": config["memory_limit"]})
        with make_cluster(cluster, nworkers, **options) as dask_cluster, Client(dask_cluster) as client:
            if cluster == "slurm":
                client.wait_for_workers(1)
            yield client
    else:
        log.info("joining the Dask scheduler at %s", cluster)
        with Client(cluster) as client:
            yield client


def run_plates(client, plates, outdir, config):
    """Submit one task per plate; log each as it finishes; return the summaries in plate order."""
    from distributed import as_completed

    progress = PlateProgress(len(plates))
    futures = {client.submit(process_plate, plate, str(outdir), config, key=f"plate-{plate.name}", pure=False): plate
               for plate in plates}
    summaries = {}
    for future in as_completed(futures):
        plate = futures[future]
        try:
            summary = future.result()
        except Exception as err:  # the worker died (memory, kill): the plate failed, the run goes on
            summary = {"plate": plate.plate, "mjd": plate.mjd, "name": plate.name, "files": plate.files,
                       "status": "failed", "reason": f"worker lost: {type(err).__name__}: {err}",
                       **NO_COUNTS, "seconds": 0.0}
        summaries[plate.name] = summary
        log_changes(plate.name, summary.get("stages", {}))
        for message in summary.get("skipped", {}).values():  # each starts with the file's path
            log.warning("not processed: %s", message)
        progress.update(summary)
    ordered = [summaries[plate.name] for plate in plates]
    log.info(progress.summary_line(Counter(s["status"] for s in ordered)))
    return ordered


def write_report(path, summaries, rejects, config, catalog):
    """run_report.json: every input with its status, the configuration and the catalog path."""
    report = {
        "catalog": str(catalog) if catalog else None,
        "config": config,
        "plates": summaries,
        "rejected": [{"path": r.path, "reason": r.reason} for r in rejects],
        "counts": dict(Counter(s["status"] for s in summaries)),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(report, handle, indent=1, default=str)
    return report


def write_run_catalog(outdir, summaries, rejects, config):
    """Assemble the catalog from the results of the plates that finished."""
    from qsopipe.stages.catalog import catalog_from_results

    paths = RunLayout(outdir)
    finished = [s["name"] for s in summaries if s["status"] in ("done", "resumed")]
    inputs = [_input_record(s, f) for s in summaries for f in s["files"]]
    inputs += [{"path": r.path, "plate": -1, "mjd": -1, "status": "rejected", "reason": r.reason} for r in rejects]
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
@click.option("--cluster", default="local", show_default=True, help="'local', 'slurm' or a scheduler ADDRESS.")
@config_options("workers", "qn_model", "mgii_model", "c_th", "n_th", "bal_th", "mgii_threshold", "keep_shards")
def command(inputs, outdir, cluster, **options):
    """Run preprocess, quasarnet and mgii on every plate under INPUTS, then write OUTDIR/catalog.fits."""
    config = load_config(options.pop("config_file"), options)
    plates, rejects = discover(inputs)
    for reject in rejects:
        log.warning("not processed: %s: %s", reject.path, reject.reason)
    log.info("%d plate(s) to process into %s", len(plates), outdir)
    os.makedirs(outdir, exist_ok=True)
    with dask_client(cluster, config["workers"], config) as client:
        summaries = run_plates(client, plates, outdir, config)
    catalog = write_run_catalog(outdir, summaries, rejects, config) if plates else None
    write_report(RunLayout(outdir).report, summaries, rejects, config, catalog)
    if catalog:
        click.echo(str(catalog))
    if rejects or any(s["status"] == "failed" or s.get("skipped") for s in summaries):
        raise SystemExit(1)
