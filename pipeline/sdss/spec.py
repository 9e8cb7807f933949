"""The spec input format: spec-PPPP-MMMMM-FFFF.fits files (full and lite; BOSS/eBOSS and SDSS-I/II).

HDU1 is the COADD table (loglam, flux, ivar, and_mask; column names in
either case; some files carry no EXTNAME); HDU2 holds the fiber's spAll or
specObj row. A file is a spec file by its content when HDU1 is a binary
table and the HDU0 header has PLATEID, MJD and FIBERID. One file is one
fiber; the spec files of one plate-MJD are read into one Plate so that they
feed the same stages as an spPlate.
"""

import os
import re

import numpy as np

from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.grids import NATIVE_DLOGLAM
from qsopipe.pipeline.ids import check_fiberids
from qsopipe.pipeline.plate import FIBER_COLUMNS, TARGET_COLUMNS, Plate, empty_fibers
from qsopipe.pipeline.sdss.fits_format import FitsFormat
from qsopipe.pipeline.sdss.fitsfile import header_number, open_fits, read_columns

NAME_PATTERN = re.compile(r"spec-(?P<plate>\d{4,})-(?P<mjd>\d{5})-(?P<fiber>\d{4})\.fits(\.gz)?")
COADD_COLUMNS = ("LOGLAM", "FLUX", "IVAR", "AND_MASK")
#: PIPE_COLUMNS -> the HDU2 (spAll / specObj) column each is read from.
PIPE_SOURCES = {"Z_PIPE": "Z", "ZERR_PIPE": "Z_ERR", "ZWARNING_PIPE": "ZWARNING", "CLASS_PIPE": "CLASS"}
_META_WANTED = ("PLATE", "MJD", "FIBERID", "THING_ID", "PLUG_RA", "PLUG_DEC", "OBJTYPE", *TARGET_COLUMNS,
                *PIPE_SOURCES.values())
#: Largest misalignment, in native pixels, still treated as the same 1e-4 grid.
_GRID_TOLERANCE = 0.05


def read_spec(path):
    """Read one spec file into a one-fiber Plate (loglam of shape (npix,))."""
    path = os.fspath(path)
    with open_fits(path) as fits:
        _check_coadd_hdu(path, fits)
        coadd = read_columns(fits[1], COADD_COLUMNS)
        missing = [name for name in COADD_COLUMNS if name not in coadd]
        if missing:
            raise InputError(path, f"HDU1 COADD table lacks column(s) {', '.join(missing)}")
        header = fits[0].read_header()
        meta = {}
        if len(fits) > 2 and fits[2].get_exttype() == "BINARY_TBL" and fits[2].get_nrows() > 0:
            meta = {name: values[0] for name, values in read_columns(fits[2], _META_WANTED, rows=[0]).items()}
    fibers = empty_fibers(1)
    plate, mjd, fiber = _ids(path, header, meta)
    check_fiberids(path, [fiber])
    fibers["PLATE"], fibers["MJD"], fibers["FIBERID"] = plate, mjd, fiber
    fibers["RA"] = meta.get("PLUG_RA", header.get("PLUG_RA", np.nan))
    fibers["DEC"] = meta.get("PLUG_DEC", header.get("PLUG_DEC", np.nan))
    copied = {name: name for name in ("OBJTYPE", "THING_ID", *TARGET_COLUMNS)} | PIPE_SOURCES
    for name, source in copied.items():
        if source in meta:
            value = meta[source]
            fibers[name] = str(value).strip() if FIBER_COLUMNS[name].startswith("U") else value
    loglam = coadd["LOGLAM"].astype(np.float64)
    if loglam.size == 0:
        raise InputError(path, "COADD table has no pixels")
    loglam = _exact_grid(path, header, loglam)
    return Plate(
        plate=int(fibers["PLATE"][0]), mjd=int(fibers["MJD"][0]), fibers=fibers, loglam=loglam,
        flux=coadd["FLUX"].astype(np.float32)[None, :],
        ivar=coadd["IVAR"].astype(np.float32)[None, :],
        and_mask=coadd["AND_MASK"].astype(np.int32)[None, :],
        sources=[path],
    )


def _exact_grid(path, header, loglam):
    """COEFF0 + COEFF1 * i in float64 when the header grid matches the (float32) column, else the column."""
    if "COEFF0" not in header or "COEFF1" not in header:
        return loglam
    exact = header_number(path, header, "COEFF0") + header_number(path, header, "COEFF1") * np.arange(loglam.size)
    return exact if np.all(np.abs(exact - loglam) < 1e-5) else loglam


def _check_coadd_hdu(path, fits):
    if len(fits) < 2 or fits[1].get_exttype() != "BINARY_TBL":
        raise InputError(path, "no COADD binary table in HDU1")


def _ids(path, header, meta):
    """(plate, mjd, fiber) from HDU2's row `meta`, else the HDU0 header, else the file name; all must agree."""
    named = FORMAT.claim_name(os.path.basename(path))
    from_name = named.key if named else (None, None, None)
    plate = meta.get("PLATE", header_number(path, header, "PLATEID", int, default=from_name[0]))
    mjd = meta.get("MJD", header_number(path, header, "MJD", int, default=from_name[1]))
    fiber = meta.get("FIBERID", header_number(path, header, "FIBERID", int, default=from_name[2]))
    if plate is None or mjd is None or fiber is None:
        raise InputError(path, "no PLATE/MJD/FIBERID in HDU2, the HDU0 header or the file name")
    ids = int(plate), int(mjd), int(fiber)
    if named and ids != from_name:
        raise InputError(path, f"PLATE-MJD-FIBERID {ids[0]:04d}-{ids[1]:05d}-{ids[2]:04d} (HDU2 or header) "
                               f"disagrees with the file name")
    return ids


def read_spec_plate(paths, skipped=None):
    """Read the spec files of one plate-MJD into one Plate, fibers sorted by FIBERID.

    Spectra whose first pixels sit on one 1e-4 log-lambda grid share a single
    loglam row (padded with ivar = 0); otherwise each fiber keeps its own row.
    Raises InputError for the first unreadable file or mixed plate-MJDs,
    unless `skipped` is a dict: then each unreadable file is left out and
    recorded in it (path -> the InputError's message, which starts with the
    path), and InputError is raised only when no file is readable.
    """
    if not paths:
        raise ValueError("read_spec_plate needs at least one file")
    spectra, errors = [], []
    for path in paths:
        try:
            spectra.append(read_spec(path))
        except InputError as err:
            if skipped is None:
                raise
            errors.append(err)
            skipped[err.path] = str(err)
    if not spectra:
        raise InputError(errors[0].path, f"{errors[0].reason}; none of the plate's {len(paths)} spec file(s) "
                                         f"is readable")
    names = {spec.name for spec in spectra}
    if len(names) > 1:
        raise InputError(paths[0], f"spec files of different plate-MJDs grouped together: {sorted(names)}")
    spectra.sort(key=lambda spec: int(spec.fibers["FIBERID"][0]))
    starts = np.array([spec.loglam[0] for spec in spectra])
    offsets = (starts - starts.min()) / NATIVE_DLOGLAM
    steps_native = all(np.allclose(np.diff(spec.loglam), NATIVE_DLOGLAM, atol=1e-7) for spec in spectra)
    aligned = steps_native and np.all(np.abs(offsets - np.round(offsets)) < _GRID_TOLERANCE)
    offsets = np.round(offsets).astype(int) if aligned else np.zeros(len(spectra), int)
    npix = max(off + spec.loglam.size for off, spec in zip(offsets, spectra))
    flux = np.zeros((len(spectra), npix), np.float32)
    ivar = np.zeros_like(flux)
    and_mask = np.zeros((len(spectra), npix), np.int32)
    loglam = starts.min() + NATIVE_DLOGLAM * np.arange(npix) if aligned else np.empty((len(spectra), npix))
    for row, (off, spec) in enumerate(zip(offsets, spectra)):
        cut = slice(off, off + spec.loglam.size)
        flux[row, cut], ivar[row, cut], and_mask[row, cut] = spec.flux[0], spec.ivar[0], spec.and_mask[0]
        if not aligned:
            loglam[row] = spec.loglam[0] + NATIVE_DLOGLAM * np.arange(npix)
            loglam[row, : spec.loglam.size] = spec.loglam
    return Plate(
        plate=spectra[0].plate, mjd=spectra[0].mjd,
        fibers=np.concatenate([spec.fibers for spec in spectra]),
        loglam=loglam, flux=flux, ivar=ivar, and_mask=and_mask,
        sources=[spec.sources[0] for spec in spectra],
    )


class SpecFormat(FitsFormat):
    """spec files, full or lite: one file holds one fiber; a plate unit is the spec files of one plate-MJD."""

    label = "spec"
    name_template = "spec-PPPP-MMMMM-FFFF.fits"
    name_pattern = NAME_PATTERN

    def content_key(self, path, fits):
        """(plate, mjd, fiber) when HDU1 is a binary table and the HDU0 header has PLATEID/MJD/FIBERID."""
        _check_coadd_hdu(path, fits)
        return _ids(path, fits[0].read_header(), {})

    def read(self, paths, skipped=None):
        """The spec files `paths` as one Plate; see `read_spec_plate`."""
        return read_spec_plate(paths, skipped)


FORMAT = SpecFormat()
