"""Helpers shared by the benchmark scripts (run them from the repository root): timing and output."""

import json
import time
from pathlib import Path


def best_of(repeat, function):
    """Smallest wall time of `repeat` calls of `function`, in seconds, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def report(result, json_path=None):
    """Print `result` as indented JSON and, when `json_path` is given, write it there too."""
    text = json.dumps(result, indent=2)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")
