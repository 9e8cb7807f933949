"""Input discovery: files, directories searched recursively, BOSS_SPECTRO_REDUX trees.

Every input becomes a PlateInput (one plate-MJD, read either from one
spPlate or from its spec files). Nothing found is dropped silently: files
that cannot be an input, directories that cannot be listed, and plate-MJDs
(or spec fibers) given twice come back as rejects with a reason.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SPPLATE_RE = re.compile(r"^spPlate-(\d{4,})-(\d{5})(-[^.]*)?\.fits(\.gz)?$")
SPEC_RE = re.compile(r"^spec-(\d{4,})-(\d{5})-(\d{4})\.fits(\.gz)?$")


@dataclass
class PlateInput:
    """One plate-MJD to process: kind is 'spplate' or 'spec'."""

    plate: int
    mjd: int
    kind: str
    files: list = field(default_factory=list)

    @property
    def name(self):
        return f"{self.plate:04d}-{self.mjd:05d}"


@dataclass
class Reject:
    """An input file that will not be processed, and why."""

    path: str
    reason: str


def discover(inputs):
    """Find the plates under `inputs` (files or directories).

    Returns (plates, rejects): plates sorted by (plate, mjd); rejects lists
    files that match no SDSS name pattern, things named like an input that
    are not regular files, directories that cannot be listed, and inputs
    seen twice: an spPlate wins over spec files of the same plate-MJD (each
    skipped spec file is named), the first spPlate found wins over later
    copies, the first spec file of a plate-MJD-fiber over later copies.
    """
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
    spplates, specs, spec_fibers = {}, {}, {}
    for path in files:
        name = path.name
        if match := SPPLATE_RE.match(name):
            key = (int(match.group(1)), int(match.group(2)))
            if key in spplates:
                rejects.append(Reject(str(path), f"duplicate of {spplates[key].files[0]} (same plate-MJD)"))
            else:
                spplates[key] = PlateInput(*key, "spplate", [str(path)])
        elif match := SPEC_RE.match(name):
            key = (int(match.group(1)), int(match.group(2)))
            fiber = (*key, int(match.group(3)))
            if fiber in spec_fibers:
                rejects.append(Reject(str(path), f"duplicate of {spec_fibers[fiber]} (same plate-MJD-fiber)"))
                continue
            spec_fibers[fiber] = str(path)
            specs.setdefault(key, PlateInput(*key, "spec")).files.append(str(path))
        else:
            rejects.append(Reject(str(path), "file name is neither spPlate-PPPP-MMMMM.fits "
                                             "nor spec-PPPP-MMMMM-FFFF.fits"))
    for key, group in specs.items():
        if key in spplates:
            rejects += [Reject(path, f"spec file of plate-MJD {group.name} skipped: "
                                     f"the plate is read from {spplates[key].files[0]}") for path in group.files]
        else:
            spplates[key] = group
    return [spplates[key] for key in sorted(spplates)], rejects


def _walk(directory, rejects):
    """Files under `directory` named like an input, sorted.

    Things so named that are not regular files, and directories that cannot
    be listed, are appended to `rejects`.
    """
    found = []

    def unlistable(err):
        rejects.append(Reject(str(err.filename), f"directory cannot be listed ({err.strerror})"))

    for parent, dirnames, filenames in os.walk(directory, onerror=unlistable):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            if not (SPPLATE_RE.match(name) or SPEC_RE.match(name)):
                continue
            path = Path(parent) / name
            if path.is_file():
                found.append(path)
            else:
                rejects.append(Reject(str(path), "named like an input but not a regular file"))
    return sorted(found)
