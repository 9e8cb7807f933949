"""Keep a Dask cluster's closing races out of the log.

When the run closes the cluster it started, two messages can appear that
say nothing about the run: the nanny's "still alive after ..., killing"
for a worker slow to exit, and a worker's "Failed to communicate with
scheduler during heartbeat" with a traceback, when the scheduler drops the
worker's connection while a heartbeat is in flight. Every result is in by
then. A scheduler truly lost during the run still shows: the plates on it
fail with "worker lost".
"""

import logging

from distributed.diagnostics.plugin import WorkerPlugin

#: (logger, text) pairs dropped: the logger's messages containing the text.
SHUTDOWN_RACES = (
    ("distributed.nanny", "still alive after"),
    ("distributed.worker", "Failed to communicate with scheduler during heartbeat"),
)


class DropMessage(logging.Filter):
    """A logging filter that drops the records whose message contains `text`."""

    def __init__(self, text):
        super().__init__()
        self.text = text

    def filter(self, record):
        return self.text not in record.getMessage()


def drop_shutdown_races():
    """Add the filters to this process's loggers (once each)."""
    for name, text in SHUTDOWN_RACES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessage) and f.text == text for f in logger.filters):
            logger.addFilter(DropMessage(text))


class QuietShutdown(WorkerPlugin):
    """Runs `drop_shutdown_races` in every worker process, those that join later included."""

    name = "qsopipe-quiet-shutdown"

    def setup(self, worker):
        drop_shutdown_races()
