"""Fixed-shape batches for compiled (traced once per shape) forward passes.

A `tf.function` traced for one batch shape never retraces, but padding a
short last batch up to that shape wastes work: 529 MgII sightlines in
batches of 256 compute 768. `batch_sizes` gives a few fixed sizes (the
largest, then halves) and `batch_plan` covers n rows with them, so the
padding stays below the smallest size.
"""

#: Smallest traced batch: below it, a call's fixed cost outweighs the padded rows.
SMALLEST_BATCH = 32


def batch_sizes(batch, smallest=SMALLEST_BATCH):
    """Traced batch sizes, descending: batch, batch // 2, ... while >= smallest (always batch itself)."""
    sizes = [int(batch)]
    while sizes[-1] // 2 >= smallest:
        sizes.append(sizes[-1] // 2)
    return sizes


def batch_plan(n, sizes):
    """Batches covering rows 0..n-1 as [(start, stop, size)]; stop - start <= size, and < size only in the last.

    Full batches of sizes[0] first; the remainder takes each smaller size
    that fits whole, and what is left goes into one batch of sizes[-1].
    """
    plan = []
    start = 0
    while n - start >= sizes[0]:
        plan.append((start, start + sizes[0], sizes[0]))
        start += sizes[0]
    for size in sizes[1:]:
        if n - start >= size:
            plan.append((start, start + size, size))
            start += size
    if start < n:
        plan.append((start, n, sizes[-1]))
    return plan
