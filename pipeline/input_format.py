"""What every input format provides: recognising its files, and reading a plate unit of them.

A format is one module (the SDSS ones live in `qsopipe.pipeline.sdss`) that
defines `FORMAT`, an instance of an `InputFormat` subclass, and is listed in
`qsopipe.pipeline.formats`. Discovery asks each format whether a file is its
own (`claim_name`, then `claim_content` for a file given by name); the
format that claimed a plate unit is the one that reads it.
"""

import abc
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """A file recognised by a format: the format and the plate unit the file belongs to.

    fiber is None for a format whose file holds a whole plate-MJD, the
    fiber number for a format whose file holds one spectrum.
    """

    format: "InputFormat"
    plate: int
    mjd: int
    fiber: int | None = None

    @property
    def unit(self):
        """(plate, mjd): the plate unit the file is read into."""
        return self.plate, self.mjd

    @property
    def key(self):
        """(plate, mjd) or (plate, mjd, fiber): what two files of one format must not share."""
        return self.unit if self.fiber is None else (*self.unit, self.fiber)

    @property
    def key_label(self):
        """The key spelled for a message: 'plate-MJD' or 'plate-MJD-fiber'."""
        return "plate-MJD" if self.fiber is None else "plate-MJD-fiber"


class InputFormat(abc.ABC):
    """A survey file format.

    Subclasses set:
    label : str, the format in messages ('spPlate', 'spec').
    name_template : str, how its file names look ('spPlate-PPPP-MMMMM.fits').
    name_pattern : compiled regex matched against a whole file name, with
        groups 'plate' and 'mjd' and, for one-spectrum files, 'fiber'.
    """

    label: str
    name_template: str
    name_pattern: re.Pattern

    def claim_name(self, filename):
        """The Claim of a file named `filename` (a base name), or None; opens nothing."""
        match = self.name_pattern.fullmatch(filename)
        if match is None:
            return None
        groups = match.groupdict()
        fiber = groups.get("fiber")
        return Claim(self, int(groups["plate"]), int(groups["mjd"]), None if fiber is None else int(fiber))

    @abc.abstractmethod
    def claim_content(self, path):
        """The Claim of the file at `path` judged by what it holds, or None; never raises for a bad file."""

    @abc.abstractmethod
    def read(self, paths, skipped=None):
        """Read the files of one plate unit into a `qsopipe.pipeline.plate.Plate`.

        paths : list of str, the unit's files in discovery order.
        skipped : dict or None. None: the first unreadable file raises
            InputError. A dict: a format whose unit has many files may leave
            an unreadable one out and record it (path -> message).
        Any defect raises InputError naming the file and what is wrong.
        """

    def __repr__(self):
        return f"<{self.label} input format>"

    def unit_name(self, plate, mjd):
        """'pppp-mmmmm': the plate unit's name in output file names."""
        return f"{plate:04d}-{mjd:05d}"
