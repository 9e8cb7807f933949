"""The exit statuses of every qsopipe command, and the help text that lists them."""

import click

#: Every input was processed (spec files superseded by their plate's spPlate are no failure).
OK = 0
#: An input failed or was rejected (each named in the log and in run_report.json), or nothing was found.
FAILED = 1
#: A usage or configuration error, reported in one line before any work.
USAGE = 2
#: An output could not be written for a full disk or quota; the run stopped early, a rerun resumes it.
DISK_FULL = 3

#: SIGTERM (a batch system's time limit) stopped the run: 128 + the signal's number, as a shell reports it.
TERMINATED = 128 + 15

HELP = ("Exit status: 0 every input processed; 1 an input failed or was rejected, or nothing to process; "
        "2 usage or configuration error, nothing done; 3 disk full or over quota, stopped early "
        "(free space and rerun: finished plates are kept); 143 stopped by SIGTERM (rerun to resume).")


class DiskFull(click.ClickException):
    """An output could not be written for lack of space: one line 'Error: PATH: ...', exit status 3."""

    exit_code = DISK_FULL
