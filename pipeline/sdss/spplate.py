"""The spPlate input format: spPlate-PPPP-MMMMM.fits files (SDSS data model, BOSS/eBOSS and SDSS-I/II).

HDU0 FLUX, HDU1 IVAR, HDU2 ANDMASK, HDU3 ORMASK, HDU4 WAVEDISP, HDU5 PLUGMAP,
HDU6 SKY; log10 wavelength of pixel i is COEFF0 + COEFF1 * i (HDU0 header).
A file is an spPlate by its content when HDU0 is a 2-d image whose header
has COEFF0, COEFF1, PLATEID and MJD. One file is one plate unit.
"""

import os
import re

import numpy as np

from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.plate import FIBER_COLUMNS, TARGET_COLUMNS, Plate, empty_fibers
from qsopipe.pipeline.sdss.fits_format import FitsFormat
from qsopipe.pipeline.sdss.fitsfile import open_fits, read_columns

SPPLATE_HDUS = ("FLUX", "IVAR", "ANDMASK", "ORMASK", "WAVEDISP", "PLUGMAP", "SKY")
REQUIRED_HDUS = (0, 1, 2, 5)
NAME_PATTERN = re.compile(r"spPlate-(?P<plate>\d{4,})-(?P<mjd>\d{5})(-[^.]*)?\.fits(\.gz)?")

#: Wavelength range the SDSS/BOSS spectrographs cover, Angstrom.
SPECTROGRAPH_RANGE = (3600.0, 10400.0)

_PLUGMAP_WANTED = ("FIBERID", "RA", "DEC", "OBJTYPE", "THING_ID", *TARGET_COLUMNS)


def read_spplate(path):
    """Read one spPlate file into a Plate; any defect raises InputError naming the file."""
    path = os.fspath(path)
    with open_fits(path) as fits:
        plate, mjd, coeff0, coeff1 = _primary_header(path, fits[0].read_header())
        missing = [f"HDU{i} {SPPLATE_HDUS[i]}" for i in REQUIRED_HDUS if i >= len(fits)]
        if missing:
            raise InputError(path, f"spPlate has {len(fits)} HDU(s); missing {', '.join(missing)} "
                                   f"(truncated or incomplete file)")
        flux = _image(path, fits, 0)
        nfiber, npix = flux.shape
        ivar = _image(path, fits, 1, expect=flux.shape)
        and_mask = _image(path, fits, 2, expect=flux.shape)
        if fits[5].get_exttype() != "BINARY_TBL":
            raise InputError(path, "HDU5 PLUGMAP is not a binary table")
        nrows = fits[5].get_nrows()
        if nrows != nfiber:
            raise InputError(path, f"HDU5 PLUGMAP has {nrows} rows but the image has {nfiber} fibers")
        plugmap = read_columns(fits[5], _PLUGMAP_WANTED)
    loglam = coeff0 + coeff1 * np.arange(npix)
    _check_coverage(path, loglam)
    fibers = empty_fibers(nfiber)
    fibers["PLATE"] = plate
    fibers["MJD"] = mjd
    fibers["FIBERID"] = plugmap.get("FIBERID", np.arange(1, nfiber + 1))
    for name, values in plugmap.items():
        if name != "FIBERID":
            fibers[name] = _as_column(name, values)
    if len(np.unique(fibers["FIBERID"])) != nfiber:
        raise InputError(path, "HDU5 PLUGMAP lists the same FIBERID more than once")
    order = np.argsort(fibers["FIBERID"], kind="stable")
    if np.array_equal(order, np.arange(nfiber)):
        order = slice(None)  # already by FIBERID, as spPlate files are: no copy of the images
    return Plate(
        plate=plate, mjd=mjd, fibers=fibers[order], loglam=loglam,
        flux=flux[order].astype(np.float32, copy=False),
        ivar=ivar[order].astype(np.float32, copy=False),
        and_mask=and_mask[order].astype(np.int32, copy=False),
        sources=[path],
    )


def _primary_header(path, header):
    """(plate, mjd, coeff0, coeff1) from HDU0's header; InputError when it is not an spPlate's."""
    naxis = header.get("NAXIS", 0)
    if naxis != 2:
        raise InputError(path, f"HDU0 is not the 2-d FLUX image of an spPlate (NAXIS = {naxis})")
    plate, mjd = _plate_mjd(path, header)
    return plate, mjd, *_coefficients(path, header)


def _plate_mjd(path, header):
    named = FORMAT.claim_name(os.path.basename(path))
    plate = header.get("PLATEID", named.plate if named else None)
    mjd = header.get("MJD", named.mjd if named else None)
    if plate is None or mjd is None:
        raise InputError(path, "no PLATEID/MJD in the HDU0 header and none in the file name")
    if named and (int(plate), int(mjd)) != named.unit:
        raise InputError(path, f"HDU0 header PLATEID-MJD {int(plate):04d}-{int(mjd):05d} disagrees with "
                               f"the file name ({FORMAT.unit_name(*named.unit)})")
    return int(plate), int(mjd)


def _coefficients(path, header):
    if "COEFF0" not in header or "COEFF1" not in header:
        raise InputError(path, "HDU0 header lacks COEFF0/COEFF1 (the log-lambda grid)")
    coeff0, coeff1 = float(header["COEFF0"]), float(header["COEFF1"])
    if not coeff1 > 0:
        raise InputError(path, f"COEFF1 = {coeff1} is not a positive log-lambda step")
    return coeff0, coeff1


def _image(path, fits, index, expect=None):
    hdu = fits[index]
    name = f"HDU{index} {SPPLATE_HDUS[index]}"
    if hdu.get_exttype() != "IMAGE_HDU" or len(hdu.get_dims()) != 2:
        raise InputError(path, f"{name} is not a 2-d image")
    if expect is not None and tuple(hdu.get_dims()) != tuple(expect):
        raise InputError(path, f"{name} has shape {tuple(hdu.get_dims())}, HDU0 FLUX has {tuple(expect)}")
    return hdu.read()


def _check_coverage(path, loglam):
    low, high = 10 ** loglam[0], 10 ** loglam[-1]
    if high < SPECTROGRAPH_RANGE[0] or low > SPECTROGRAPH_RANGE[1]:
        raise InputError(path, f"wavelength grid {low:.0f}-{high:.0f} A lies outside "
                               f"{SPECTROGRAPH_RANGE[0]:.0f}-{SPECTROGRAPH_RANGE[1]:.0f} A")


def _as_column(name, values):
    if FIBER_COLUMNS[name].startswith("U"):
        return np.char.strip(np.asarray(values).astype(str))
    return values


class SpPlateFormat(FitsFormat):
    """spPlate files: one file holds a whole plate-MJD."""

    label = "spPlate"
    name_template = "spPlate-PPPP-MMMMM.fits"
    name_pattern = NAME_PATTERN

    def content_key(self, path, fits):
        """(plate, mjd) when HDU0 is a 2-d image with COEFF0/COEFF1 and PLATEID/MJD in its header."""
        return _primary_header(path, fits[0].read_header())[:2]

    def read(self, paths, skipped=None):
        """The one spPlate of `paths` as a Plate (`skipped` is unused: a single file reads or raises)."""
        (path,) = paths
        return read_spplate(path)


FORMAT = SpPlateFormat()
