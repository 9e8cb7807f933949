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

Repeat spectra of one object (the same THING_ID in the run) test each
claim, and each missed catalogued absorber, without looking: the doublet
is measured at its z and line width (from the finder's fit in its own
spectrum) in every spectrum of the object (`doublet_ew_at`, a linear fit
with the position fixed), and the other spectra's EW_2796 + EW_2803,
averaged by inverse variance, give the verdict (`repeat_verdict`):
"confirmed" where that average is at least REPEAT_DETECTION_SNR times its
error, "contradicted" where it falls short of the claim's own by more than
REPEAT_CONTRADICTION_SIGMA combined errors, else "inconclusive". A sky
residual or a noise dip does not come back in another exposure; an
absorber does. How often noise alone confirms is measured on the same
spectra: "repeat_null" gives the fraction of NULL_POSITIONS random
positions per searched spectrum with repeats (z on its searched path, at
least RECOVERED_DZ from its claims; line sigma uniform in NULL_SIGMA_KMS)
that the other spectra would confirm.
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
from qsopipe.stages.mgii_fit import (FIT_HALF_WIDTH_PIX, DoubletCriteria, doublet_ew_at, fit_doublets,
                                     running_continuum, with_continuum_error)
from qsopipe.stages.mgii_regions import MgIIRegion

#: |z_fit - z_catalogue| within which a catalogued absorber counts as recovered.
RECOVERED_DZ = 0.005
#: Doublet S/N (EW_2796 + EW_2803 over its error) in the other spectra of an object that confirms a claim.
REPEAT_DETECTION_SNR = 3.0
#: Combined errors by which the other spectra's doublet EW falls short of the claim's to contradict it.
REPEAT_CONTRADICTION_SIGMA = 3.0
#: Random positions per searched spectrum with repeats, and their line sigma range (km/s), of the null test.
NULL_POSITIONS, NULL_SIGMA_KMS = 200, (50.0, 200.0)
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


def measure_at(sightline, z_abs, sigma_kms):
    """The doublet's rest EWs at a fixed z_abs and line sigma (`doublet_ew_at`, with the continuum error):
    dict of EW_2796(_ERR), EW_2803(_ERR) and DOUBLET(_ERR), their sum, rest A."""
    continuum = sightline["continuum"][None]
    ivar = with_continuum_error(sightline["ivar"][None], continuum)
    ew, covariance = doublet_ew_at(sightline["flux"][None], ivar, continuum, np.array([0]), np.array([z_abs]),
                                   np.array([sigma_kms]))
    (ew_2796, ew_2803), covariance = ew[0], covariance[0]
    return {"EW_2796": float(ew_2796), "EW_2796_ERR": float(np.sqrt(covariance[0, 0])),
            "EW_2803": float(ew_2803), "EW_2803_ERR": float(np.sqrt(covariance[1, 1])),
            "DOUBLET": float(ew_2796 + ew_2803), "DOUBLET_ERR": float(np.sqrt(np.sum(covariance)))}


def repeat_verdict(own, repeats):
    """"confirmed", "contradicted" or "inconclusive" (module docstring) for a doublet measured as `own` in its
    spectrum and as `repeats` (measure_at dicts, at least one) in the object's other spectra; and the other
    spectra's inverse-variance mean doublet EW and its error (rest A)."""
    weights = np.array([1.0 / r["DOUBLET_ERR"] ** 2 for r in repeats if np.isfinite(r["DOUBLET"])])
    if weights.size == 0:
        return "inconclusive", float("nan"), float("nan")
    values = np.array([r["DOUBLET"] for r in repeats if np.isfinite(r["DOUBLET"])])
    mean, error = float(np.sum(weights * values) / weights.sum()), float(1.0 / np.sqrt(weights.sum()))
    if mean >= REPEAT_DETECTION_SNR * error:
        return "confirmed", mean, error
    if own["DOUBLET"] - mean > REPEAT_CONTRADICTION_SIGMA * np.hypot(own["DOUBLET_ERR"], error):
        return "contradicted", mean, error
    return "inconclusive", mean, error


def repeat_test(spectra, key, z_abs, others, claims):
    """The repeat test of a doublet at z_abs in spectrum `key` against the object's other spectra `others`
    (keys; `spectra` holds them all), as a JSON-ready dict; `claims` says which spectra claim it."""
    sigma_kms = fit_at(spectra[key], z_abs)["SIGMA_KMS"]
    own = measure_at(spectra[key], z_abs, sigma_kms)
    repeats = [{"sightline": f"{other[0]}-{other[1]}-{other[2]:04d}", **measure_at(spectra[other], z_abs, sigma_kms),
                "claimed": any(abs(a["Z_ABS"] - z_abs) < RECOVERED_DZ for a in claims.get(other, []))}
               for other in others]
    verdict, mean, error = repeat_verdict(own, repeats)
    return {"sigma_kms": sigma_kms, "own": own, "repeats": repeats, "verdict": verdict,
            "repeats_doublet": mean, "repeats_doublet_err": error}


def repeat_null(spectra, others, paths, claims, seed=1):
    """The repeat test on random positions (module docstring): dict of the number of tests, the fraction
    confirmed and the standard deviation of the other spectra's doublet S/N."""
    rng = np.random.default_rng(seed)
    snr = []
    for key in sorted(key for key in paths if others.get(key)):
        claimed = [a["Z_ABS"] for a in claims.get(key, [])]
        positions = zip(rng.uniform(*paths[key], NULL_POSITIONS), rng.uniform(*NULL_SIGMA_KMS, NULL_POSITIONS))
        for z_abs, sigma_kms in positions:
            if any(abs(z_abs - z) < RECOVERED_DZ for z in claimed):
                continue
            _, mean, error = repeat_verdict({"DOUBLET": 0.0, "DOUBLET_ERR": np.inf},
                                            [measure_at(spectra[other], z_abs, sigma_kms) for other in others[key]])
            if np.isfinite(mean):
                snr.append(mean / error)
    snr = np.array(snr)
    return {"tests": int(snr.size), "fraction_confirmed": float(np.mean(snr >= REPEAT_DETECTION_SNR)),
            "doublet_snr_std": float(np.std(snr))}


def object_spectra(run):
    """{(plate, mjd, fiber): [the other spectra of its object]} over the run's shards, by THING_ID (> 0)."""
    by_object = {}
    for _, path in find_products("shard", RunLayout(run).shards):
        table = pq.read_table(path, columns=["PLATE", "MJD", "FIBERID", "THING_ID"]).to_pydict()
        for plate, mjd, fiber, thing_id in zip(*table.values()):
            if thing_id > 0:
                by_object.setdefault(thing_id, []).append((plate, mjd, fiber))
    return {key: [other for other in keys if other != key] for keys in by_object.values() for key in keys}


def plot_claim(sightline, absorber, path, label=None, repeats=()):
    """The claim's plot (see the module docstring), PNG; `label` replaces the REGION and MGII_PROB of its title;
    `repeats`, [(name, sightline)] of the object's other spectra, are drawn over it, each scaled to its continuum."""
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
        for (name, other), colour in zip(repeats, ("tab:orange", "tab:green", "tab:purple")):
            scale = np.where(other["continuum"] > 0, sightline["continuum"] / np.where(other["continuum"] > 0,
                                                                                          other["continuum"], 1.0), 0.0)
            axes.step(wave[near], (other["flux"] * scale)[near], where="mid", color=colour, lw=0.6, alpha=0.8,
                      label=f"{name}, scaled")
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
    """{(plate, mjd, fiber): (MGII_ZMIN, MGII_ZMAX)} of the fibers the MgII stage searched (MGII_FLAG == 0)."""
    searched = {}
    for _, path in find_products("mgii", RunLayout(run).results):
        table = pq.read_table(path, columns=["PLATE", "MJD", "FIBERID", "MGII_FLAG", "MGII_ZMIN", "MGII_ZMAX"])
        for plate, mjd, fiber, flag, z_min, z_max in zip(*table.to_pydict().values()):
            if flag == 0:
                searched[(plate, mjd, fiber)] = (z_min, z_max)
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
    others = object_spectra(args.run)
    tested = set(claims) | {row["key"] for row in dr12 if not row["recovered"]} | {k for k in searched if others.get(k)}
    spectra = read_spectra(args.run, tested | {other for key in tested for other in others.get(key, [])})
    listed = []
    for key, absorbers in sorted(claims.items()):
        for absorber in absorbers:
            name = f"claim-{key[0]}-{key[1]}-{key[2]:04d}-{absorber['Z_ABS']:.4f}.png"
            plot_claim(spectra[key], absorber, out / name,
                       repeats=[(f"{o[0]}-{o[1]}-{o[2]:04d}", spectra[o]) for o in others.get(key, [])])
            listed.append({**{k: absorber[k] for k in ("PLATE", "MJD", "FIBERID", "Z_QSO", "Z_ABS", "EW_2796",
                                                        "EW_2803", "SNR_2796", "SNR_2803", "MGII_PROB")},
                           "REGION": region_names(absorber["REGION"]), "plot": name})
            if others.get(key):
                listed[-1]["repeat_test"] = repeat_test(spectra, key, absorber["Z_ABS"], others[key], claims)
    for row in dr12:
        key = row.pop("key")
        if row["recovered"]:
            continue
        row["at_catalogue_z"] = fit = fit_at(spectra[key], row["z"])
        row["plot"] = name = f"missed-{key[0]}-{key[1]}-{key[2]:04d}-{row['z']:.4f}.png"
        plot_claim(spectra[key], {"PLATE": key[0], "MJD": key[1], "FIBERID": key[2], **fit},
                   out / name, label="fit at the catalogue's z (missed)",
                   repeats=[(f"{o[0]}-{o[1]}-{o[2]:04d}", spectra[o]) for o in others.get(key, [])])
        if others.get(key):
            row["repeat_test"] = repeat_test(spectra, key, row["z"], others[key], claims)
    null = repeat_null(spectra, others, searched, claims)
    result = {"searched_sightlines": len(searched), "claims": listed, "dr12": dr12, "repeat_null": null}
    (out / "mgii_real_claims.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({"searched_sightlines": len(searched), "claims": len(listed),
                      "by_region": {name: sum(c["REGION"] == name for c in listed)
                                    for name in sorted({c["REGION"] for c in listed})},
                      "repeat_tests": {verdict: [f"{c['PLATE']}-{c['MJD']}-{c['FIBERID']:04d} z {c['Z_ABS']:.4f}"
                                                 for c in listed if c.get("repeat_test", {}).get("verdict") == verdict]
                                       for verdict in ("confirmed", "inconclusive", "contradicted")},
                      "repeat_null": null,
                      "dr12": dr12}, indent=1))


if __name__ == "__main__":
    main()
