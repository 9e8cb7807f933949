"""One plate through every stage: the unit of work and of failure of `qsopipe run`.

`process_plate` runs on a Dask worker: preprocess -> quasarnet -> mgii, each
stage skipped when its output is already up to date, then a done-marker is
written last. The shard stays in memory between the stages; it is written
to OUTDIR/shards only with the `keep_shards` setting (rebuilding a shard
from its plate costs less than writing its 25 MB). A plate whose marker
exists is complete; anything short of it is redone from the last finished
stage, so a killed run resumes cleanly.
"""

import json
import logging
import os
import resource
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from qsopipe.pipeline.atomic import atomic_path, is_up_to_date
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.malloc import tune_malloc

log = logging.getLogger(__name__)


def layout(outdir):
    """The directories of a run's output tree, as a dict of Paths."""
    outdir = Path(outdir)
    return {"shards": outdir / "shards", "results": outdir / "results", "done": outdir / "done",
            "catalog": outdir / "catalog.fits", "report": outdir / "run_report.json"}


def marker_path(outdir, plate_input):
    return layout(outdir)["done"] / f"{plate_input.name}.json"


def result_files(outdir, plate_input):
    """The files of a plate the catalog reads: QuasarNET results, MgII results, absorbers."""
    from qsopipe.stages import mgii, quasarnet

    results = layout(outdir)["results"]
    return [quasarnet.result_path(results, plate_input.plate, plate_input.mjd),
            *mgii.result_paths(results, plate_input.plate, plate_input.mjd)]


def read_marker(outdir, plate_input):
    """The summary of a plate finished by an earlier run, or None if it must be (re)done.

    The marker counts only while it is newer than the plate's inputs and
    every result file it vouches for is still there.
    """
    path = marker_path(outdir, plate_input)
    if not is_up_to_date(path, plate_input.files):
        return None
    if not all(result.is_file() for result in result_files(outdir, plate_input)):
        return None
    with open(path) as handle:
        summary = json.load(handle)
    summary["status"] = "resumed"
    return summary


def process_plate(plate_input, outdir, config):
    """Run every stage on one plate; never raises for a bad plate.

    Returns a summary dict: plate, mjd, name, files, status ('done',
    'resumed' or 'failed'), reason, skipped (unreadable spec files left out
    of a plate that was processed: path -> reason), nfiber, nqso, nabs,
    seconds.
    """
    tune_malloc()
    start = time.perf_counter()
    summary = {"plate": plate_input.plate, "mjd": plate_input.mjd, "name": plate_input.name,
               "files": plate_input.files, "status": "failed", "reason": "", "skipped": {}, "nfiber": 0, "nqso": 0, "nabs": 0}
    try:
        previous = read_marker(outdir, plate_input)
        if previous is not None:
            return previous
        summary.update(_run_stages(plate_input, outdir, config))
        summary["status"] = "done"
    except InputError as err:
        summary["reason"] = str(err)
    except Exception as err:  # a bug or a surprise in one plate must not stop the run
        summary["reason"] = f"{_named(plate_input.files)}: unexpected {type(err).__name__}: {err}"
        log.error("plate %s: unexpected error\n%s", plate_input.name, traceback.format_exc())
    summary["seconds"] = time.perf_counter() - start
    if summary["status"] == "done":
        with atomic_path(marker_path(outdir, plate_input)) as tmp, open(tmp, "w") as handle:
            json.dump(summary, handle)
    return summary


def _named(files):
    """The plate's file, or its first file and how many more, for a failure reason."""
    return files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"


def _run_stages(plate_input, outdir, config):
    from qsopipe.models.store import default_weights, file_sha256, load_model
    from qsopipe.pipeline.parquet_io import read_metadata, with_metadata, write_parquet
    from qsopipe.stages import mgii, quasarnet
    from qsopipe.stages.preprocess import preprocess_input, shard_table

    paths = layout(outdir)
    seconds = {}
    start = time.perf_counter()
    if config["keep_shards"]:
        shard_file, shard = preprocess_input(plate_input, paths["shards"], skip_unreadable=True)
        if shard is None:
            shard = pq.read_table(shard_file)
        qn_inputs = [shard_file]
    else:
        shard = shard_table(plate_input, skip_unreadable=True)
        qn_inputs = list(plate_input.files)
    skipped = read_metadata(shard.schema).get("skipped", {})
    for path, reason in skipped.items():
        log.warning("plate %s: left out %s: %s", plate_input.name, path, reason)
    seconds["preprocess"] = time.perf_counter() - start

    qn_model = Path(config["qn_model"] or default_weights("quasarnet"))
    qn_file = quasarnet.result_path(paths["results"], plate_input.plate, plate_input.mjd)
    start = time.perf_counter()
    if is_up_to_date(qn_file, [*qn_inputs, qn_model]):
        qn_table = pq.read_table(qn_file)
    else:
        forward = quasarnet.make_forward(qn_model, config["batch_size"])
        qn_table = quasarnet.process_shard(shard, forward, qn_model, file_sha256(str(qn_model)),
                                           config["c_th"], config["n_th"], config["bal_th"])
        write_parquet(qn_table, qn_file)
    seconds["quasarnet"] = time.perf_counter() - start

    mgii_model = Path(config["mgii_model"] or default_weights("mgii"))
    mgii_file, absorbers_file = mgii.result_paths(paths["results"], plate_input.plate, plate_input.mjd)
    start = time.perf_counter()
    if is_up_to_date(absorbers_file, [qn_file, mgii_model]) and mgii_file.exists():
        absorbers = pq.read_table(absorbers_file)
    else:
        mgii_table, absorbers = mgii.process_plate(shard, qn_table, load_model(str(mgii_model)),
                                                   threshold=config["mgii_threshold"])
        metadata = mgii.results_metadata(mgii_model, config["mgii_threshold"])
        write_parquet(with_metadata(mgii_table, metadata), mgii_file)
        absorbers = with_metadata(absorbers, metadata)
        write_parquet(absorbers, absorbers_file)
    seconds["mgii"] = time.perf_counter() - start
    return {"nfiber": qn_table.num_rows, "skipped": skipped, "stage_seconds": seconds, "worker_pid": os.getpid(),
            "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "nqso": int(np.sum(qn_table.column("IS_QSO_QN").to_numpy())),
            "nabs": absorbers.num_rows}
