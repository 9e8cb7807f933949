"""Input discovery: files, directories searched recursively, BOSS_SPECTRO_REDUX trees.

Every input becomes a PlateInput (one plate-MJD and the format whose files
hold it; see `qsopipe.pipeline.formats`). Nothing found is dropped silently:
files that cannot be an input, directories that cannot be listed, and
plate-MJDs (or spec fibers) given twice come back as rejects with a reason.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from qsopipe.pipeline.formats import FORMATS, claim_by_name, claim_file
from qsopipe.pipeline.input_format import InputFormat

#: Why a file given by name is not an input: no format claims its name or its content.
UNRECOGNISED = "file name is neither " + " nor ".join(fmt.name_template for fmt in FORMATS)


@dataclass
class PlateInput:
    """One plate-MJD to process: its files and the InputFormat that reads them.

    files : list of str, in the order they were found (one spPlate, or the
        spec files of the plate-MJD).
    """

    plate: int
    mjd: int
    format: InputFormat
    files: list

    @property
    def name(self):
        """The plate unit's name in output file names ('pppp-mmmmm' for SDSS)."""
        return self.format.unit_name(self.plate, self.mjd)

    def read(self, skipped=None):
        """The plate's spectra as a `qsopipe.pipeline.plate.Plate`; see `InputFormat.read` for `skipped`."""
        return self.format.read(self.files, skipped)


@dataclass
class Reject:
    """An input file that will not be processed, and why."""

    path: str
    reason: str


def discover(inputs):
    """Find the plates under `inputs` (files or directories).

    A file found in a directory is an input when a format's name pattern
    matches it; a file given by name when its name or its content is one
    of a format's. Returns (plates, rejects): plates sorted by (plate, mjd);
    rejects lists files no format claims, things named like an input that
    are not regular files, directories that cannot be listed, and inputs
    seen twice: the format listed first in the registry wins a plate-MJD
    over the others (an spPlate over its spec files; each skipped file is
    named), and within a format the first file of a plate-MJD (or
    plate-MJD-fiber) over later copies.
    """
    files, rejects = _files(inputs)
    groups = _groups(files, rejects)
    plates = _one_group_per_plate(groups, rejects)
    return [plates[unit] for unit in sorted(plates)], rejects


def _files(inputs):
    """(the files given or found under directories, rejects so far), in input order."""
    files, rejects = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(_walk(path, rejects))
        elif path.is_file():
            files.append(path)
        elif path.exists():
            rejects.append(Reject(str(path), "not a regular file"))
        else:
            rejects.append(Reject(str(path), "no such file or directory"))
    return files, rejects


def _groups(files, rejects):
    """{(format, (plate, mjd)): PlateInput} of the claimed files; unclaimed files and copies go to `rejects`."""
    groups, first_files = {}, {}
    for path in files:
        claim = claim_file(path)
        if claim is None:
            rejects.append(Reject(str(path), UNRECOGNISED))
            continue
        key = claim.format, claim.key
        if key in first_files:
            rejects.append(Reject(str(path), f"duplicate of {first_files[key]} (same {claim.key_label})"))
            continue
        first_files[key] = str(path)
        group = groups.setdefault((claim.format, claim.unit), PlateInput(*claim.unit, claim.format, []))
        group.files.append(str(path))
    return groups


def _one_group_per_plate(groups, rejects):
    """{(plate, mjd): PlateInput}, each from the format listed first in FORMATS; the others' files go to `rejects`."""
    plates = {}
    for group in sorted(groups.values(), key=lambda group: FORMATS.index(group.format)):
        plates.setdefault((group.plate, group.mjd), group)
    for group in groups.values():
        winner = plates[(group.plate, group.mjd)]
        if winner is not group:
            rejects += [Reject(path, f"{group.format.label} file of plate-MJD {group.name} skipped: "
                                     f"the plate is read from {winner.files[0]}") for path in group.files]
    return plates


def _walk(directory, rejects):
    """Files under `directory` whose name a format claims, sorted; no file is opened.

    Things so named that are not regular files, and directories that cannot
    be listed, are appended to `rejects`.
    """
    found = []

    def unlistable(err):
        rejects.append(Reject(str(err.filename), f"directory cannot be listed ({err.strerror})"))

    for parent, dirnames, filenames in os.walk(directory, onerror=unlistable):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            if claim_by_name(name) is None:
                continue
            path = Path(parent) / name
            if path.is_file():
                found.append(path)
            else:
                rejects.append(Reject(str(path), "named like an input but not a regular file"))
    return sorted(found)
