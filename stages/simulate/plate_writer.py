"""Write a SimulatedPlate as spPlate-PPPP-MMMMM.fits (SDSS data model, 7 HDUs).

HDU0 FLUX (primary, no EXTNAME, as in real files), HDU1 IVAR, HDU2 ANDMASK,
HDU3 ORMASK, HDU4 WAVEDISP (float32/int32 images, (nfiber, npix)), HDU5 PLUGMAP
(binary table), HDU6 SKY, extensions named by EXTNAME. The log-lambda
grid sits in the HDU0 header (COEFF0, COEFF1). Written to a temporary name and
renamed; no timestamps, so the same plate gives the same bytes.
"""

import os
from pathlib import Path

import fitsio
import numpy as np

from qsopipe.pipeline import __version__
from qsopipe.pipeline.grids import NATIVE_DLOGLAM

BUNIT = "1E-17 erg/cm^2/s/Ang"


def spplate_path(outdir, plate, mjd):
    """DIR/spectra/PPPP/spPlate-PPPP-MMMMM.fits."""
    return Path(outdir) / "spectra" / f"{plate:04d}" / f"spPlate-{plate:04d}-{mjd:05d}.fits"


def primary_header(sim):
    """HDU0 keywords of a simulated plate, as (name, value, comment) records."""
    loglam = sim.spectra.loglam
    return [
        {"name": "TELESCOP", "value": "SDSS 2.5-M", "comment": "Sloan Digital Sky Survey (simulated)"},
        {"name": "FLAVOR", "value": "science", "comment": "exposure type, SDSS spectro style"},
        {"name": "PLATEID", "value": sim.plate, "comment": "The currently loaded plate"},
        {"name": "MJD", "value": sim.mjd, "comment": "APO fMJD day at start of exposure"},
        {"name": "NAME", "value": f"{sim.plate:04d}-{sim.mjd:05d}-01", "comment": "plate-MJD-mapping"},
        {"name": "NEXP", "value": 4, "comment": "Number of exposures in this file"},
        {"name": "EXPTIME", "value": 3600.0, "comment": "Minimum of exposure times for all cameras"},
        {"name": "VACUUM", "value": True, "comment": "Wavelengths are in vacuum"},
        {"name": "NWORDER", "value": 2, "comment": "Linear-log10 coefficients"},
        {"name": "WFITTYPE", "value": "LOG-LINEAR", "comment": "Linear-log10 dispersion"},
        {"name": "COEFF0", "value": round(float(loglam[0]), 6), "comment": "Central wavelength (log10) of first pixel"},
        {"name": "COEFF1", "value": NATIVE_DLOGLAM, "comment": "Log10 dispersion per pixel"},
        {"name": "CRVAL1", "value": round(float(loglam[0]), 6), "comment": "Central wavelength (log10) of first pixel"},
        {"name": "CD1_1", "value": NATIVE_DLOGLAM, "comment": "Log10 dispersion per pixel"},
        {"name": "CRPIX1", "value": 1, "comment": "Starting pixel (1-indexed)"},
        {"name": "CTYPE1", "value": "LINEAR", "comment": ""},
        {"name": "DC-FLAG", "value": 1, "comment": "Log-linear flag"},
        {"name": "BUNIT", "value": BUNIT, "comment": ""},
        {"name": "SIMULATE", "value": True, "comment": "Simulated by qsopipe simulate"},
        {"name": "QSOPIPEV", "value": __version__, "comment": "qsopipe version"},
    ]


def write_spplate(sim, outdir):
    """Write the plate under outdir/spectra/PPPP/; returns the path."""
    path = spplate_path(outdir, sim.plate, sim.mjd)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    spectra = sim.spectra
    with fitsio.FITS(tmp, "rw", clobber=True) as fits:
        fits.write(np.ascontiguousarray(spectra.flux, np.float32), header=primary_header(sim))
        fits.write(np.ascontiguousarray(spectra.ivar, np.float32), extname="IVAR", header={"BUNIT": "1/(" + BUNIT + ")^2"})
        fits.write(np.ascontiguousarray(spectra.and_mask, np.int32), extname="ANDMASK")
        fits.write(np.ascontiguousarray(spectra.or_mask, np.int32), extname="ORMASK")
        fits.write(np.ascontiguousarray(spectra.wavedisp, np.float32), extname="WAVEDISP", header={"BUNIT": "pixel"})
        fits.write(sim.plugmap, extname="PLUGMAP")
        fits.write(np.ascontiguousarray(spectra.sky, np.float32), extname="SKY", header={"BUNIT": BUNIT})
    os.replace(tmp, path)
    return path
