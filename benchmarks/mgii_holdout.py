"""Acceptance figures of a trained MgII CNN on a held-out simulator run.

Usage: python benchmarks/mgii_holdout.py --sim HOLDOUT_DIR --model MODEL.keras --out DIR [--threshold 0]
           [--vetter VETTER.json|none] [--vetter-threshold P]

The doublet finder is the configured one (pipeline/config.yaml's
mgii_vetter: the shipped candidate vetter) unless --vetter says otherwise;
--vetter-threshold replaces the vetter's thresholds in both regions (for
choosing them on a tuning simulation).

On the searchable quasar sightlines of the run (labels as in training:
positive = a strong absorber, rest EW_2796 >= 0.3 A and >= 3 sigma, in the
search window) it reports, in DIR/mgii_holdout.json:

- accuracy, completeness and purity of IS_MGII_ABS (the stage's decision:
  a doublet fitted on a sightline with MGII_PROB >= threshold, the stage's
  MGII_TH) on the run's own sightlines; the same for IS_MGII_ABS with
  MGII_PROB > 0.5 (the CNN's yes), for the CNN alone (MGII_PROB > 0.5),
  and the CNN's accuracy on a balanced sample drawn as in training
  (injected doublets and confusers, fixed seed);
- the fraction of strong truth absorbers that a fitted absorber localises
  within |dz| < 0.005: of those on the sightlines the stage calls positive
  (IS_MGII_ABS = 1; the issue's "for positives, localise each absorber",
  and the acceptance figure), of all of them (which also counts the
  sightlines the stage misses: the completeness), and of those on
  sightlines with MGII_PROB > 0.5;
- the median fitted/true EW_2796 (and EW_2803) for localised absorbers with
  EW_2796 >= 0.5 A;
- false absorbers: fits more than |dz| 0.005 from every truth absorber, per
  fitted sightline without any truth absorber in its window;
- the doublet finder alone, run on every sightline: localised fraction of
  the strong absorbers and false absorbers per absorber-free sightline;
- the localised fraction (stage, and finder alone) against the absorber's
  significance EW_2796 / sigma (the label's sigma), to show what the
  3-sigma labels ask of any detector;
- the CNN's accuracy against the threshold (to see what the threshold choice costs);
- completeness against EW_2796 (sightline has IS_MGII_ABS = 1; absorber localised),
  plotted in DIR/mgii_completeness.png; fitted against true EW_2796 of the
  localised absorbers in DIR/mgii_ew.png.

All of the above are about the CNN window (the sightline labels' region):
the finder's absorbers outside it are left out of them. "by_region" scores
the finder over the whole path, per REGION (CNN window, Lyman-alpha to CIV,
proximate): purity of its absorbers (matched to a truth absorber of any
strength within |dz| < 0.005), completeness for truth absorbers with
EW_2796 >= 1 A and doublet S/N >= 5 (the rest EWs over their expected
noise), and completeness against EW_2796 at doublet S/N >= 5, plotted in
DIR/mgii_completeness_regions.png.

Acceptance: accuracy >= 0.95, localised on IS_MGII_ABS = 1 sightlines >= 0.90, EW median ratio within 5%;
per region purity >= 0.99 and completeness (EW_2796 >= 1 A, S/N >= 5) >= 0.90.

--leave-out-bal scores only the sightlines of non-BAL quasars (truth BAL_FLAG_VI = 0), as the stage
searches only quasars that QuasarNET does not call BAL (MgIIFlag.BAL); by default every quasar counts.
"""

import argparse
import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from qsopipe.models.train_mgii import (draw_epoch, ew_noise, read_sim_sightlines, sightline_labels,  # noqa: E402
                                       strong_absorbers)
from qsopipe.pipeline.config import defaults  # noqa: E402
from qsopipe.stages.mgii import doublet_finder, measure_absorbers, prepare_input, vetter_path  # noqa: E402
from qsopipe.stages.mgii_regions import MgIIRegion, absorber_regions  # noqa: E402

#: |z_fit - z_true| below which a truth absorber counts as localised.
LOCALISATION_DZ = 0.005
#: EW_2796 bin edges of the completeness curve, rest A.
EW_BINS = (0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 6.0)
#: EW_2796 from which the EW bias is measured, rest A.
EW_BIAS_MIN = 0.5
#: Significance (EW_2796 over the label's sigma) bin edges of the localisation table.
SIGMA_BINS = (3.0, 4.0, 5.0, 7.0, 10.0, np.inf)
#: MGII_PROB above which the CNN says yes, for the CNN-alone figures.
CNN_YES = 0.5
#: Thresholds of the accuracy-against-threshold table.
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Truth absorbers the per-region completeness counts: EW_2796 (rest A) and doublet S/N at least these.
REGION_MIN_EW, REGION_MIN_SNR = 1.0, 5.0


def in_region(fits, z_qso, region):
    """The fits (structured array of one sightline at z_qso) whose REGION has bit `region`."""
    return fits[(absorber_regions(fits["Z_ABS"], z_qso) & region) != 0]


def by_region(sightlines, every):
    """Per REGION bit: the finder's purity, completeness at EW_2796 >= 1 A and S/N >= 5, and against EW_2796.

    every : the finder's fits on every sightline (one structured array each). Returns {region name: dict}.
    """
    truth = sightlines.absorbers
    z_qso_truth = sightlines.z_qso[truth["row"]]
    noise = ew_noise(sightlines.flux, sightlines.ivar, truth["row"], truth["z_abs"])
    doublet_snr = (truth["ew_2796"] + truth["ew_2803"]) / (np.sqrt(2) * noise)
    found = dict(enumerate(every))
    dz, _ = match_absorbers(truth["row"], truth["z_abs"], found)
    edges = np.asarray(EW_BINS)
    result = {}
    for region in MgIIRegion:
        fits = [in_region(f, z, region) for f, z in zip(every, sightlines.z_qso)]
        false = false_fits(np.arange(len(sightlines)), fits, truth)
        n_fits = sum(len(f) for f in fits)
        here = (absorber_regions(truth["z_abs"], z_qso_truth) & region) != 0
        counted = here & (truth["ew_2796"] >= REGION_MIN_EW) & (doublet_snr >= REGION_MIN_SNR)
        detectable = here & (doublet_snr >= REGION_MIN_SNR)
        which = np.digitize(truth["ew_2796"], edges) - 1
        result[region.name] = {
            "absorbers_found": int(n_fits), "false": int(false.sum()),
            "purity": float(1 - false.sum() / n_fits) if n_fits else float("nan"),
            "truth_counted": int(counted.sum()),
            "completeness": float(np.mean(dz[counted] < LOCALISATION_DZ)) if counted.any() else float("nan"),
            "completeness_vs_ew": [
                {"ew_min": float(edges[b]), "ew_max": float(edges[b + 1]), "count": int(np.sum(detectable & (which == b))),
                 "localised": float(np.mean(dz[detectable & (which == b)] < LOCALISATION_DZ))
                 if np.any(detectable & (which == b)) else float("nan")}
                for b in range(len(edges) - 1)],
        }
    return result


def false_fits(rows, found, absorbers):
    """Fits more than LOCALISATION_DZ from every truth absorber (any strength) of their sightline.

    rows : sightlines searched; found : list of structured arrays, one per row;
    absorbers : the Sightlines.absorbers dict. Returns int (len(rows),), false fits per row.
    """
    count = np.zeros(len(rows), np.int64)
    for k, (row, fits) in enumerate(zip(rows, found)):
        truth = absorbers["z_abs"][absorbers["row"] == row]
        for z_fit in fits["Z_ABS"]:
            count[k] += not np.any(np.abs(truth - z_fit) < LOCALISATION_DZ)
    return count


def finder_alone(sightlines, found, strong, clean):
    """The doublet finder's fits on every sightline (found, one structured array per sightline), scored:
    (localised bool per strong absorber, false per clean sightline)."""
    rows = np.arange(len(sightlines))
    truth = {key: value[strong] for key, value in sightlines.absorbers.items()}
    dz, _ = match_absorbers(truth["row"], truth["z_abs"], dict(zip(rows.tolist(), found)))
    false = false_fits(rows, found, sightlines.absorbers)
    return dz < LOCALISATION_DZ, float(false[clean].sum() / max(clean.sum(), 1))


def match_absorbers(rows, z_true, found):
    """Nearest fitted absorber of each truth absorber on its sightline.

    rows, z_true : (m,) sightline and redshift of the truth absorbers;
    found : dict sightline -> structured array of fits.
    Returns (dz float64 (m,), inf where none; index into that sightline's fits, -1 where none).
    """
    dz = np.full(len(rows), np.inf)
    index = np.full(len(rows), -1)
    for k, (row, z) in enumerate(zip(rows, z_true)):
        fits = found.get(int(row))
        if fits is not None and len(fits):
            nearest = int(np.argmin(np.abs(fits["Z_ABS"] - z)))
            dz[k], index[k] = abs(fits["Z_ABS"][nearest] - z), nearest
    return dz, index


def evaluate(sightlines, predictor, threshold, finder, seed=1234):
    """The acceptance metrics (dict) and the per-absorber arrays for the completeness plot.

    finder : (DoubletCriteria, Vetter or None), as from `qsopipe.stages.mgii.doublet_finder`.
    """
    label, clean = sightline_labels(sightlines)
    absorbers = sightlines.absorbers
    criteria, vetter = finder
    x, _ = prepare_input(sightlines.flux, sightlines.ivar, sightlines.z_qso)
    probability = predictor(x)
    cnn_yes = probability > CNN_YES
    x_balanced, y_balanced = draw_epoch(sightlines, label, clean, min(2 * len(sightlines), 20000),
                                        np.random.default_rng(seed))
    balanced_yes = predictor(x_balanced) > CNN_YES

    # The finder treats each sightline on its own: the stage's fits are those of its rows at or above the threshold.
    whole_path, _ = measure_absorbers(sightlines.flux, sightlines.ivar, sightlines.z_qso, criteria, vetter)
    every = [in_region(f, z, MgIIRegion.CNN_WINDOW) for f, z in zip(whole_path, sightlines.z_qso)]
    positive_rows = np.flatnonzero(probability >= threshold)
    fits = [every[row] for row in positive_rows]
    found = dict(zip(positive_rows.tolist(), fits))
    strong = strong_absorbers(sightlines)
    truth = {key: value[strong] for key, value in sightlines.absorbers.items()}
    dz, index = match_absorbers(truth["row"], truth["z_abs"], found)
    localised = dz < LOCALISATION_DZ
    on_cnn_yes = cnn_yes[truth["row"]]
    ew_fit = np.array([found[int(row)]["EW_2796"][i] if i >= 0 else np.nan for row, i in zip(truth["row"], index)])
    ew3_fit = np.array([found[int(row)]["EW_2803"][i] if i >= 0 else np.nan for row, i in zip(truth["row"], index)])
    measured = localised & (truth["ew_2796"] >= EW_BIAS_MIN)

    def fraction(mask, of):
        return float(mask[of].mean()) if of.any() else float("nan")

    confirmed = np.zeros(len(sightlines), bool)
    confirmed[positive_rows] = [len(f) > 0 for f in fits]
    n_fits = sum(len(f) for f in fits)
    false = false_fits(positive_rows, fits, absorbers)
    fitted_clean = clean[positive_rows]
    finder_localised, finder_false = finder_alone(sightlines, every, strong, clean)
    matched_fits = len({(int(r), int(i)) for r, i, ok in zip(truth["row"], index, localised) if ok})
    metrics = {
        "threshold": threshold,
        "sightlines": len(sightlines), "positives": int(label.sum()), "fitted_sightlines": int(positive_rows.size),
        "accuracy": float(np.mean(confirmed == (label == 1))),
        "completeness": fraction(confirmed, label == 1),
        "purity": fraction(label == 1, confirmed),
        "cnn_yes": CNN_YES,
        "with_cnn_yes_accuracy": float(np.mean((confirmed & cnn_yes) == (label == 1))),
        "with_cnn_yes_completeness": fraction(confirmed & cnn_yes, label == 1),
        "with_cnn_yes_purity": fraction(label == 1, confirmed & cnn_yes),
        "cnn_accuracy": float(np.mean(cnn_yes == (label == 1))),
        "cnn_completeness": fraction(cnn_yes, label == 1),
        "cnn_purity": fraction(label == 1, cnn_yes),
        "balanced_sample_size": int(len(y_balanced)),
        "cnn_balanced_accuracy_injected": float(np.mean(balanced_yes == (y_balanced == 1))),
        "strong_absorbers": int(strong.sum()),
        "localised_all": float(localised.mean()) if localised.size else float("nan"),
        "localised_on_cnn_yes": fraction(localised, on_cnn_yes),
        "localised_on_is_mgii_abs": fraction(localised, confirmed[truth["row"]]),
        "localisation_dz": LOCALISATION_DZ,
        "fitted_absorbers": n_fits,
        "fitted_matching_truth": matched_fits,
        "fitted_absorber_free": int(fitted_clean.sum()),
        "false_per_fitted_absorber_free": float(false[fitted_clean].sum() / max(fitted_clean.sum(), 1)),
        "false_fits": int(false.sum()),
        "finder_alone_localised": float(finder_localised.mean()) if finder_localised.size else float("nan"),
        "finder_alone_false_per_absorber_free": finder_false,
        "cnn_accuracy_vs_threshold": {f"{t:.1f}": float(np.mean((probability > t) == (label == 1))) for t in THRESHOLDS},
        "ew_2796_median_ratio": float(np.median(ew_fit[measured] / truth["ew_2796"][measured]))
        if measured.any() else float("nan"),
        "ew_2803_median_ratio": float(np.median(ew3_fit[measured] / truth["ew_2803"][measured]))
        if measured.any() else float("nan"),
        "ew_bias_min_ew": EW_BIAS_MIN,
        "ew_bias_count": int(measured.sum()),
    }
    significance = truth["ew_2796"] / ew_noise(sightlines.flux, sightlines.ivar, truth["row"], truth["z_abs"])
    metrics["localised_vs_sigma"] = []
    for lo, hi in zip(SIGMA_BINS[:-1], SIGMA_BINS[1:]):
        inside = (significance >= lo) & (significance < hi)
        metrics["localised_vs_sigma"].append({"sigma_min": lo, "sigma_max": hi if np.isfinite(hi) else None,
                                              "count": int(inside.sum()), "localised": fraction(localised, inside),
                                              "finder_alone": fraction(finder_localised, inside)})
    edges = np.asarray(EW_BINS)
    which = np.digitize(truth["ew_2796"], edges) - 1
    metrics["completeness_vs_ew"] = [
        {"ew_min": float(edges[b]), "ew_max": float(edges[b + 1]), "count": int(np.sum(which == b)),
         "is_mgii_abs": fraction(confirmed[truth["row"]], which == b), "localised": fraction(localised, which == b)}
        for b in range(len(edges) - 1)]
    metrics["ew_pairs"] = {"true": truth["ew_2796"][localised].tolist(), "fitted": ew_fit[localised].tolist()}
    metrics["by_region"] = by_region(sightlines, whole_path)
    regions_pass = all(r["purity"] >= 0.99 and r["completeness"] >= 0.90 for r in metrics["by_region"].values())
    metrics["pass"] = bool(metrics["accuracy"] >= 0.95 and metrics["localised_on_is_mgii_abs"] >= 0.90
                           and abs(metrics["ew_2796_median_ratio"] - 1) <= 0.05 and regions_pass)
    return metrics


def non_bal(sim_dir, sightlines):
    """Which sightlines (Sightlines of a simulator run) are of quasars without BAL troughs in truth (BAL_FLAG_VI
    = 0); bool (n,)."""
    import fitsio

    from qsopipe.pipeline.ids import match_rows, target_id

    truth = fitsio.read(Path(sim_dir) / "truth.fits", ext="TRUTH", columns=["PLATE", "MJD", "FIBERID", "BAL_FLAG_VI"])
    row, _ = match_rows(target_id(sightlines.plate, sightlines.mjd, sightlines.fiberid),
                        target_id(truth["PLATE"], truth["MJD"], truth["FIBERID"]))
    return truth["BAL_FLAG_VI"][row] == 0


def json_safe(value):
    """`value` with every NaN float replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def plot_completeness(metrics, path):
    """Completeness against EW_2796 (IS_MGII_ABS; absorber localised), PNG."""
    from matplotlib.figure import Figure

    rows = metrics["completeness_vs_ew"]
    centre = [np.sqrt(r["ew_min"] * r["ew_max"]) for r in rows]
    rows = [{key: np.nan if value is None else value for key, value in r.items()} for r in rows]
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    axes.plot(centre, [r["is_mgii_abs"] for r in rows], "o-", label="sightline has IS_MGII_ABS = 1")
    axes.plot(centre, [r["localised"] for r in rows], "s--", label=f"absorber localised, |dz| < {LOCALISATION_DZ}")
    axes.set(xscale="log", xlabel="rest EW(2796) [A]", ylabel="completeness", ylim=(0, 1.05),
             title=f"MgII stage hold-out: IS_MGII_ABS accuracy {metrics['accuracy']:.3f}")
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=100)


def plot_region_completeness(metrics, path):
    """Completeness against EW_2796 at doublet S/N >= REGION_MIN_SNR, one curve per REGION, PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    for name, region in metrics["by_region"].items():
        rows = region["completeness_vs_ew"]
        centre = [np.sqrt(r["ew_min"] * r["ew_max"]) for r in rows]
        axes.plot(centre, [np.nan if r["localised"] is None else r["localised"] for r in rows], "o-",
                  label=f"{name} (purity {np.nan if region['purity'] is None else region['purity']:.3f})")
    axes.set(xscale="log", xlabel="rest EW(2796) [A]", ylabel=f"completeness, doublet S/N >= {REGION_MIN_SNR:g}",
             ylim=(0, 1.05), title="MgII finder over the whole path, by region")
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=100)


def plot_ew(metrics, path):
    """Fitted against true rest EW_2796 of the localised absorbers, PNG."""
    from matplotlib.figure import Figure

    true, fitted = np.asarray(metrics["ew_pairs"]["true"]), np.asarray(metrics["ew_pairs"]["fitted"])
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    axes.loglog(true, np.clip(fitted, 1e-2, None), ".", alpha=0.5)
    axes.plot([0.1, 10], [0.1, 10], "k-", lw=0.8)
    axes.axvline(EW_BIAS_MIN, color="grey", ls=":")
    axes.set(xlabel="true rest EW(2796) [A]", ylabel="fitted rest EW(2796) [A]", xlim=(0.2, 8), ylim=(0.1, 10),
             title=f"median fitted/true (EW >= {EW_BIAS_MIN} A): {metrics['ew_2796_median_ratio']:.3f}")
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", required=True, help="held-out simulator run (spectra/ and truth.fits)")
    parser.add_argument("--model", required=True, help="trained MgII CNN, .keras")
    parser.add_argument("--out", required=True, help="directory for mgii_holdout.json and mgii_completeness.png")
    parser.add_argument("--threshold", type=float, default=defaults()["mgii_threshold"])
    parser.add_argument("--vetter", help="candidate vetter .json, or 'none' [default: pipeline/config.yaml's]")
    parser.add_argument("--vetter-threshold", type=float, help="the vetter's threshold in both regions")
    parser.add_argument("--leave-out-bal", action="store_true",
                        help="score only sightlines of quasars without BAL troughs (truth BAL_FLAG_VI = 0)")
    args = parser.parse_args()

    from qsopipe.models.mgii import load_predictor

    sightlines = read_sim_sightlines(args.sim)
    if args.leave_out_bal:
        sightlines = sightlines.subset(non_bal(args.sim, sightlines))
    criteria, vetter = doublet_finder({"mgii_vetter": args.vetter})
    if vetter is not None and args.vetter_threshold is not None:
        vetter = dataclasses.replace(vetter, thresholds={region: args.vetter_threshold for region in vetter.thresholds})
    metrics = evaluate(sightlines, load_predictor(args.model), args.threshold, (criteria, vetter))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics["model"], metrics["sim"], metrics["leave_out_bal"] = str(args.model), str(args.sim), args.leave_out_bal
    metrics["vetter"] = None if vetter is None else {"file": str(vetter_path({"mgii_vetter": args.vetter})),
                                                     "thresholds": vetter.thresholds}
    plot_completeness(metrics, out / "mgii_completeness.png")
    plot_ew(metrics, out / "mgii_ew.png")
    metrics = json_safe(metrics)
    plot_region_completeness(metrics, out / "mgii_completeness_regions.png")
    del metrics["ew_pairs"]
    (out / "mgii_holdout.json").write_text(json.dumps(json_safe(metrics), indent=1, allow_nan=False))
    print(json.dumps({key: value for key, value in metrics.items() if key != "completeness_vs_ew"}, indent=1))


if __name__ == "__main__":
    main()
