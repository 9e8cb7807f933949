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
