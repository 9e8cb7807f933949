"""Timing helper shared by the benchmark scripts (run them from the repository root)."""

import time


def best_of(repeat, function):
    """Smallest wall time of `repeat` calls of `function`, in seconds, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result
