"""The MgII stage's absorbers on real spectra: one plot per claimed absorber, and the DR12 catalogue's recovered.

    qsopipe run ../shared/data/sdss/dr16_spec_lite_picca ../shared/data/sdss/spec_full_pyqsofit \
        --out REAL --keep-shards
    python benchmarks/mgii_real_claims.py --run REAL --dr12 ../shared/data/catalogs/MgII_DR12.fits --out DIR

Reads the run's shards and MgII absorbers (RUN/shards, RUN/results/mgii).
For every absorber the stage claims it writes DIR/claim-PPPP-MMMMM-FFFF-Z.png:
the flux on the MgII grid, the finder's running continuum and the noise,
around the doublet (with the 2796/2803 positions marked) and around the
system's FeII 2600/2586 and 2382/2344 lines. DIR/mgii_real_claims.json
lists every claim with its REGION and, for the catalogue's absorbers on
the run's searched sightlines, whether one lies within |dz| < 0.005 and
the fitted against the catalogued EWs (difference over the catalogue's
error). A catalogued absorber the stage misses gets the finder's doublet
fit started at the catalogue's z (`at_catalogue_z`: EWs, their errors and
S/N, which the finder's criteria would judge) and the same plot,
DIR/missed-PPPP-MMMMM-FFFF-Z.png.
"""

import argparse
import json
from pathlib import Path

import fitsio
import numpy as np
import pyarrow.parquet as pq

from qsopipe.pipeline.constants import FEII_2344, FEII_2382, FEII_2586, FEII_2600, MGII_2796, MGII_2803
from qsopipe.pipeline.layout import RunLayout, find_products
from qsopipe.pipeline.parquet_io import list_column
from qsopipe.stages.mgii import grid_wavelength
from qsopipe.stages.mgii_fit import (FIT_HALF_WIDTH_PIX, DoubletCriteria, fit_doublets, running_continuum,
                                     with_continuum_error)
from qsopipe.stages.mgii_regions import MgIIRegion

#: |z_fit - z_catalogue| within which a catalogued absorber counts as recovered.
RECOVERED_DZ = 0.005
#: Half width of each plot panel, rest A of the absorber.
PANEL_HALF_WIDTH = 25.0
#: The panels of a claim's plot: (title, rest wavelengths marked), rest A.
PANELS = (("MgII 2796, 2803", (MGII_2796, MGII_2803)), ("FeII 2586, 2600", (FEII_2586, FEII_2600)),
          ("FeII 2344, 2382", (FEII_2344, FEII_2382)))


def region_names(bits):
    """'CNN_WINDOW|PROXIMATE' for REGION bits; 'NONE' for 0."""
    return "|".join(region.name for region in MgIIRegion if bits & region) or "NONE"


def read_spectra(run, keys):
    """{(plate, mjd, fiber): {"flux", "ivar", "continuum" (3841,)}} of the run's shards, for `keys`."""
    shards = dict(find_products("shard", RunLayout(run).shards))
    spectra = {}
    for plate, mjd in sorted({key[:2] for key in keys}):
        shard = pq.read_table(shards[f"{plate:04d}-{mjd:05d}"])
        fibers = shard.column("FIBERID").to_numpy()
        flux, ivar = list_column(shard, "MGII_FLUX"), list_column(shard, "MGII_IVAR")
        for key in sorted(key for key in keys if key[:2] == (plate, mjd)):
            row = int(np.flatnonzero(fibers == key[2])[0])
            spectra[key] = {"flux": flux[row], "ivar": ivar[row],
                            "continuum": running_continuum(flux[row:row + 1], ivar[row:row + 1])[0]}
    return spectra


def read_claims(run):
    """{(plate, mjd, fiber): [absorber row dicts]} of the run's MgII absorbers."""
    claims = {}
    for _, path in find_products("mgii_absorbers", RunLayout(run).results):
        for absorber in pq.read_table(path).to_pylist():
            claims.setdefault((absorber["PLATE"], absorber["MJD"], absorber["FIBERID"]), []).append(absorber)
    return claims


def fit_at(sightline, z_abs):
    """The finder's doublet fit (`fit_doublets`, with its continuum error) started at z_abs: a dict of
    Z_ABS, EW_2796(_ERR), EW_2803(_ERR) (rest A), SNR_2796, SNR_2803, SIGMA_KMS."""
    flux, continuum = sightline["flux"][None], sightline["continuum"][None]
    ivar = with_continuum_error(sightline["ivar"][None], continuum)
    first = int(np.argmin(np.abs(grid_wavelength() - MGII_2796 * (1 + z_abs)))) - FIT_HALF_WIDTH_PIX
    fit = fit_doublets(flux, ivar, continuum, np.array([0]), np.array([z_abs]), np.array([1 + z_abs]),
                       DoubletCriteria.max_iterations, first_pixel=np.array([first]))
    return {name: float(fit[name][0]) for name in ("Z_ABS", "EW_2796", "EW_2796_ERR", "EW_2803", "EW_2803_ERR",
                                                   "SNR_2796", "SNR_2803", "SIGMA_KMS")}


def plot_claim(sightline, absorber, path, label=None):
    """The claim's plot (see the module docstring), PNG; `label` replaces the REGION and MGII_PROB of its title."""
    from matplotlib.figure import Figure

    wave = grid_wavelength()
    z_abs = absorber["Z_ABS"]
    noise = np.where(sightline["ivar"] > 0, 1 / np.sqrt(np.clip(sightline["ivar"], 1e-30, None)), np.nan)
    figure = Figure(figsize=(12, 3.2), layout="constrained")
    for axes, (title, lines) in zip(figure.subplots(1, len(PANELS)), PANELS):
        centre = np.mean(lines) * (1 + z_abs)
        near = np.abs(wave - centre) < PANEL_HALF_WIDTH * (1 + z_abs)
        axes.step(wave[near], sightline["flux"][near], where="mid", color="k", lw=0.8, label="flux")
        axes.plot(wave[near], sightline["continuum"][near], color="tab:blue", label="continuum")
        axes.plot(wave[near], noise[near], color="tab:grey", lw=0.6, label="noise")
        for rest in lines:
            axes.axvline(rest * (1 + z_abs), color="tab:red", ls=":", lw=1)
        axes.set(title=title, xlabel="observed wavelength [A]")
    figure.axes[0].set_ylabel("flux [1e-17 erg/s/cm2/A]")
    figure.axes[0].legend(fontsize=7, loc="lower left")
    z_qso = f"  z_qso {absorber['Z_QSO']:.3f}" if "Z_QSO" in absorber else ""
    figure.suptitle(f"{absorber['PLATE']}-{absorber['MJD']}-{absorber['FIBERID']:04d}{z_qso}"
                    f"  z_abs {z_abs:.4f}  EW {absorber['EW_2796']:.2f}/{absorber['EW_2803']:.2f} A"
                    f"  S/N {absorber['SNR_2796']:.1f}/{absorber['SNR_2803']:.1f}  "
                    + (label or f"{region_names(absorber['REGION'])}  MGII_PROB {absorber['MGII_PROB']:.2f}"),
                    fontsize=9)
    figure.savefig(path, dpi=90)


def catalogue_recovery(dr12_path, claims, searched):
    """Each DR12 absorber on a searched sightline ({(plate, mjd, fiber)}), with the nearest claim, as dicts
    (and its key, under "key")."""
    catalogue = fitsio.read(dr12_path, ext=1, columns=["plate-mjd-fibre", "z", "W_2796", "W_2796_err",
                                                       "W_2803", "W_2803_err"])
    rows = []
    for entry in catalogue:
        key = tuple(int(part) for part in entry["plate-mjd-fibre"].strip().split("-"))
        if key not in searched:
            continue
        nearest = min(claims.get(key, []), key=lambda a: abs(a["Z_ABS"] - entry["z"]), default=None)
        found = nearest is not None and abs(nearest["Z_ABS"] - entry["z"]) < RECOVERED_DZ
        rows.append({
            "key": key, "sightline": f"{key[0]}-{key[1]}-{key[2]:04d}",
            "z": float(entry["z"]), "W_2796": float(entry["W_2796"]), "W_2796_err": float(entry["W_2796_err"]),
            "W_2803": float(entry["W_2803"]), "W_2803_err": float(entry["W_2803_err"]), "recovered": bool(found),
            **({"z_fit": nearest["Z_ABS"], "EW_2796": nearest["EW_2796"], "EW_2803": nearest["EW_2803"],
                "dW_2796_over_err": (nearest["EW_2796"] - float(entry["W_2796"])) / float(entry["W_2796_err"]),
                "dW_2803_over_err": (nearest["EW_2803"] - float(entry["W_2803"])) / float(entry["W_2803_err"])}
               if found else {})})
    return rows


def searched_sightlines(run):
    """{(plate, mjd, fiber)} of the fibers the MgII stage searched (MGII_FLAG == 0) in a run."""
    searched = set()
    for _, path in find_products("mgii", RunLayout(run).results):
        table = pq.read_table(path, columns=["PLATE", "MJD", "FIBERID", "MGII_FLAG"]).to_pydict()
        searched.update((p, m, f) for p, m, f, flag in zip(*table.values()) if flag == 0)
    return searched


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a qsopipe run OUTDIR made with --keep-shards")
    parser.add_argument("--dr12", required=True, help="the DR12 MgII catalogue (Raghunathan et al. 2016), FITS")
    parser.add_argument("--out", required=True, help="directory for the plots and mgii_real_claims.json")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    claims = read_claims(args.run)
    searched = searched_sightlines(args.run)
    dr12 = catalogue_recovery(args.dr12, claims, searched)
    spectra = read_spectra(args.run, set(claims) | {row["key"] for row in dr12 if not row["recovered"]})
    listed = []
    for key, absorbers in sorted(claims.items()):
        for absorber in absorbers:
            name = f"claim-{key[0]}-{key[1]}-{key[2]:04d}-{absorber['Z_ABS']:.4f}.png"
            plot_claim(spectra[key], absorber, out / name)
            listed.append({**{k: absorber[k] for k in ("PLATE", "MJD", "FIBERID", "Z_QSO", "Z_ABS", "EW_2796",
                                                        "EW_2803", "SNR_2796", "SNR_2803", "MGII_PROB")},
                           "REGION": region_names(absorber["REGION"]), "plot": name})
    for row in dr12:
        key = row.pop("key")
        if row["recovered"]:
            continue
        row["at_catalogue_z"] = fit = fit_at(spectra[key], row["z"])
        row["plot"] = name = f"missed-{key[0]}-{key[1]}-{key[2]:04d}-{row['z']:.4f}.png"
        plot_claim(spectra[key], {"PLATE": key[0], "MJD": key[1], "FIBERID": key[2], **fit},
                   out / name, label="fit at the catalogue's z (missed)")
    result = {"searched_sightlines": len(searched), "claims": listed, "dr12": dr12}
    (out / "mgii_real_claims.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({"searched_sightlines": len(searched), "claims": len(listed),
                      "by_region": {name: sum(c["REGION"] == name for c in listed)
                                    for name in sorted({c["REGION"] for c in listed})},
                      "dr12": dr12}, indent=1))


if __name__ == "__main__":
    main()
