"""A simulator run (`qsopipe simulate` output) as the trainers read it: its plates, matched to its truth."""

import logging
from pathlib import Path

from qsopipe.pipeline.ids import match_rows, target_id

log = logging.getLogger(__name__)


def truth_matched_plates(sim_dir, truth):
    """Each plate under SIM_DIR/spectra with its fibers' rows in `truth` (the run's truth table).

    Yields (plate, row, in_truth): the `qsopipe.pipeline.plate.Plate` read, each fiber's row index in
    `truth` (int64 (nfiber,)) and whether it has one (bool (nfiber,)). Unreadable files are logged and
    left out.
    """
    from qsopipe.pipeline.discovery import discover

    plates, rejects = discover([Path(sim_dir) / "spectra"])
    for reject in rejects:
        log.warning("skipped %s: %s", reject.path, reject.reason)
    truth_keys = target_id(truth["PLATE"], truth["MJD"], truth["FIBERID"])
    for plate_input in plates:
        plate = plate_input.read()
        row, in_truth = match_rows(target_id(plate.fibers["PLATE"], plate.fibers["MJD"], plate.fibers["FIBERID"]),
                                   truth_keys)
        yield plate, row, in_truth
