"""Progress lines that read well in a SLURM .out file: one line per finished plate."""

import logging
import time

log = logging.getLogger("qsopipe.pipeline.run")


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class PlateProgress:
    """Counts finished plates and logs one line each with rate and ETA.

    The rate counts spectra of plates processed in this run (resumed plates
    are reported but not timed).
    """

    def __init__(self, nplates, clock=time.perf_counter):
        self.nplates = nplates
        self.clock = clock
        self.start = clock()
        self.finished = 0
        self.processed_spectra = 0
        self.processed_plates = 0

    def update(self, summary):
        """Log the line for one plate summary (see plate_task.process_plate)."""
        self.finished += 1
        head = f"[{self.finished}/{self.nplates}] plate {summary['name']}"
        if summary["status"] == "failed":
            log.error("%s FAILED: %s", head, summary["reason"])
            return
        if summary["status"] == "resumed":
            log.info("%s: already complete (%d fibers, %d quasars), skipped", head, summary["nfiber"], summary["nqso"])
            return
        self.processed_spectra += summary["nfiber"]
        self.processed_plates += 1
        elapsed = self.clock() - self.start
        rate = self.processed_spectra / elapsed if elapsed > 0 else 0.0
        remaining = self.nplates - self.finished
        eta = remaining * elapsed / self.processed_plates
        log.info("%s: %d fibers, %d quasars, %d MgII absorbers, %.1f s; %.0f spectra/s, ETA %s",
                 head, summary["nfiber"], summary["nqso"], summary["nabs"], summary["seconds"], rate, _clock(eta))

    def summary_line(self, counts):
        """The closing line: plates by status, spectra, wall time and overall rate."""
        elapsed = self.clock() - self.start
        rate = self.processed_spectra / elapsed if elapsed > 0 else 0.0
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return (f"finished {self.nplates} plates ({parts}); {self.processed_spectra} spectra processed "
                f"in {_clock(elapsed)} ({rate:.0f} spectra/s)")
