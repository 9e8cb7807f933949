"""glibc malloc settings for worker processes that allocate many large, short-lived arrays.

A plate's temporaries are 15-20 MB numpy arrays, allocated and freed a few
hundred times per plate. Dask's nanny starts workers with
MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap threshold at
128 kB: every such array is then a fresh mmap whose pages fault in one by
one, and numpy's element-wise passes slow down (benchmarks/README.md has
the timings). `tune_malloc` serves arrays below MMAP_THRESHOLD from the
heap, which keeps up to TRIM_THRESHOLD of free memory for reuse instead of
returning it to the OS.
"""

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

#: mallopt(3) parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap, bytes.
MMAP_THRESHOLD = 64 * 2**20
#: Free memory at the top of the heap kept for reuse, bytes.
TRIM_THRESHOLD = 512 * 2**20


@functools.cache
def tune_malloc():
    """Set the heap thresholds once per process; True where glibc took them (False elsewhere, harmlessly)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc thresholds %s", "set" if applied else "not accepted")
    return applied
