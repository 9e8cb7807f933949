"""Rebuild stages/templates/star_archetypes.npz from the redrock-templates star files.

    python benchmarks/build_star_templates.py [--source ../shared/data/templates]

Reads rrtemplate-STAR-{A,B,F,G,K,M,WD}-v0.1.fits (HDU BASIS_VECTORS: 5
unit-norm eigenspectra on a linear rest-frame vacuum grid CRVAL1 + CDELT1 t,
3000-11000 A at 0.1 A; HDU ARCHETYPE_COEFF: one row of 5 coefficients per
archetype, archetype = coefficients x eigenspectra) and rrtemplate-STAR-CV-v0.1.fits
(3 eigenspectra of SDSS cataclysmic-variable spectra, no archetypes).

For each type the eigenspectra are put on the spPlate-phase grid
log10(lambda) = COEFF0 + COEFF1 (KMIN + m), m = 0 .. NT-1, which covers the
spPlate pixels and MARGIN_PIX more on each side (room for radial velocities up
to RV_MAX_KMS). The finely resolved types (A-WD, native resolution <= NATIVE_SIGMA_KMS)
are first convolved, on a grid SUBSAMPLE times finer, with a Gaussian of
constant velocity width so that their line-spread sigma is SIGMA_PX pixels of
COEFF1; the CV eigenspectra are observed SDSS spectra, already at the
instrument's resolution, and are only resampled (linear interpolation).

Archetypes whose flux dips below -MAX_NEGATIVE times their mean flux over
5500-6900 A anywhere on the spPlate range are dropped (the 5-vector
reconstruction overshoots deep CaII H&K cores and the blue ends of cool
stars); of the rest, N_KEEP per type are kept, spread evenly in rank of the
g/i flux ratio (a temperature proxy; for WD, DA_SHARE of them among the DA
archetypes and the rest among the DB), and rescaled to unit mean flux over
5500-6900 A. The eigenspectra are scaled to order-1 values (and the first one
flipped where the originals use a negative first coefficient, as for M), and
the CV eigenspectra to a first vector of unit mean flux over 5500-6900 A.

Writes: `types`, `kmin`, `sigma_px`, `observed` (per type: True for CV, kept
at its observed resolution), NAME_basis (nbasis, NT) float32, NAME_coeff
(N_KEEP, 5) float32 for the archetype types, and `provenance` (JSON: source
files with SHA-256 and header versions, the grid, the kernel, the selection
and its counts).
"""

import json
from pathlib import Path

import fitsio
import numpy as np
from scipy.ndimage import gaussian_filter1d

from qsopipe.pipeline.constants import SPEED_OF_LIGHT_KMS
from qsopipe.stages.simulate.grid import COEFF0, COEFF1, NPIX
from redrock_source import file_provenance, source_arguments

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "stages" / "templates" / "star_archetypes.npz"
ARCHETYPE_TYPES = ("A", "B", "F", "G", "K", "M", "WD")
OBSERVED_TYPES = ("CV",)
#: Radial velocities the margin must allow (km/s), and the margin in grid pixels.
RV_MAX_KMS = 600.0
MARGIN_PIX = int(np.ceil(np.log10(1.0 + RV_MAX_KMS / SPEED_OF_LIGHT_KMS) / COEFF1)) + 3
#: Line-spread sigma of the shipped A-WD eigenspectra, in COEFF1 pixels (41 km/s).
SIGMA_PX = 0.6
#: Native line-spread sigma of the A-WD eigenspectra: an upper bound, from the
#: autocorrelation width of their metal-line forest at 4400-6500 A.
NATIVE_SIGMA_KMS = 16.0
#: The convolution runs on a grid this many times finer than COEFF1.
SUBSAMPLE = 20
#: Archetypes dipping below -MAX_NEGATIVE x their 5500-6900 A mean flux are dropped.
MAX_NEGATIVE = 0.02
#: Archetypes kept per type.
N_KEEP = 400
R_BAND = (5500.0, 6900.0)
G_BAND, I_BAND = (4000.0, 5500.0), (6900.0, 8400.0)
#: White dwarfs: DA archetypes have an H-beta core below DA_HBETA_DEPTH of the continuum
#: at HBETA_CONTINUUM (A); the originals hold 53% DA and 47% DB, the kept set DA_SHARE DA
#: (DA outnumber DB several times over among SDSS white dwarfs, Kleinman et al. 2013).
HBETA = 4862.7
HBETA_CONTINUUM = ((4700.0, 4730.0), (5010.0, 5040.0))
DA_HBETA_DEPTH = 0.9
DA_SHARE = 0.8


def grid_k():
    """Integer k of the shipped grid pixels: log10(lambda) = COEFF0 + COEFF1 k, shape (NT,)."""
    return np.arange(-MARGIN_PIX, NPIX + MARGIN_PIX)


def read_template(path):
    """(eigenspectra (nbasis, n) float64, rest vacuum wavelengths (n,) A, coefficients or None, header)."""
    with fitsio.FITS(str(path)) as fits:
        header = fits["BASIS_VECTORS"].read_header()
        basis = fits["BASIS_VECTORS"].read()
        coeff = fits["ARCHETYPE_COEFF"].read() if "ARCHETYPE_COEFF" in fits else None
    wave = header["CRVAL1"] + header["CDELT1"] * np.arange(basis.shape[1])
    return basis, wave, coeff, header


def kernel_px():
    """Sigma (COEFF1 pixels) of the Gaussian that takes the native resolution to SIGMA_PX."""
    pixel_kms = SPEED_OF_LIGHT_KMS * np.log(10.0) * COEFF1
    return float(np.sqrt(SIGMA_PX**2 - (NATIVE_SIGMA_KMS / pixel_kms) ** 2))


def convolve_onto_grid(basis, wave, sigma_px):
    """Eigenspectra (nbasis, n) on `wave` (A) convolved by sigma_px COEFF1 pixels, sampled on grid_k(): (nbasis, NT)."""
    k = grid_k()
    pad = int(np.ceil(5 * sigma_px)) + 1
    fine = COEFF0 + COEFF1 * np.arange((k[0] - pad) * SUBSAMPLE, (k[-1] + pad) * SUBSAMPLE + 1) / SUBSAMPLE
    sampled = np.array([np.interp(10.0**fine, wave, vector) for vector in basis])
    smooth = gaussian_filter1d(sampled, sigma_px * SUBSAMPLE, axis=1, truncate=5.0)
    return smooth[:, pad * SUBSAMPLE:smooth.shape[1] - pad * SUBSAMPLE:SUBSAMPLE]


def resample_onto_grid(basis, wave):
    """Eigenspectra (nbasis, n) on `wave` (A) linearly interpolated onto grid_k(): (nbasis, NT)."""
    target = 10.0 ** (COEFF0 + COEFF1 * grid_k())
    return np.array([np.interp(target, wave, vector) for vector in basis])


def band_mean(flux, band):
    """Mean of flux (..., NT) over rest wavelengths inside band (A)."""
    wave = 10.0 ** (COEFF0 + COEFF1 * grid_k())
    return flux[..., (wave >= band[0]) & (wave < band[1])].mean(axis=-1)


def archetype_properties(basis, coeff, chunk=2000):
    """Per archetype (narch,): accepted by the positivity cut, G_BAND / I_BAND flux ratio, H-beta core depth.

    basis (nbasis, NT) on grid_k(), coeff (narch, nbasis). An archetype is
    accepted when its flux on the spPlate pixels stays above -MAX_NEGATIVE
    times its R_BAND mean. The H-beta depth is the mean flux within 3 A of
    the line over the mean of HBETA_CONTINUUM.
    """
    inside = (grid_k() >= 0) & (grid_k() < NPIX)
    accepted, colour, hbeta = [], [], []
    for start in range(0, coeff.shape[0], chunk):
        flux = coeff[start:start + chunk] @ basis
        level = band_mean(flux, R_BAND)
        accepted.append((level > 0) & (flux[:, inside].min(axis=1) >= -MAX_NEGATIVE * level))
        colour.append(band_mean(flux, G_BAND) / band_mean(flux, I_BAND))
        continuum = np.mean([band_mean(flux, window) for window in HBETA_CONTINUUM], axis=0)
        hbeta.append(band_mean(flux, (HBETA - 3.0, HBETA + 3.0)) / continuum)
    return np.concatenate(accepted), np.concatenate(colour), np.concatenate(hbeta)


def spread_in_rank(candidates, colour, n_keep):
    """n_keep of the indices `candidates`, evenly spread in rank of colour[candidates]; sorted."""
    ranked = candidates[np.argsort(colour[candidates], kind="stable")]
    picks = ((np.arange(n_keep) + 0.5) * ranked.size / n_keep).astype(np.int64)
    return np.sort(ranked[picks])


def select_archetypes(name, basis, coeff):
    """Indices of the kept archetypes of type `name` and the count accepted by the positivity cut.

    N_KEEP accepted archetypes spread evenly in rank of their G_BAND / I_BAND
    ratio; for WD, DA_SHARE of them among the DA archetypes (H-beta core depth
    below DA_HBETA_DEPTH) and the rest among the others (DB, helium lines).
    """
    accepted, colour, hbeta = archetype_properties(basis, coeff)
    if name != "WD":
        return spread_in_rank(np.flatnonzero(accepted), colour, N_KEEP), int(accepted.sum())
    n_da = int(round(DA_SHARE * N_KEEP))
    da = spread_in_rank(np.flatnonzero(accepted & (hbeta < DA_HBETA_DEPTH)), colour, n_da)
    other = spread_in_rank(np.flatnonzero(accepted & (hbeta >= DA_HBETA_DEPTH)), colour, N_KEEP - n_da)
    return np.sort(np.concatenate([da, other])), int(accepted.sum())


def archetype_arrays(basis, coeff):
    """Order-1 eigenspectra (nbasis, NT) float32 and unit-R_BAND coefficients (narch, nbasis) float32."""
    sign = np.ones(basis.shape[0])
    sign[0] = -1.0 if np.mean(coeff[:, 0]) < 0 else 1.0
    basis, coeff = basis * sign[:, None], coeff * sign[None, :]
    level = band_mean(coeff @ basis, R_BAND)
    scale = np.median(level)
    return (basis / scale).astype(np.float32), (coeff * scale / level[:, None]).astype(np.float32)


def build(source):
    """The arrays of star_archetypes.npz, built from the files in `source`."""
    types = ARCHETYPE_TYPES + OBSERVED_TYPES
    arrays = {"types": np.array(types), "kmin": np.int64(grid_k()[0]), "sigma_px": np.float64(SIGMA_PX),
              "observed": np.isin(types, OBSERVED_TYPES)}
    provenance = {"grid": {"coeff0": COEFF0, "coeff1": COEFF1, "kmin": int(grid_k()[0]), "npix": int(grid_k().size),
                           "rv_max_kms": RV_MAX_KMS},
                  "resolution": {"sigma_px": SIGMA_PX, "native_sigma_kms_upper_bound": NATIVE_SIGMA_KMS,
                                 "kernel_px": kernel_px(), "subsample": SUBSAMPLE,
                                 "observed_types": list(OBSERVED_TYPES)},
                  "selection": {"max_negative": MAX_NEGATIVE, "n_keep": N_KEEP, "r_band": R_BAND,
                                "colour": [G_BAND, I_BAND], "wd_da_share": DA_SHARE,
                                "wd_da_hbeta_depth": DA_HBETA_DEPTH, "hbeta_continuum": HBETA_CONTINUUM},
                  "files": {}}
    for name in types:
        filename = f"rrtemplate-STAR-{name}-v0.1.fits"
        path = Path(source) / filename
        basis, wave, coeff, header = read_template(path)
        entry = file_provenance(path, header, basis)
        if name in OBSERVED_TYPES:
            shipped = resample_onto_grid(basis, wave)
            arrays[f"{name}_basis"] = (shipped / band_mean(shipped[0], R_BAND)).astype(np.float32)
        else:
            shipped = convolve_onto_grid(basis, wave, kernel_px())
            keep, n_accepted = select_archetypes(name, shipped, coeff)
            arrays[f"{name}_basis"], arrays[f"{name}_coeff"] = archetype_arrays(shipped, coeff[keep])
            entry.update({"archetypes": int(coeff.shape[0]), "accepted": int(n_accepted), "kept": int(keep.size)})
        provenance["files"][name] = entry
    arrays["provenance"] = np.array(json.dumps(provenance))
    return arrays


def main():
    args = source_arguments(__doc__.splitlines()[0], OUTPUT)
    arrays = build(args.source)
    np.savez_compressed(args.out, **arrays)
    for name, entry in json.loads(str(arrays["provenance"]))["files"].items():
        print(name, {key: entry[key] for key in ("archetypes", "accepted", "kept") if key in entry})
    print(f"{args.out}: {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
