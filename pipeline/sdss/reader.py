"""Read a discovered PlateInput with the adapter for its format."""

from qsopipe.sdss.spec import read_spec_plate
from qsopipe.sdss.spplate import read_spplate


def read_plate(plate_input):
    """Read a PlateInput (spPlate or grouped spec files) into a Plate."""
    if plate_input.kind == "spplate":
        return read_spplate(plate_input.files[0])
    return read_spec_plate(plate_input.files)
