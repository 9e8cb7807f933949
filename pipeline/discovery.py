"""Input discovery: files, directories searched recursively, BOSS_SPECTRO_REDUX trees.

Every input becomes a PlateInput (one plate-MJD and the format whose files
hold it; see `qsopipe.pipeline.formats`). Links to directories are followed.
Nothing found is dropped silently: files that cannot be an input,
directories that cannot be listed or are reached again through a link (a
loop), and plate-MJDs (or spec fibers) given twice in different files come
back as rejects with a reason; one file reached twice is one input. Spec
files of a plate-MJD that is read from its spPlate are 'superseded':
listed, but no failure, since none of their spectra is lost.
"""

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import click

from qsopipe.pipeline.formats import FORMATS, claim_by_name, claim_file
from qsopipe.pipeline.input_format import InputFormat

log = logging.getLogger(__name__)

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
    """An input file that will not be processed, and why.

    status : 'rejected' (a failed input), or 'superseded' (its plate-MJD is
        read from `superseded_by`, the first file of another format).
    """

    path: str
    reason: str
    status: str = "rejected"
    superseded_by: str = ""


def failures(rejects):
    """The rejects that are failed inputs (not superseded ones)."""
    return [reject for reject in rejects if reject.status == "rejected"]


def log_rejects(rejects):
    """One warning per rejected input, and one line per plate whose files of another format were superseded."""
    superseded = defaultdict(list)
    for reject in rejects:
        if reject.status == "superseded":
            superseded[reject.superseded_by].append(reject)
        else:
            log.warning("not processed: %s: %s", reject.path, reject.reason)
    for winner, group in superseded.items():
        log.info("%d file(s) not read (e.g. %s): the plate is read from %s", len(group), group[0].path, winner)


def require_plates(plates, inputs):
    """ClickException (exit 1) when discovery found no plate under `inputs`: nothing was done."""
    if not plates:
        searched = " or ".join(fmt.name_template for fmt in FORMATS)
        raise click.ClickException(f"no plate to process: nothing named {searched} under {', '.join(inputs)}")


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
    """(the files given or found under directories, rejects so far), in input order.

    A file reached twice (given twice, or given and found in a directory
    given too) is the same input: it is listed once, where first reached.
    """
    files, rejects, seen = [], [], set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _walk(path, rejects)
        elif path.is_file():
            found = [path]
        elif path.exists():
            found = []
            rejects.append(Reject(str(path), "not a regular file"))
        else:
            found = []
            rejects.append(Reject(str(path), "no such file or directory"))
        files += [path for path in found if _first_sight(path, seen)]
    return files, rejects


def _first_sight(path, seen):
    """True the first time the file at `path` (by device and inode) is met; `seen` records it."""
    identity = _identity(path)
    if identity in seen:
        return False
    seen.add(identity)
    return True


def _identity(path):
    """(device, inode) of the file or directory at `path`, links followed."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


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
                                     f"the plate is read from {winner.files[0]}", "superseded", winner.files[0])
                        for path in group.files]
    return plates


def _walk(directory, rejects):
    """Files under `directory` whose name a format claims, sorted; no file is opened.

    Symbolic links to directories are followed; a directory reached again
    (a link loop, or a second link to it) is not searched again and is
    appended to `rejects`, as are things named like an input that are not
    regular files and directories that cannot be listed.
    """
    found = []
    searched = {_identity(directory): str(directory)}

    def unlistable(err):
        rejects.append(Reject(str(err.filename), f"directory cannot be listed ({err.strerror})"))

    for parent, dirnames, filenames in os.walk(directory, onerror=unlistable, followlinks=True):
        dirnames[:] = [name for name in sorted(dirnames) if _first_search(Path(parent) / name, searched, rejects)]
        for name in sorted(dirnames + filenames):
            if claim_by_name(name) is None:
                continue
            path = Path(parent) / name
            if path.is_file():
                found.append(path)
            else:
                rejects.append(Reject(str(path), "named like an input but not a regular file"))
    return sorted(found)


def _first_search(directory, searched, rejects):
    """True when `directory` is to be searched: not met before in this walk ({(device, inode): path})."""
    try:
        identity = _identity(directory)
    except OSError as err:
        rejects.append(Reject(str(directory), f"directory cannot be listed ({err.strerror})"))
        return False
    if identity in searched:
        rejects.append(Reject(str(directory), f"link to a directory already searched ({searched[identity]}): "
                                              f"not searched again"))
        return False
    searched[identity] = str(directory)
    return True
