"""Where the shipped weights live, and loading a model once per process.

Dask workers call `load_model` for every plate; the first call per path
loads the file, later calls return the same model, so each worker loads
each network once.
"""

import functools
from importlib import resources
from pathlib import Path

from qsopipe.pipeline.digests import sha256_of_file

WEIGHTS_DIR = Path(str(resources.files("qsopipe.models").joinpath("weights")))


def default_weights(name):
    """Path of a shipped model file, e.g. default_weights('quasarnet') -> .../weights/quasarnet.keras."""
    return WEIGHTS_DIR / f"{name}.keras"


@functools.lru_cache(maxsize=None)
def file_sha256(path):
    """Hex sha256 of a model file, computed once per process and path."""
    return sha256_of_file(path)


@functools.lru_cache(maxsize=None)
def load_model(path):
    """Load a `.keras` model (inference only, not compiled), once per process and path.

    Importing the network modules registers their custom layers first.
    """
    import keras

    import qsopipe.models.mgii  # noqa: F401  (registers custom objects)
    import qsopipe.models.quasarnet  # noqa: F401
    from qsopipe.models.quasarnet import configure_threads

    configure_threads()
    return keras.models.load_model(str(path), compile=False)
