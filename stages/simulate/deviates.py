"""Fast standard-normal deviates from a quantile table.

numpy's Gaussian sampler costs about three times its uniform integers; the
simulator needs one deviate per pixel per fiber, so it draws 16-bit integers
and looks up the normal quantile of each bin centre instead. The deviates are
exactly reproducible from the generator, have unit variance to 1e-4 and are
bounded at |x| < 4.33 (one in 65536 draws falls in each extreme bin).
"""

import numpy as np
from scipy.special import ndtri

_QUANTILES = ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)
_QUANTILES /= np.float32(np.sqrt(np.mean(_QUANTILES.astype(np.float64) ** 2)))


def standard_normal(rng, shape):
    """Approximately N(0, 1) float32 deviates of the given shape, drawn from rng."""
    return _QUANTILES[rng.integers(0, 65536, size=shape, dtype=np.uint16)]
