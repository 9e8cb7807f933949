"""One plate through every stage: the unit of work and of failure of `qsopipe run`.

`process_plate` runs on a Dask worker. It runs the stages of
`stage.PLATE_STAGES` under their resume rule (`stage.PlateRun`): each
stage's results are reused only while they record the inputs' content and
the settings of this run, so a rerun with other thresholds or models, or on
edited inputs, redoes what they change and nothing else, and a rerun of a
finished plate reads its results and says so ('resumed'). The shard stays
in memory between the stages unless `keep_shards` is set. The done-marker
OUTDIR/done/NAME.json, written last, holds the plate's summary and the
digests of its files, so that a resume need not read unchanged files again.
"""

import json
import logging
import os
import resource
import time
import traceback

from qsopipe.pipeline.atomic import NoSpaceError, atomic_path
from qsopipe.pipeline.digests import content_key, file_records
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.layout import RunLayout
from qsopipe.pipeline.malloc import tune_malloc
from qsopipe.pipeline.stage import PlateProducts, PlateRun, plate_stages

log = logging.getLogger(__name__)

#: Summary figures of a plate that no stage reported (e.g. it failed).
NO_COUNTS = {"nfiber": 0, "nqso": 0, "nabs": 0, "skipped": {}}


def run_roots(outdir, keep_shards):
    """{product: folder} of a run: results under OUTDIR/results, shards under OUTDIR/shards or in memory."""
    paths = RunLayout(outdir)
    roots = {product: paths.results for product in ("quasarnet", "zfit", "bal", "mgii", "mgii_absorbers")}
    if keep_shards:
        roots["shard"] = paths.shards
    return roots


def read_marker(path):
    """The done-marker at `path` as a dict, or {} when absent or unreadable."""
    try:
        with open(path) as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def process_plate(plate_input, outdir, config):
    """Run every stage on one plate; never raises for a bad plate.

    Returns a summary dict: plate, mjd, name, files, status ('done',
    'resumed' when every stage's results were already up to date, or
    'failed'), reason, disk_full (present and true when an output could
    not be written for lack of space), skipped (unreadable spec files left out of a plate
    that was processed: path -> reason), stages (stage -> 'reused' or why it
    ran), nfiber, nqso, nabs, seconds.
    """
    tune_malloc()
    start = time.perf_counter()
    paths = RunLayout(outdir)
    summary = {"plate": plate_input.plate, "mjd": plate_input.mjd, "name": plate_input.name,
               "files": plate_input.files, "status": "failed", "reason": "", **NO_COUNTS}
    try:
        known = read_marker(paths.marker(plate_input.name)).get("files")
        records = file_records(plate_input.files, known)
        products = PlateProducts(plate_input.name, run_roots(paths.outdir, config["keep_shards"]), plate_input,
                                 content_key(records))
        plate = PlateRun(plate_stages(), products, config)
        summary.update(plate.execute())
        resumed = all(action == "reused" for action in plate.actions.values())
        summary.update(status="resumed" if resumed else "done", stages=plate.actions, stage_seconds=plate.seconds,
                       worker_pid=os.getpid(),
                       worker_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    except InputError as err:
        summary["reason"] = str(err)
    except NoSpaceError as err:
        _disk_full(summary, err)
    except OSError as err:
        summary["reason"] = f"{err.filename or _named(plate_input.files)}: cannot be read or written ({err.strerror})"
    except Exception as err:  # a bug or a surprise in one plate must not stop the run
        summary["reason"] = f"{_named(plate_input.files)}: unexpected {type(err).__name__}: {err}"
        log.error("plate %s: unexpected error\n%s", plate_input.name, traceback.format_exc())
    summary["seconds"] = time.perf_counter() - start
    if summary["status"] == "done" or (summary["status"] == "resumed" and records != known):
        try:
            with atomic_path(paths.marker(plate_input.name)) as tmp, open(tmp, "w") as handle:
                json.dump({"summary": summary, "files": records}, handle)
        except NoSpaceError as err:
            _disk_full(summary, err)
    return summary


def _disk_full(summary, err):
    """Mark the plate failed for a full disk, which stops the run (`run.run_plates`)."""
    summary.update(status="failed", reason=str(err), disk_full=True)


def _named(files):
    """The plate's file, or its first file and how many more, for a failure reason."""
    return files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
