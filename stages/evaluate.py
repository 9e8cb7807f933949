"""Evaluate stage: score a catalog against DR12Q-style truth or spAll labels.

Definitions follow Busca & Balland (2018, QuasarNET):

- truth quasar: CLASS_PERSON in (3, 30) with Z_CONF_PERSON == 3. Matched
  pairs whose truth is a quasar of lower Z_CONF_PERSON are left out (their
  label is uncertain) and counted in `n_excluded`.
- right redshift: |dv| < 6000 km/s, dv = c (Z_QN - Z_VI) / (1 + Z_VI);
  `dv_z` gives the same statistics for the catalog's best redshift Z (the
  template fit where ZWARNING = 0) over the same quasars.
- a quasar classification (IS_QSO_QN == 1) is correct when the truth is a
  quasar or a galaxy (CLASS_PERSON 4) and the redshift is right.
- purity = correct quasar classifications / quasar classifications;
  completeness = truth quasars classified quasar with right z / truth quasars;
  catastrophic rate = truth quasars classified quasar with |dv| >= 6000 /
  quasar classifications.
- automatic subset: the quasar classifications without the QN_FLAG bit
  SINGLE_LINE (one line above c_th, the paper's candidates for visual
  inspection), scored as above; `automatic` also gives the fraction of the
  evaluated spectra flagged SINGLE_LINE and the purity of those quasars.
- per star subtype: the truth SIM_SUBTYPE of stars (CLASS_PERSON 1, the
  simulated truth's spectral types), the number and fraction called quasar.
- BAL sample: truth quasars classified quasar with CIV(1548) on the
  QuasarNET grid. A BAL when the visual flag (BAL_FLAG_VI == 1 or
  CLASS_PERSON 30) and BI_CIV > 0 both say so, a non-BAL when neither does;
  the rest, where the two labels disagree (the BAL finder trains on them
  with weight 0), are left out and counted in the BAL `n_excluded`.
  `bal` scores the catalog's BAL_FLAG (and BAL_PROB thresholds), `bal_qn`
  QuasarNET's BAL_FLAG_QN (and C_BAL_CIV thresholds), on the same sample.

Catalog rows are matched to truth rows on (PLATE, MJD, FIBERID), then
remaining rows on THING_ID (> 0). Science functions take arrays; `evaluate`
returns a JSON-ready dict; `command` is the thin `qsopipe evaluate` CLI.
"""

import json
import sys
from pathlib import Path

import click
import numpy as np

from qsopipe.pipeline.atomic import atomic_path
from qsopipe.pipeline.constants import CLASS_PERSON, QN_BAL_LINE, QUASAR_CLASSES, SPEED_OF_LIGHT_KMS, Z_CONF_CONFIDENT
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.grids import QN_WAVE_MAX, QN_WAVE_MIN
from qsopipe.pipeline.ids import match_rows, target_id
from qsopipe.pipeline.sdss.catalogs import balnicity_bal, read_dr12q, read_spall
from qsopipe.pipeline.sdss.fitsfile import open_fits, read_columns
from qsopipe.stages.catalog_columns import CONFIDENCE_COLUMNS
from qsopipe.stages.decision import classify
from qsopipe.stages.quasarnet import QNFlag, is_classified

#: Largest |dv| (km/s) of a right redshift.
DV_MAX = 6000.0
#: Rest EW_2796 (Angstrom) of a sightline that has an absorber.
MGII_EW_MIN = 0.3
#: Largest |z_abs difference| of a recovered absorber.
ABSORBER_DZ = 0.005
#: Confidence thresholds of the purity/completeness curves.
C_TH_GRID = np.round(np.arange(0.02, 1.0, 0.02), 2)
#: BAL_PROB thresholds of the BAL curves: C_TH_GRID and the low end, where the default BALP_TH lies.
BAL_PROB_GRID = np.concatenate([[0.002, 0.005, 0.01, 0.015], C_TH_GRID])
#: BI_CIV bin edges (km/s) of the BAL recognition by balnicity.
BI_EDGES = (0.0, 200.0, 500.0, 1000.0, 2000.0, np.inf)
#: Redshift bin edges of the per-z purity and completeness.
Z_EDGES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 7.0])
#: Velocity-offset histogram edges, km/s.
DV_EDGES = np.arange(-DV_MAX, DV_MAX + 1, 200.0)
#: Rest EW_2796 bin edges (Angstrom) of the absorber recovery.
EW_EDGES = np.array([0.0, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 6.0])
#: The BAL finder's line (CIV 1548) on the QuasarNET grid: truth redshift range of the BAL sample.
BAL_Z_RANGE = (QN_WAVE_MIN / QN_BAL_LINE[1] - 1.0, QN_WAVE_MAX / QN_BAL_LINE[1] - 1.0)
#: spAll CLASS -> CLASS_PERSON code.
SPALL_CLASSES = {"QSO": CLASS_PERSON["QSO"], "STAR": CLASS_PERSON["STAR"], "GALAXY": CLASS_PERSON["GALAXY"]}
CLASS_NAMES = {code: name for name, code in CLASS_PERSON.items()}


def velocity_offset(z, z_true):
    """dv = c (z - z_true) / (1 + z_true), km/s (arrays, same shape); NaN where z_true <= -1."""
    z_true = np.asarray(z_true, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dv = SPEED_OF_LIGHT_KMS * (np.asarray(z, dtype=np.float64) - z_true) / (1.0 + z_true)
    return np.where(1.0 + z_true > 0, dv, np.nan)


def nmad(values):
    """Normalised median absolute deviation, 1.4826 median(|x - median(x)|); NaN if empty."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.nan
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _ratio(numerator, denominator):
    return float(numerator) / float(denominator) if denominator else np.nan


def match_catalog(catalog, truth):
    """Pair catalog rows with truth rows: (PLATE, MJD, FIBERID), then THING_ID > 0.

    catalog, truth : {name: array} with PLATE, MJD, FIBERID, THING_ID.
    Returns (catalog_index, truth_index, by_thing_id): int arrays of the
    pairs and a bool array marking the pairs matched on THING_ID.
    """
    cat_key = target_id(catalog["PLATE"], catalog["MJD"], catalog["FIBERID"])
    truth_key = target_id(truth["PLATE"], truth["MJD"], truth["FIBERID"])
    truth_index, found = match_rows(cat_key, truth_key)
    cat_thing = np.asarray(catalog["THING_ID"], dtype=np.int64)
    by_thing_index, by_thing = match_rows(cat_thing, truth["THING_ID"])
    by_thing &= ~found & (cat_thing > 0)
    matched = found | by_thing
    truth_index = np.where(found, truth_index, by_thing_index)
    return np.flatnonzero(matched), truth_index[matched], by_thing[matched]


def classification_counts(classified, right_z, truth_qso, truth_galaxy):
    """Purity, completeness and catastrophic rate of quasar classifications.

    All arguments are bool arrays over the evaluated pairs.
    """
    correct = classified & right_z & (truth_qso | truth_galaxy)
    n_classified = int(classified.sum())
    n_truth = int(truth_qso.sum())
    n_found = int((truth_qso & classified & right_z).sum())
    n_catastrophic = int((truth_qso & classified & ~right_z).sum())
    return {
        "n_classified_qso": n_classified, "n_truth_qso": n_truth, "n_correct": int(correct.sum()),
        "n_truth_qso_found": n_found, "n_catastrophic": n_catastrophic,
        "purity": _ratio(correct.sum(), n_classified),
        "completeness": _ratio(n_found, n_truth),
        "catastrophic_rate": _ratio(n_catastrophic, n_classified),
    }


def threshold_curves(confidences, classifiable, right_z, truth_qso, truth_galaxy, n_th, c_th_single=0.0,
                     c_grid=C_TH_GRID):
    """Purity and completeness as c_th of the rule `qsopipe.stages.decision.classify` varies (c_th_single fixed).

    confidences : (npair, nline) line confidences; classifiable : bool (npair,)
    (no unclassified bit in QN_FLAG). Returns {'c_th', 'purity', 'completeness'} lists.
    """
    purity, completeness = [], []
    for c_th in c_grid:
        classified = classifiable & classify(confidences, c_th, n_th, c_th_single)
        counts = classification_counts(classified, right_z, truth_qso, truth_galaxy)
        purity.append(counts["purity"])
        completeness.append(counts["completeness"])
    return {"c_th": [float(c) for c in c_grid], "purity": purity, "completeness": completeness}


def automatic_subset(classified, single_line, right_z, truth_qso, truth_galaxy):
    """The automatic subset (quasar classifications without SINGLE_LINE) and the single-line quasars.

    All arguments are bool arrays over the evaluated pairs; single_line is
    QN_FLAG's SINGLE_LINE bit. Returns `classification_counts` of the
    subset, plus n_single_line (single-line quasars), fraction_single_line
    (of the evaluated spectra) and single_line_purity.
    """
    inspected = classified & single_line
    single = classification_counts(inspected, right_z, truth_qso, truth_galaxy)
    return {**classification_counts(classified & ~single_line, right_z, truth_qso, truth_galaxy),
            "n_single_line": single["n_classified_qso"],
            "fraction_single_line": _ratio(single["n_classified_qso"], inspected.size),
            "single_line_purity": single["purity"]}


def redshift_bins(z_true, z_qn, classified, right_z, truth_qso, truth_galaxy, edges=Z_EDGES):
    """Completeness per truth-redshift bin and purity per Z_QN bin."""
    correct = classified & right_z & (truth_qso | truth_galaxy)
    found = truth_qso & classified & right_z
    n_truth = np.histogram(z_true[truth_qso], edges)[0]
    n_found = np.histogram(z_true[found], edges)[0]
    n_classified = np.histogram(z_qn[classified], edges)[0]
    n_correct = np.histogram(z_qn[correct], edges)[0]
    return {
        "edges": edges.tolist(),
        "n_truth_qso": n_truth.tolist(), "completeness": [_ratio(a, b) for a, b in zip(n_found, n_truth)],
        "n_classified_qso": n_classified.tolist(), "purity": [_ratio(a, b) for a, b in zip(n_correct, n_classified)],
    }


def velocity_statistics(dv, edges=DV_EDGES):
    """Median, NMAD, mean, std and histogram of the right-redshift offsets (|dv| < DV_MAX), km/s."""
    right = dv[np.abs(dv) < DV_MAX]
    return {
        "n": int(right.size), "n_catastrophic": int(dv.size - right.size),
        "median": float(np.median(right)) if right.size else np.nan, "nmad": nmad(right),
        "mean": float(right.mean()) if right.size else np.nan, "std": float(right.std()) if right.size else np.nan,
        "edges": edges.tolist(), "counts": np.histogram(right, edges)[0].tolist(),
    }


def bal_metrics(c_bal, bal_flag, truth_bal, truth_non_bal, n_excluded=0, bal_grid=C_TH_GRID, bi_civ=None):
    """BAL quasars recognised and non-BAL quasars rejected: at the catalog's flag and vs the BAL threshold;
    with `bi_civ` (truth BI_CIV, km/s), the BALs recognised by the flag per BI_EDGES bin.

    c_bal : BAL_PROB or C_BAL_CIV; bal_flag : BAL_FLAG == 1 or BAL_FLAG_QN == 1; truth_bal, truth_non_bal :
    bool masks over the BAL sample (truth quasars classified quasar, CIV on
    the QuasarNET grid, known visual BAL flag). None when either is empty.
    `evaluate` passes the quasars whose visual flag and BI_CIV > 0 agree, the
    labels the BAL finder is trained on, and the number of others as n_excluded.
    """
    if not truth_bal.any() or not truth_non_bal.any():
        return None
    return {
        "n_bal": int(truth_bal.sum()), "n_non_bal": int(truth_non_bal.sum()), "n_excluded": int(n_excluded),
        "recognised": _ratio((bal_flag & truth_bal).sum(), truth_bal.sum()),
        "rejected": _ratio((~bal_flag & truth_non_bal).sum(), truth_non_bal.sum()),
        "bal_th": [float(c) for c in bal_grid],
        "recognised_vs_bal_th": [_ratio(((c_bal > c) & truth_bal).sum(), truth_bal.sum()) for c in bal_grid],
        "rejected_vs_bal_th": [_ratio(((c_bal <= c) & truth_non_bal).sum(), truth_non_bal.sum()) for c in bal_grid],
        "recognised_by_bi": None if bi_civ is None else _recognised_by_bi(bal_flag, truth_bal, bi_civ),
    }


def _recognised_by_bi(bal_flag, truth_bal, bi_civ):
    """{"edges": BI_EDGES (inf as None), "n", "recognised"}: BALs and the fraction flagged per BI_CIV bin."""
    bins = np.digitize(bi_civ, BI_EDGES[1:-1], right=True)
    n = [int((truth_bal & (bins == k)).sum()) for k in range(len(BI_EDGES) - 1)]
    flagged = [int((truth_bal & bal_flag & (bins == k)).sum()) for k in range(len(BI_EDGES) - 1)]
    return {"edges": list(BI_EDGES), "n": n, "recognised": [_ratio(f, m) for f, m in zip(flagged, n)]}


def mgii_sightlines(is_mgii_abs, truth_has_absorber):
    """Sightline accuracy of IS_MGII_ABS vs truth (an absorber with EW_2796 >= MGII_EW_MIN).

    Both bool arrays over searched sightlines.
    """
    predicted, actual = is_mgii_abs, truth_has_absorber
    return {
        "n_searched": int(predicted.size), "n_truth_absorber": int(actual.sum()), "n_flagged": int(predicted.sum()),
        "accuracy": _ratio((predicted == actual).sum(), predicted.size),
        "completeness": _ratio((predicted & actual).sum(), actual.sum()),
        "purity": _ratio((predicted & actual).sum(), predicted.sum()),
        "false_positive_rate": _ratio((predicted & ~actual).sum(), (~actual).sum()),
    }


def _expand_to_pairs(item_rows, pair_rows):
    """(item index, pair index) for every pair whose row equals an item's row."""
    order = np.argsort(pair_rows, kind="stable")
    sorted_rows = pair_rows[order]
    low = np.searchsorted(sorted_rows, item_rows, "left")
    counts = np.searchsorted(sorted_rows, item_rows, "right") - low
    items = np.repeat(np.arange(len(item_rows)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return items, order[np.repeat(low, counts) + offsets]


def has_match(pair_a, z_a, pair_b, z_b, dz=ABSORBER_DZ):
    """For each (pair_a, z_a), whether some (pair_b, z_b) has the same pair and |z_a - z_b| < dz."""
    if len(z_b) == 0:
        return np.zeros(len(z_a), dtype=bool)
    key_b = pair_b * 100.0 + z_b
    order = np.argsort(key_b)
    key_b, sorted_pair, sorted_z = key_b[order], pair_b[order], z_b[order]
    position = np.searchsorted(key_b, pair_a * 100.0 + z_a)
    matched = np.zeros(len(z_a), dtype=bool)
    for neighbour in (position - 1, position):
        inside = (neighbour >= 0) & (neighbour < len(key_b))
        index = np.clip(neighbour, 0, len(key_b) - 1)
        matched |= inside & (sorted_pair[index] == pair_a) & (np.abs(sorted_z[index] - z_a) < dz)
    return matched


def absorber_recovery(truth_pair, truth_z, truth_ew, cat_pair, cat_z, edges=EW_EDGES):
    """Truth absorbers recovered (|dz| < ABSORBER_DZ on the same sightline) per EW_2796 bin,
    and the fraction of catalog absorbers that match a truth absorber (purity)."""
    recovered = has_match(truth_pair, truth_z, cat_pair, cat_z)
    real = has_match(cat_pair, cat_z, truth_pair, truth_z)
    n_truth = np.histogram(truth_ew, edges)[0]
    n_recovered = np.histogram(truth_ew[recovered], edges)[0]
    return {
        "ew_edges": edges.tolist(), "n_truth": n_truth.tolist(), "n_recovered": n_recovered.tolist(),
        "completeness": [_ratio(a, b) for a, b in zip(n_recovered, n_truth)],
        "n_truth_total": int(truth_z.size), "n_recovered_total": int(recovered.sum()),
        "n_catalog": int(cat_z.size), "purity": _ratio(real.sum(), cat_z.size),
    }


def evaluate(catalog, truth, catalog_absorbers=None, truth_absorbers=None, c_th=None, n_th=None, bal_th=None,
             bal_prob_th=None, c_th_single=None):
    """Every metric of a catalog against a truth table, as a JSON-ready dict.

    Parameters
    ----------
    catalog : {name: array}: PLATE, MJD, FIBERID, THING_ID, IS_QSO_QN, Z_QN,
        Z (optional: the best redshift, scored as dv_z), NLINES_QN (optional: a catalog written before
        QN_FLAG had SINGLE_LINE lacks it and gets `automatic` None), QN_FLAG, C_LYA..C_HALPHA, C_BAL_CIV,
        BAL_FLAG_QN, BAL_PROB and BAL_FLAG (optional: older catalogs lack them and get `bal` None),
        MGII_PROB, IS_MGII_ABS, MGII_FLAG.
    truth : {name: array}, `qsopipe.pipeline.sdss.catalogs.DR12Q_COLUMNS`.
    catalog_absorbers : {name: array} with TARGETID, Z_ABS, or None.
    truth_absorbers : {name: array} with PLATE, MJD, FIBERID, Z_ABS, EW_2796,
        or None (no MgII scoring).
    c_th, n_th, bal_th, bal_prob_th, c_th_single : the catalog's thresholds (reported; c_th_single, None
        for a catalog made before it, also fixes the threshold curves' single-line rule).
    """
    cat_index, truth_index, by_thing = match_catalog(catalog, truth)
    cls = np.asarray(truth["CLASS_PERSON"])[truth_index]
    z_true = np.asarray(truth["Z_VI"], dtype=np.float64)[truth_index]
    confident = np.asarray(truth["Z_CONF_PERSON"])[truth_index] == Z_CONF_CONFIDENT
    is_qso_class = np.isin(cls, QUASAR_CLASSES)
    keep = ~(is_qso_class & ~confident)
    cat_index, truth_index, by_thing = cat_index[keep], truth_index[keep], by_thing[keep]
    cls, z_true = cls[keep], z_true[keep]
    subtype = np.asarray(truth["SIM_SUBTYPE"])[truth_index]

    truth_qso = np.isin(cls, QUASAR_CLASSES)
    truth_galaxy = cls == CLASS_PERSON["GALAXY"]
    column = {name: np.asarray(values)[cat_index] for name, values in catalog.items()}
    classified = column["IS_QSO_QN"] == 1
    dv = velocity_offset(column["Z_QN"], z_true)
    right_z = np.isfinite(dv) & (np.abs(dv) < DV_MAX)
    classifiable = is_classified(column["QN_FLAG"])
    single_line = (column["QN_FLAG"] & QNFlag.SINGLE_LINE) != 0
    confidences = np.stack([column[name] for name in CONFIDENCE_COLUMNS], axis=1)

    metrics = {
        "n_catalog": int(len(catalog["PLATE"])), "n_truth": int(len(truth["PLATE"])),
        "n_matched": int(keep.size), "n_matched_thing_id": int(by_thing.sum()),
        "n_excluded": int((~keep).sum()), "n_evaluated": int(cat_index.size),
        "c_th": c_th, "n_th": n_th, "c_th_single": c_th_single, "bal_th": bal_th, "bal_prob_th": bal_prob_th,
        "qso": classification_counts(classified, right_z, truth_qso, truth_galaxy),
        "automatic": (automatic_subset(classified, single_line, right_z, truth_qso, truth_galaxy)
                      if "NLINES_QN" in column else None),
        "dv": velocity_statistics(dv[truth_qso & classified]),
        "dv_z": (velocity_statistics(velocity_offset(column["Z"], z_true)[truth_qso & classified])
                 if "Z" in column else None),
        "redshift_bins": redshift_bins(z_true, column["Z_QN"], classified, right_z, truth_qso, truth_galaxy),
        "threshold_curves": {
            f"n_th_{n}": threshold_curves(confidences, classifiable, right_z, truth_qso, truth_galaxy, n,
                                          c_th_single or 0.0)
            for n in (1, 2)
        },
        "per_class": per_class(cls, classified, right_z),
        "per_star_subtype": per_star_subtype(cls, subtype, classified,
                                             classified & ~single_line if "NLINES_QN" in column else None),
    }

    bal_vi = np.asarray(truth["BAL_FLAG_VI"])[truth_index]
    bal_bi = balnicity_bal(np.asarray(truth["BI_CIV"])[truth_index])
    civ_on_grid = (z_true > BAL_Z_RANGE[0]) & (z_true < BAL_Z_RANGE[1])
    bal_sample = truth_qso & classified & civ_on_grid
    visual_bal = bal_sample & ((bal_vi == 1) | (cls == CLASS_PERSON["QSO_BAL"]))
    visual_non_bal = bal_sample & (bal_vi == 0) & (cls != CLASS_PERSON["QSO_BAL"])
    disagree = (visual_bal & ~bal_bi) | (visual_non_bal & bal_bi)
    sample = (visual_bal & bal_bi, visual_non_bal & ~bal_bi, disagree.sum())
    bi_civ = np.asarray(truth["BI_CIV"], np.float64)[truth_index]
    metrics["bal"] = (bal_metrics(column["BAL_PROB"], column["BAL_FLAG"] == 1, *sample, BAL_PROB_GRID, bi_civ)
                      if "BAL_FLAG" in column else None)
    metrics["bal_qn"] = bal_metrics(column["C_BAL_CIV"], column["BAL_FLAG_QN"] == 1, *sample, bi_civ=bi_civ)
    metrics["mgii"] = None
    if truth_absorbers is not None:
        metrics["mgii"] = mgii_metrics(catalog, truth, cat_index, truth_index, column,
                                       catalog_absorbers, truth_absorbers)
    return metrics


def per_class(cls, classified, right_z):
    """Per truth class: number, fraction classified quasar, and of those the fraction with right z."""
    out = {}
    for code in np.unique(cls):
        mine = cls == code
        name = CLASS_NAMES.get(int(code), str(int(code)))
        out[name] = {
            "n": int(mine.sum()), "n_classified_qso": int((mine & classified).sum()),
            "fraction_classified_qso": _ratio((mine & classified).sum(), mine.sum()),
            "fraction_right_z_of_qso": _ratio((mine & classified & right_z).sum(), (mine & classified).sum()),
        }
    return out


def per_star_subtype(cls, subtype, classified, automatic=None):
    """Per star subtype: number and fraction classified quasar; None when no star has a subtype.

    cls : int (npair,), CLASS_PERSON; subtype : str (npair,), SIM_SUBTYPE
    ('' where none); classified : bool (npair,), IS_QSO_QN == 1; automatic :
    bool (npair,), quasars of the automatic subset (no SINGLE_LINE), or None.
    Returns {subtype: {'n', 'n_classified_qso', 'fraction_classified_qso'}}, with
    'n_automatic' and 'fraction_automatic' when `automatic` is given.
    """
    star = (cls == CLASS_PERSON["STAR"]) & (subtype != "")
    if not star.any():
        return None
    out = {}
    for name in np.unique(subtype[star]):
        mine = star & (subtype == name)
        out[str(name)] = {"n": int(mine.sum()), "n_classified_qso": int((mine & classified).sum()),
                          "fraction_classified_qso": _ratio((mine & classified).sum(), mine.sum())}
        if automatic is not None:
            out[str(name)].update(n_automatic=int((mine & automatic).sum()),
                                  fraction_automatic=_ratio((mine & automatic).sum(), mine.sum()))
    return out


def mgii_metrics(catalog, truth, cat_index, truth_index, column, catalog_absorbers, truth_absorbers):
    """Sightline accuracy and absorber recovery on the searched sightlines of the matched pairs."""
    searched = (column["MGII_FLAG"] == 0) & (column["MGII_PROB"] >= 0)
    truth_key = target_id(truth["PLATE"], truth["MJD"], truth["FIBERID"])
    abs_key = target_id(truth_absorbers["PLATE"], truth_absorbers["MJD"], truth_absorbers["FIBERID"])
    abs_truth_row, found = match_rows(abs_key, truth_key)
    ew = np.asarray(truth_absorbers["EW_2796"], dtype=np.float64)
    strong_rows = np.unique(abs_truth_row[found & (ew >= MGII_EW_MIN)])
    truth_has = np.isin(truth_index, strong_rows)
    sightlines = mgii_sightlines(column["IS_MGII_ABS"][searched] == 1, truth_has[searched])

    pairs = np.flatnonzero(searched)
    items, truth_pair = _expand_to_pairs(abs_truth_row[found], truth_index[pairs])
    truth_z = np.asarray(truth_absorbers["Z_ABS"], dtype=np.float64)[found][items]
    truth_ew = ew[found][items]
    if catalog_absorbers is None:
        catalog_absorbers = {"TARGETID": np.zeros(0, np.int64), "Z_ABS": np.zeros(0)}
    cat_key = target_id(catalog["PLATE"], catalog["MJD"], catalog["FIBERID"])
    cat_abs_row, cat_found = match_rows(catalog_absorbers["TARGETID"], cat_key)
    cat_items, cat_pair = _expand_to_pairs(cat_abs_row[cat_found], cat_index[pairs])
    cat_z = np.asarray(catalog_absorbers["Z_ABS"], dtype=np.float64)[cat_found][cat_items]
    return {"sightlines": sightlines,
            "absorbers": absorber_recovery(truth_pair.astype(np.float64), truth_z, truth_ew,
                                           cat_pair.astype(np.float64), cat_z)}


def json_ready(value):
    """`value` with numpy scalars as Python numbers and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(item) for item in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


CATALOG_READ = ("PLATE", "MJD", "FIBERID", "THING_ID", "IS_QSO_QN", "Z_QN", "Z", "NLINES_QN", "QN_FLAG",
                *CONFIDENCE_COLUMNS,
                "C_BAL_CIV", "BAL_FLAG_QN", "BAL_PROB", "BAL_FLAG", "MGII_PROB", "IS_MGII_ABS", "MGII_FLAG")


def read_catalog(path):
    """(catalog columns, absorber columns, header thresholds {'c_th', 'n_th', 'c_th_single', 'bal_th',
    'bal_prob_th'}) of a catalog file."""
    with open_fits(path) as fits:
        if "CATALOG" not in fits:
            raise InputError(path, "no CATALOG HDU")
        catalog = read_columns(fits["CATALOG"], CATALOG_READ)
        header = fits["CATALOG"].read_header()
        absorbers = read_columns(fits["MGII_ABSORBERS"], ("TARGETID", "Z_ABS")) if "MGII_ABSORBERS" in fits else None
    thresholds = {"c_th": header.get("C_TH"), "n_th": header.get("N_TH"), "c_th_single": header.get("C_TH1"),
                  "bal_th": header.get("BAL_TH"), "bal_prob_th": header.get("BALP_TH")}
    return catalog, absorbers, thresholds


def read_truth_absorbers(path):
    """The MGII_ABSORBERS HDU of a truth file (PLATE, MJD, FIBERID, Z_ABS, EW_2796), or None."""
    with open_fits(path) as fits:
        if "MGII_ABSORBERS" not in fits:
            return None
        return read_columns(fits["MGII_ABSORBERS"], ("PLATE", "MJD", "FIBERID", "Z_ABS", "EW_2796"))


def truth_from_spall(spall):
    """DR12Q-style truth from spAll columns: CLASS -> CLASS_PERSON, Z -> Z_VI.

    Z_CONF_PERSON is 3 where ZWARNING == 0, else 1 (so uncertain quasars are
    left out); BAL_FLAG_VI is -1 (unknown: no BAL scoring); SIM_SUBTYPE is ''.
    """
    classes = np.char.upper(np.char.strip(np.asarray(spall["CLASS"]).astype(str)))
    n = len(classes)
    return {
        "PLATE": spall["PLATE"], "MJD": spall["MJD"], "FIBERID": spall["FIBERID"], "THING_ID": spall["THING_ID"],
        "CLASS_PERSON": np.array([SPALL_CLASSES.get(c, CLASS_PERSON["UNKNOWN"]) for c in classes], dtype=np.int16),
        "Z_VI": np.asarray(spall["Z"], dtype=np.float64),
        "Z_CONF_PERSON": np.where(np.asarray(spall["ZWARNING"]) == 0, Z_CONF_CONFIDENT, 1).astype(np.int16),
        "BAL_FLAG_VI": np.full(n, -1, dtype=np.int16), "BI_CIV": np.full(n, np.nan),
        "SIM_SUBTYPE": np.full(n, "", dtype="U8"),
    }


@click.command()
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False))
@click.option("--truth", type=click.Path(exists=True, dir_okay=False), help="DR12Q-style truth table (or simulated truth.fits).")
@click.option("--spall", type=click.Path(exists=True, dir_okay=False), help="spAll file: use its CLASS/Z as labels.")
@click.option("--plots", "plot_dir", type=click.Path(file_okay=False), show_default="CATALOG-evaluate/ beside the catalog",
              help="Plot directory.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the metrics JSON here.")
def command(catalog, truth, spall, plot_dir, json_path):
    """Score CATALOG against --truth (DR12Q-style) or --spall labels: JSON on stdout, PNG plots."""
    from qsopipe.stages.evaluate_plots import make_plots

    if (truth is None) == (spall is None):
        raise click.UsageError("give exactly one of --truth and --spall")
    columns, absorbers, thresholds = read_catalog(catalog)
    if truth is not None:
        labels, truth_absorbers = read_dr12q(truth), read_truth_absorbers(truth)
    else:
        labels, truth_absorbers = truth_from_spall(read_spall(spall)), None
    metrics = evaluate(columns, labels, absorbers, truth_absorbers, **thresholds)
    metrics["catalog"] = str(catalog)
    metrics["labels"] = {"truth": truth, "spall": spall}
    metrics = json_ready(metrics)
    text = json.dumps(metrics, indent=1)
    if json_path:
        with atomic_path(json_path) as tmp, open(tmp, "w") as handle:
            handle.write(text + "\n")
    plot_dir = Path(plot_dir) if plot_dir else Path(catalog).with_name(Path(catalog).stem + "-evaluate")
    for path in make_plots(metrics, plot_dir):
        click.echo(str(path), err=True)
    sys.stdout.write(text + "\n")
