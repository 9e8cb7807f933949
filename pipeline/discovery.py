"""Input discovery: files, directories searched recursively, BOSS_SPECTRO_REDUX trees.

Every input becomes a PlateInput (one plate-MJD, read either from one
spPlate or from its spec files). Nothing found is dropped silently: files
that cannot be an input and plate-MJDs given twice come back as rejects with
a reason.
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
    files that match no SDSS name pattern and plate-MJDs seen twice (an
    spPlate wins over spec files of the same plate-MJD; the first spPlate
    found wins over later copies).
    """
    files, rejects = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()
                                and (SPPLATE_RE.match(p.name) or SPEC_RE.match(p.name))))
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            rejects.append(Reject(str(path), "no such file or directory"))
    spplates, specs = {}, {}
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
            specs.setdefault(key, PlateInput(*key, "spec")).files.append(str(path))
        else:
            rejects.append(Reject(str(path), "file name is neither spPlate-PPPP-MMMMM.fits "
                                             "nor spec-PPPP-MMMMM-FFFF.fits"))
    for key, group in specs.items():
        if key in spplates:
            rejects.append(Reject(os.path.dirname(group.files[0]),
                                  f"{len(group.files)} spec file(s) of plate-MJD {group.name} skipped: "
                                  f"the plate is read from {spplates[key].files[0]}"))
        else:
            spplates[key] = group
    return [spplates[key] for key in sorted(spplates)], rejects

