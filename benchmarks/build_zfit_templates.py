"""Rebuild stages/templates/qso_templates.npz from the redrock-templates QSO files.

    python benchmarks/build_zfit_templates.py [--source ../shared/data/templates]

Reads rrtemplate-QSO-LOZ-v1.1.fits and rrtemplate-QSO-HIZ-v1.1.fits (HDU
BASIS_VECTORS: (4, n) eigenspectra on log10(lambda_rest) = CRVAL1 + CDELT1 k;
HDU REDSHIFTS: the redshifts the template was built for), resamples each
eigenspectrum with a cubic spline onto the rest-frame grid in phase with the
MgII grid, log10(lambda_rest) = log10(3800) + 1e-4 k for integer k (so a
redshift log10(1+z) = 1e-4 j is a shift by j whole pixels), and writes, per
template NAME (LOZ, HIZ): NAME_basis (4, nrest) float32, NAME_kmin (the k
of its first pixel), NAME_zrange ([min, max] of REDSHIFTS); plus
`provenance` (JSON: source files, their SHA-256 and header versions). It
copies the licence to stages/templates/LICENSE.md.
"""

import json
import shutil
from pathlib import Path

import fitsio
import numpy as np
from scipy.interpolate import make_interp_spline

from qsopipe.pipeline import grids
from redrock_source import file_provenance, source_arguments

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "stages" / "templates" / "qso_templates.npz"
SOURCES = {"LOZ": "rrtemplate-QSO-LOZ-v1.1.fits", "HIZ": "rrtemplate-QSO-HIZ-v1.1.fits"}


def resample_onto_grid(basis, loglam_start, dloglam):
    """Eigenspectra (nbasis, n) on log10 grid loglam_start + dloglam t, resampled onto the MgII-phase grid.

    Returns (basis float32 (nbasis, nrest), kmin): pixel m of the result sits
    at log10(lambda_rest) = MGII_LOGLAM_MIN + MGII_DLOGLAM (kmin + m), every
    pixel inside the original range.
    """
    loglam = loglam_start + dloglam * np.arange(basis.shape[1])
    kmin = int(np.ceil((loglam[0] - grids.MGII_LOGLAM_MIN) / grids.MGII_DLOGLAM - 1e-9))
    kmax = int(np.floor((loglam[-1] - grids.MGII_LOGLAM_MIN) / grids.MGII_DLOGLAM + 1e-9))
    target = grids.MGII_LOGLAM_MIN + grids.MGII_DLOGLAM * np.arange(kmin, kmax + 1)
    spline = make_interp_spline(loglam, basis, k=3, axis=1)
    return spline(target).astype(np.float32), kmin


def read_template(path):
    """(basis (nbasis, n) float64, header, redshifts) of a redrock template file."""
    with fitsio.FITS(str(path)) as fits:
        header = fits["BASIS_VECTORS"].read_header()
        return fits["BASIS_VECTORS"].read(), header, fits["REDSHIFTS"].read()


def build(source):
    """The arrays of qso_templates.npz, built from the files in `source`."""
    arrays, provenance = {}, {"grid": {"loglam_min": grids.MGII_LOGLAM_MIN, "dloglam": grids.MGII_DLOGLAM},
                              "resampling": "cubic spline in log10(lambda)", "files": {}}
    for name, filename in SOURCES.items():
        path = Path(source) / filename
        basis, header, redshifts = read_template(path)
        arrays[f"{name}_basis"], arrays[f"{name}_kmin"] = resample_onto_grid(
            basis, header["CRVAL1"], header["CDELT1"])
        arrays[f"{name}_zrange"] = np.array([redshifts.min(), redshifts.max()])
        provenance["files"][name] = file_provenance(path, header, basis)
    arrays["provenance"] = np.array(json.dumps(provenance))
    return arrays


def main():
    args = source_arguments(__doc__.splitlines()[0], OUTPUT)
    np.savez_compressed(args.out, **build(args.source))
    shutil.copyfile(Path(args.source) / "LICENSE.md", Path(args.out).parent / "LICENSE.md")
    print(f"{args.out}: {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
