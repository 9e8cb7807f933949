"""Write simulated fibers as spec-lite files: spectra/lite/PPPP/spec-PPPP-MMMMM-FFFF.fits.

Real layout: HDU0 header, HDU1 COADD (FLUX, LOGLAM, IVAR, AND_MASK, OR_MASK,
WDISP, SKY, MODEL; upper-case names), HDU2 one-row table (PLATE, MJD,
FIBERID, PLUG_RA, PLUG_DEC, OBJTYPE, THING_ID, CLASS, Z). Pixels outside the
fiber's coverage (NODATA) are trimmed as in real files. MODEL is the noiseless
input spectrum (the simulator's truth, where real files carry the redshift fit).
"""

import os
from pathlib import Path

import fitsio
import numpy as np

from qsopipe.pipeline.constants import CLASS_PERSON
from qsopipe.stages.simulate.noise import NODATA
from qsopipe.stages.simulate.plate_writer import BUNIT

#: CLASS_PERSON code -> the spAll CLASS written for it.
CLASS_NAMES = {CLASS_PERSON["UNKNOWN"]: "", CLASS_PERSON["STAR"]: "STAR", CLASS_PERSON["QSO"]: "QSO",
               CLASS_PERSON["QSO_BAL"]: "QSO", CLASS_PERSON["GALAXY"]: "GALAXY"}
COADD_DTYPE = [("FLUX", "f4"), ("LOGLAM", "f4"), ("IVAR", "f4"), ("AND_MASK", "i4"), ("OR_MASK", "i4"),
               ("WDISP", "f4"), ("SKY", "f4"), ("MODEL", "f4")]
META_DTYPE = [("PLATE", "i4"), ("MJD", "i4"), ("FIBERID", "i4"), ("PLUG_RA", "f8"), ("PLUG_DEC", "f8"),
              ("OBJTYPE", "S16"), ("THING_ID", "i8"), ("BOSS_TARGET1", "i8"), ("ANCILLARY_TARGET1", "i8"),
              ("CLASS", "S6"), ("Z", "f4")]


def spec_path(outdir, plate, mjd, fiberid):
    return Path(outdir) / "spectra" / "lite" / f"{plate:04d}" / f"spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits"


def write_spec_lite(sim, outdir):
    """Write one spec-lite file per fiber of a SimulatedPlate; returns the paths."""
    spectra, plugmap = sim.spectra, sim.plugmap
    paths = []
    for row in range(len(plugmap)):
        fiberid = int(plugmap["FIBERID"][row])
        path = spec_path(outdir, sim.plate, sim.mjd, fiberid)
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = np.flatnonzero((spectra.and_mask[row] >> NODATA) & 1 == 0)
        keep = np.arange(spectra.loglam.size) if keep.size == 0 else np.arange(keep[0], keep[-1] + 1)
        coadd = np.zeros(keep.size, COADD_DTYPE)
        for name, array in (("FLUX", spectra.flux), ("IVAR", spectra.ivar), ("AND_MASK", spectra.and_mask),
                            ("OR_MASK", spectra.or_mask), ("WDISP", spectra.wavedisp), ("SKY", spectra.sky),
                            ("MODEL", spectra.flux_true)):
            coadd[name] = array[row, keep]
        coadd["LOGLAM"] = spectra.loglam[keep]
        truth = spectra.truth[row]
        meta = np.zeros(1, META_DTYPE)
        meta["PLATE"], meta["MJD"], meta["FIBERID"] = sim.plate, sim.mjd, fiberid
        meta["PLUG_RA"], meta["PLUG_DEC"] = plugmap["RA"][row], plugmap["DEC"][row]
        for name in ("OBJTYPE", "THING_ID", "BOSS_TARGET1", "ANCILLARY_TARGET1"):
            meta[name] = plugmap[name][row]
        meta["CLASS"] = CLASS_NAMES[int(truth["CLASS_PERSON"])]
        meta["Z"] = truth["Z_VI"]
        header = [{"name": "PLATEID", "value": sim.plate}, {"name": "MJD", "value": sim.mjd},
                  {"name": "FIBERID", "value": fiberid}, {"name": "COEFF0", "value": round(float(spectra.loglam[keep[0]]), 6)},
                  {"name": "COEFF1", "value": 1e-4}, {"name": "BUNIT", "value": BUNIT},
                  {"name": "SIMULATE", "value": True}]
        tmp = path.with_name(path.name + ".tmp")
        with fitsio.FITS(tmp, "rw", clobber=True) as fits:
            fits.write(None, header=header)
            fits.write(coadd, extname="COADD")
            fits.write(meta, extname="SPALL")
        os.replace(tmp, path)
        paths.append(path)
    return paths
