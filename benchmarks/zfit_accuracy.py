"""Accuracy of the template redshift fit against Z_QN, on a simulated hold-out and on the real spectra.

    qsopipe simulate --out SIM --plates 8 --fibers 1000 --seed 6262
    qsopipe run SIM/spectra --out RUN --keep-shards
    qsopipe run ../shared/data/sdss/dr16_spec_lite_picca ../shared/data/sdss/spec_full_pyqsofit \
        --out REAL --keep-shards
    OPENBLAS_NUM_THREADS=1 python benchmarks/zfit_accuracy.py --sim-run RUN --truth SIM/truth.fits \
        --real-run REAL [--json OUT.json --plot OUT.png]

For every plate of a run the fit reads the shard (RUN/shards) and the
QuasarNET results (RUN/results/quasarnet). Simulation: quasars
(CLASS_PERSON 3 or 30) that QuasarNET calls quasars; dv = c (Z - Z_VI) /
(1 + Z_VI) in km/s for Z_QN and for Z (the fit where ZWARNING = 0, else
Z_QN): median, NMAD, catastrophic rate |dv| > 6000 km/s, and the KS test
of the position of Z within QuasarNET's box (13 boxes over the 443-pixel
grid log10(3600) + 1e-3 p, for the line Z_QN came from) against a uniform
law. Real spectra: fibers of spAll (ZWARNING 0, CLASS QSO) that QuasarNET
calls quasars; dv against spAll's Z.
"""

import argparse
from pathlib import Path

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from qsopipe.pipeline import grids
from qsopipe.pipeline.constants import QN_LINES, SPEED_OF_LIGHT_KMS
from qsopipe.stages.evaluate import DV_MAX
from qsopipe.stages.redshift_fit import fit_plate
from timing import report

REPO = Path(__file__).resolve().parents[1]
SPALL = REPO.parent / "shared" / "data" / "sdss" / "dr16_spec_lite_picca" / "catalogs" / "spAll-plate3655.fits"
#: Redshift bins of the real spectra's figures (the quasarnet_real.py split).
REAL_Z_EDGES = (0.0, 0.8, 2.1, 7.0)
LINE_NAMES = [name for name, _ in QN_LINES]
LINE_REST = np.array([rest for _, rest in QN_LINES])


def fit_run(run):
    """(QuasarNET results, fit table) of every plate of a `qsopipe run --keep-shards` output, concatenated."""
    qns, fits = [], []
    for qn_file in sorted(Path(run, "results", "quasarnet").glob("qn-*.parquet")):
        plate, mjd = qn_file.stem.split("-")[1:]
        qn = pq.read_table(qn_file)
        qns.append(qn)
        fits.append(fit_plate(pq.read_table(Path(run, "shards", f"PLATE={plate}", f"plate-{plate}-{mjd}.parquet")),
                              qn))
    return pa.concat_tables(qns), pa.concat_tables(fits)


def velocity(z, z_true):
    """c (z - z_true) / (1 + z_true), km/s."""
    return SPEED_OF_LIGHT_KMS * (z - z_true) / (1.0 + z_true)


def summary(dv):
    """n, median, NMAD (1.4826 median |dv - median|) and catastrophic rate of velocity errors (km/s)."""
    median = float(np.median(dv))
    return {"n": int(dv.size), "median_kms": round(median, 1),
            "nmad_kms": round(float(1.4826 * np.median(np.abs(dv - median))), 1),
            "catastrophic_rate": round(float(np.mean(np.abs(dv) > DV_MAX)), 5)}


def box_position(z, qn):
    """Fractional position (n,) in [0, 1) of the line Z_QN came from within its QuasarNET box, at redshift z."""
    confidence = np.stack([qn.column(f"C_{name}").to_numpy() for name in LINE_NAMES], axis=1)
    rest = LINE_REST[np.argmax(confidence, axis=1)]
    pixel = (np.log10((1.0 + z) * rest) - grids.QN_LOGLAM_MIN) / grids.QN_DLOGLAM
    return np.mod(pixel / (grids.QN_NBINS / grids.QN_NBOXES), 1.0)


def box_pattern(z_qn, z_best, z_true, qn):
    """KS p-values of the box positions: each of Z_QN, Z and Z_VI against a uniform law, and Z_QN and Z
    against Z_VI's own positions (two-sample), which is the fair test where the redshift law is not flat
    on a box's scale (0.034 dex)."""
    truth = box_position(z_true, qn)
    out = {f"{name}_vs_uniform": float(stats.kstest(box_position(z, qn), "uniform").pvalue)
           for name, z in (("Z_QN", z_qn), ("Z", z_best), ("Z_VI", z_true))}
    out.update({f"{name}_vs_Z_VI": float(stats.ks_2samp(box_position(z, qn), truth).pvalue)
                for name, z in (("Z_QN", z_qn), ("Z", z_best))})
    return out


def simulation_metrics(run, truth_path, plot_path=None):
    qn, fit = fit_run(run)
    truth = fitsio.read(str(truth_path), ext="TRUTH")
    row_of = {(int(p), int(m), int(f)): k for k, (p, m, f) in
              enumerate(zip(truth["PLATE"], truth["MJD"], truth["FIBERID"]))}
    rows = np.array([row_of[key] for key in zip(*(fit.column(n).to_pylist() for n in ("PLATE", "MJD", "FIBERID")))])
    truth = truth[rows]
    chosen = np.isin(truth["CLASS_PERSON"], (3, 30)) & (qn.column("IS_QSO_QN").to_numpy() == 1)
    z_true = truth["Z_VI"][chosen].astype(np.float64)
    z_qn = qn.column("Z_QN").to_numpy()[chosen]
    z_best = fit.column("Z").to_numpy()[chosen]
    zwarning = fit.column("ZWARNING").to_numpy()[chosen]
    qn_chosen = qn.filter(pa.array(chosen))
    out = {"quasars": int(np.isin(truth["CLASS_PERSON"], (3, 30)).sum()),
           "Z_QN": summary(velocity(z_qn, z_true)), "Z": summary(velocity(z_best, z_true)),
           "Z_FIT_zwarning0": summary(velocity(z_best[zwarning == 0], z_true[zwarning == 0])),
           "zwarning0_fraction": round(float(np.mean(zwarning == 0)), 4),
           "box_position_ks_p": box_pattern(z_qn, z_best, z_true, qn_chosen)}
    if plot_path:
        plot_errors(velocity(z_qn, z_true), velocity(z_best, z_true), truth["MAG"][chosen, 2], z_true, plot_path)
    return out


def real_metrics(run):
    qn, fit = fit_run(run)
    spall = fitsio.read(str(SPALL), columns=["PLATE", "MJD", "FIBERID", "Z", "ZWARNING", "CLASS"])
    confident = {(int(r["PLATE"]), int(r["MJD"]), int(r["FIBERID"])): float(r["Z"]) for r in spall
                 if r["ZWARNING"] == 0 and r["CLASS"].strip() == "QSO"}
    keys = list(zip(*(fit.column(n).to_pylist() for n in ("PLATE", "MJD", "FIBERID"))))
    z_spall = np.array([confident.get(key, np.nan) for key in keys])
    chosen = np.isfinite(z_spall) & (qn.column("IS_QSO_QN").to_numpy() == 1)
    z_true = z_spall[chosen]
    zwarning = fit.column("ZWARNING").to_numpy()[chosen]
    z_best = fit.column("Z").to_numpy()[chosen]
    z_qn = qn.column("Z_QN").to_numpy()[chosen]
    by_z = {}
    for low, high in zip(REAL_Z_EDGES[:-1], REAL_Z_EDGES[1:]):
        inside = (z_true >= low) & (z_true < high)
        by_z[f"{low}-{high}"] = {"Z_QN": summary(velocity(z_qn[inside], z_true[inside])),
                                 "Z": summary(velocity(z_best[inside], z_true[inside]))}
    return {"Z_QN": summary(velocity(z_qn, z_true)),
            "Z": summary(velocity(z_best, z_true)),
            "Z_FIT_zwarning0": summary(velocity(z_best[zwarning == 0], z_true[zwarning == 0])),
            "zwarning0_fraction": round(float(np.mean(zwarning == 0)), 4),
            "by_redshift": by_z}


def plot_errors(dv_qn, dv_fit, r_mag, z_true, path):
    """dv against r magnitude and against redshift, Z_QN and Z side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, x, label in ((axes[0], r_mag, "r magnitude (truth MAG[2])"), (axes[1], z_true, "Z_VI")):
        axis.scatter(x, dv_qn, s=3, alpha=0.4, color="tab:gray", label="Z_QN")
        axis.scatter(x, dv_fit, s=3, alpha=0.5, color="tab:blue", label="Z (fit)")
        axis.axhline(0, color="k", lw=0.5)
        axis.set_xlabel(label)
    axes[0].set_ylabel("dv = c (Z - Z_VI) / (1 + Z_VI)  [km/s]")
    axes[0].set_ylim(-3000, 3000)
    axes[0].legend(markerscale=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-run", help="`qsopipe run --keep-shards` output of the simulated hold-out")
    parser.add_argument("--truth", help="the hold-out's truth.fits")
    parser.add_argument("--real-run", help="`qsopipe run --keep-shards` output of the real spectra")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--plot", default="docs/zfit_dv.png", help="dv against r magnitude and redshift")
    args = parser.parse_args()
    result = {}
    if args.sim_run:
        result["simulation"] = simulation_metrics(args.sim_run, args.truth, args.plot)
    if args.real_run:
        result["real"] = real_metrics(args.real_run)
    report(result, args.json)


if __name__ == "__main__":
    main()
