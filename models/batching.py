"""Fixed-shape batches for compiled (traced once per shape) forward passes.

A `tf.function` traced for one batch shape never retraces, but padding a
short last batch up to that shape wastes work: 529 MgII sightlines in
batches of 256 compute 768. `batch_sizes` gives a few fixed sizes (the
largest, then halves) and `batch_plan` covers n rows with them, so the
padding stays below the smallest size. `FixedBatchForward` runs a network
that way; both networks' compiled forward passes are one.
"""

import numpy as np

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


class FixedBatchForward:
    """`forward` traced once per batch size of `batch_sizes(batch)`, run over inputs of any length.

    forward : callable, a float32 tensor (size, *sample_shape) -> a tensor (size, ...)
    sample_shape : shape of one input, e.g. (443, 1)
    Calling it on x float32 (n, *sample_shape) returns the numpy outputs
    (n, ...): the rows are cut by `batch_plan` and only the last batch is
    zero-padded, so no call retraces. Each size is traced on its first use
    and then called as its concrete function, so TensorFlow's warning about
    frequent retracing (one Python function traced for several shapes) does
    not fill the logs. TensorFlow is imported on construction.
    """

    def __init__(self, forward, sample_shape, batch):
        import tensorflow as tf

        self.sample_shape = tuple(sample_shape)
        self.sizes = batch_sizes(batch)
        self._functions = {size: tf.function(forward, input_signature=[
            tf.TensorSpec((size, *self.sample_shape), tf.float32)]) for size in self.sizes}
        self._concrete = {}

    @property
    def tracing_count(self):
        """How many times the forward pass was traced (at most one per batch size)."""
        return sum(function.experimental_get_tracing_count() for function in self._functions.values())

    def _run(self, size, batch):
        """The traced forward pass of one batch of `size` rows, as numpy."""
        if size not in self._concrete:
            self._concrete[size] = self._functions[size].get_concrete_function()
        return self._concrete[size](batch).numpy()

    def __call__(self, x):
        x = np.asarray(x, np.float32).reshape(-1, *self.sample_shape)
        if len(x) == 0:
            return self._run(self.sizes[-1], np.zeros((self.sizes[-1], *self.sample_shape), np.float32))[:0]
        outputs = []
        for start, stop, size in batch_plan(len(x), self.sizes):
            batch = x[start:stop]
            if stop - start < size:
                batch = np.concatenate([batch, np.zeros((size - (stop - start), *self.sample_shape), np.float32)])
            outputs.append(self._run(size, batch)[:stop - start])
        return np.concatenate(outputs)
