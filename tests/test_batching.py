"""Fixed-shape batch plans of the compiled forward passes."""

import pytest

from qsopipe.models.batching import batch_plan, batch_sizes


def test_batch_sizes_halve_down_to_the_smallest():
    assert batch_sizes(256) == [256, 128, 64, 32]
    assert batch_sizes(8) == [8]


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 255, 256, 529, 990, 1024, 2500])
def test_plan_covers_every_row_once_and_pads_only_the_last_batch(n):
    sizes = batch_sizes(256)
    plan = batch_plan(n, sizes)
    rows = [row for start, stop, _ in plan for row in range(start, stop)]
    assert rows == list(range(n))
    assert all(size in sizes and stop - start <= size for start, stop, size in plan)
    assert all(stop - start == size for start, stop, size in plan[:-1])
    padding = sum(size - (stop - start) for start, stop, size in plan)
    assert padding < sizes[-1]


def test_every_batch_size_traces_once_without_a_retracing_warning():
    """The sizes are one Python function traced for several shapes: by design, so TensorFlow must not warn."""
    import logging

    import numpy as np

    from qsopipe.models.batching import FixedBatchForward

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        forward = FixedBatchForward(lambda x: 2.0 * x, (3,), 1024)
        for n in (1024, 512, 256, 128, 64, 32, 1, 7, 0, 1500):
            x = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
            np.testing.assert_array_equal(forward(x), 2.0 * x)
    finally:
        logger.removeHandler(handler)
    assert forward.tracing_count == len(forward.sizes)
    assert not [message for message in messages if "retracing" in message]
