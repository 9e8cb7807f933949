"""The cluster's closing races stay out of the log, in the client and in every worker; other messages stay."""

import logging

from qsopipe.pipeline.config import load_config
from qsopipe.pipeline.run import dask_client
from qsopipe.pipeline.shutdown_noise import SHUTDOWN_RACES, drop_shutdown_races


def kept(logger_name, message):
    """Whether `logger_name`'s filters let an ERROR with `message` through."""
    record = logging.LogRecord(logger_name, logging.ERROR, __file__, 0, message, None, None)
    return logging.getLogger(logger_name).filter(record)


def shutdown_races_kept():
    """[(kept(race), kept(other message))] for each closing race and for an unrelated message of the same logger."""
    return [(kept(name, f"{text} (details)"), kept(name, "Worker is at 85% memory usage")) for name, text in SHUTDOWN_RACES]


def test_closing_races_are_dropped_and_other_messages_kept():
    drop_shutdown_races()
    drop_shutdown_races()
    assert shutdown_races_kept() == [(False, True)] * len(SHUTDOWN_RACES)
    assert sum(type(f).__name__ == "DropMessage" for f in logging.getLogger("distributed.worker").filters) == 1


def test_every_worker_of_the_run_cluster_drops_them():
    with dask_client("local", 1, load_config(environ={})) as client:
        by_worker = client.run(shutdown_races_kept)
    assert list(by_worker.values()) == [[(False, True)] * len(SHUTDOWN_RACES)]
