"""Read a discovered PlateInput with the adapter for its format."""

from qsopipe.pipeline.sdss.spec import read_spec_plate
from qsopipe.pipeline.sdss.spplate import read_spplate


def read_plate(plate_input, skipped=None):
    """Read a PlateInput (spPlate or grouped spec files) into a Plate.

    skipped : dict or None; see `read_spec_plate` (unreadable spec files left
        out and recorded instead of failing the plate). An spPlate is one file:
        it reads or it raises.
    """
    if plate_input.kind == "spplate":
        return read_spplate(plate_input.files[0])
    return read_spec_plate(plate_input.files, skipped)
