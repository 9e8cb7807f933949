"""The registry of input formats: which formats there are, and which one a file is.

Each entry names a module that defines FORMAT, an
`qsopipe.pipeline.input_format.InputFormat`. The order is the precedence:
when files of several formats hold the same plate-MJD, the plate is read
from the format listed first (an spPlate over its spec files).
"""

from importlib import import_module

FORMAT_MODULES = (
    "qsopipe.pipeline.sdss.spplate",
    "qsopipe.pipeline.sdss.spec",
)

#: The InputFormat of each module of FORMAT_MODULES, in the same order.
FORMATS = tuple(import_module(name).FORMAT for name in FORMAT_MODULES)


def claim_by_name(filename):
    """The Claim of the first format whose name pattern `filename` (a base name) matches, or None.

    Opens nothing: the test a directory walk applies to every file.
    """
    return next((claim for fmt in FORMATS if (claim := fmt.claim_name(filename))), None)


def claim_by_content(path):
    """The Claim of the first format that recognises what the file at `path` holds, or None."""
    return next((claim for fmt in FORMATS if (claim := fmt.claim_content(path))), None)


def claim_file(path):
    """The Claim of a file given by name: by its name if a pattern matches, else by its content; or None."""
    return claim_by_name(path.name) or claim_by_content(path)
