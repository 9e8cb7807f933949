"""Evaluate stage: metrics on a hand-made catalog/truth pair, numbers computed by hand."""

import json

import fitsio
import numpy as np
import pytest
from click.testing import CliRunner

from qsopipe.pipeline.constants import SPEED_OF_LIGHT_KMS
from qsopipe.pipeline.ids import target_id
from qsopipe.stages import evaluate as ev
from qsopipe.stages.catalog import write_catalog
from qsopipe.stages.catalog_columns import ABSORBER_COLUMNS, CATALOG_COLUMNS, CONFIDENCE_COLUMNS
from qsopipe.stages.quasarnet import QNFlag

# Fibers 1..11 of plate 1, MJD 2. Truth rows: fiber -> (CLASS_PERSON, Z_VI, Z_CONF_PERSON, BAL_FLAG_VI).
TRUTH = {
    1: (3, 2.0, 3, 0),    # quasar, found
    2: (3, 2.0, 3, 0),    # quasar, classified with dv ~ 10000 km/s: catastrophic (on a single line)
    3: (30, 2.5, 3, 1),   # BAL quasar, found, BAL flagged
    4: (3, 1.0, 3, 0),    # quasar, missed
    5: (1, 0.0, 3, 0),    # star (WD) classified quasar on a single line: wrong
    6: (4, 0.5, 3, 0),    # galaxy classified quasar with right z: correct
    7: (4, 0.5, 3, 0),    # galaxy, not quasar
    8: (3, 1.8, 2, 0),    # uncertain quasar: excluded
    9: (1, 0.0, 3, 0),    # star (M), not quasar
}
#: Simulated subtypes of the truth stars ('' elsewhere).
STAR_SUBTYPES = {5: "WD", 9: "M"}
# Fiber 10 matches truth (plate 9, MJD 9, fiber 5) on THING_ID 1010; fiber 11 matches nothing.
# Catalog: fiber -> (IS_QSO_QN, Z_QN, lines with C = 0.9 (others 0.1), BAL_FLAG_QN, MGII searched, IS_MGII_ABS);
# the quasars on one line (fibers 2 and 5) carry QN_FLAG SINGLE_LINE. The BAL CNN gets fiber 1 right where
# QuasarNET does not: BAL_PROB 0.9 on fiber 3, 0.05 elsewhere, BAL_FLAG = quasar and BAL_PROB > 0.5.
CATALOG = {
    1: (1, 2.0, 2, 1, True, 1), 2: (1, 2.1, 1, 0, True, 1), 3: (1, 2.5, 2, 1, True, 0), 4: (0, 1.0, 0, 0, False, 0),
    5: (1, 1.5, 1, 0, False, 0), 6: (1, 0.5, 2, 0, False, 0), 7: (0, 0.5, 0, 0, False, 0),
    8: (1, 1.8, 2, 0, False, 0), 9: (0, 0.0, 0, 0, False, 0), 10: (1, 3.0, 2, 0, True, 1),
    11: (1, 2.0, 2, 0, False, 0),
}


def make_truth():
    fibers = sorted(TRUTH)
    rows = [TRUTH[f] for f in fibers] + [(3, 3.0, 3, 0)]
    return {
        "PLATE": np.array([1] * len(fibers) + [9], np.int32), "MJD": np.array([2] * len(fibers) + [9], np.int32),
        "FIBERID": np.array(fibers + [5], np.int32), "THING_ID": np.array([100 + f for f in fibers] + [1010]),
        "CLASS_PERSON": np.array([r[0] for r in rows], np.int16), "Z_VI": np.array([r[1] for r in rows]),
        "Z_CONF_PERSON": np.array([r[2] for r in rows], np.int16),
        "BAL_FLAG_VI": np.array([r[3] for r in rows], np.int16),
        "BI_CIV": np.where(np.array([r[3] for r in rows]) == 1, 500.0, 0.0),
        "SIM_SUBTYPE": np.array([STAR_SUBTYPES.get(f, "") for f in fibers] + [""], "U8"),
    }


def make_catalog():
    """Every catalog column (CATALOG_COLUMNS), the hand-made values set."""
    fibers = sorted(CATALOG)
    n = len(fibers)
    catalog = {c.name: np.zeros(n, dtype=c.dtype if not c.dtype.startswith("U") else "U16") for c in CATALOG_COLUMNS}
    catalog.update(PLATE=np.ones(n, np.int32), MJD=np.full(n, 2, np.int32), FIBERID=np.array(fibers, np.int32))
    catalog["THING_ID"] = np.array([100 + f if f <= 9 else (1010 if f == 10 else -1) for f in fibers])
    catalog["TARGETID"] = target_id(catalog["PLATE"], catalog["MJD"], catalog["FIBERID"])
    rows = [CATALOG[f] for f in fibers]
    catalog["IS_QSO_QN"] = np.array([r[0] for r in rows], np.int16)
    catalog["Z_QN"] = np.array([r[1] for r in rows])
    confidences = np.full((n, len(CONFIDENCE_COLUMNS)), 0.1, np.float32)
    for i, r in enumerate(rows):
        confidences[i, :r[2]] = 0.9
    for j, name in enumerate(CONFIDENCE_COLUMNS):
        catalog[name] = confidences[:, j]
    catalog["NLINES_QN"] = np.array([r[2] for r in rows], np.int16)
    single_line = (catalog["IS_QSO_QN"] == 1) & (catalog["NLINES_QN"] == 1)
    catalog["QN_FLAG"] = np.where(single_line, QNFlag.SINGLE_LINE, 0).astype(np.int32)
    catalog["BAL_FLAG_QN"] = np.array([r[3] for r in rows], np.int16)
    catalog["C_BAL_CIV"] = np.where(catalog["BAL_FLAG_QN"] == 1, 0.8, 0.2).astype(np.float32)
    catalog["BAL_PROB"] = np.where(catalog["FIBERID"] == 3, 0.9, 0.05).astype(np.float32)
    catalog["BAL_FLAG"] = ((catalog["IS_QSO_QN"] == 1) & (catalog["BAL_PROB"] > 0.5)).astype(np.int16)
    searched = np.array([r[4] for r in rows])
    catalog["MGII_FLAG"] = np.where(searched, 0, 1).astype(np.int32)
    catalog["MGII_PROB"] = np.where(searched, 0.5, -1).astype(np.float32)
    catalog["IS_MGII_ABS"] = np.array([r[5] for r in rows], np.int16)
    return catalog


def make_absorbers():
    truth_abs = {"PLATE": np.array([1, 1, 1, 9, 1], np.int32), "MJD": np.array([2, 2, 2, 9, 2], np.int32),
                 "FIBERID": np.array([1, 1, 3, 5, 4], np.int32), "Z_ABS": np.array([1.0, 0.8, 1.5, 2.2, 1.1]),
                 "EW_2796": np.array([0.5, 0.2, 1.2, 2.0, 1.0])}
    fibers = np.array([1, 10, 2])
    n = len(fibers)
    cat_abs = {c.name: np.zeros(n, dtype=c.dtype) for c in ABSORBER_COLUMNS}
    cat_abs.update(PLATE=np.ones(n, np.int32), MJD=np.full(n, 2, np.int32), FIBERID=fibers.astype(np.int32),
                   TARGETID=target_id(1, 2, fibers), Z_ABS=np.array([1.002, 2.2, 1.3]))
    return cat_abs, truth_abs


def test_velocity_offset_and_nmad():
    assert ev.velocity_offset(2.1, 2.0) == pytest.approx(SPEED_OF_LIGHT_KMS * 0.1 / 3.0)
    assert ev.nmad([0.0, 1.0, 2.0]) == pytest.approx(1.4826)


def test_bal_sample_leaves_out_disagreeing_labels():
    """Fiber 1 (visual non-BAL, flagged BAL) gets BI_CIV > 0: its labels disagree, so it leaves the sample."""
    truth = make_truth()
    truth["BI_CIV"][0] = 300.0
    metrics = ev.evaluate(make_catalog(), truth)
    for bal in (metrics["bal"], metrics["bal_qn"]):
        assert (bal["n_bal"], bal["n_non_bal"], bal["n_excluded"]) == (1, 2, 1)
        assert bal["recognised"] == 1.0 and bal["rejected"] == 1.0


def test_hand_made_metrics():
    cat_abs, truth_abs = make_absorbers()
    metrics = ev.evaluate(make_catalog(), make_truth(), cat_abs, truth_abs, c_th=0.4, n_th=1)
    assert metrics["n_matched"] == 10 and metrics["n_excluded"] == 1 and metrics["n_matched_thing_id"] == 1
    qso = metrics["qso"]
    assert (qso["n_classified_qso"], qso["n_correct"], qso["n_truth_qso"], qso["n_truth_qso_found"]) == (6, 4, 5, 3)
    assert qso["purity"] == pytest.approx(4 / 6)
    assert qso["completeness"] == pytest.approx(3 / 5)
    assert qso["catastrophic_rate"] == pytest.approx(1 / 6)
    assert metrics["dv"]["n"] == 3 and metrics["dv"]["n_catastrophic"] == 1 and metrics["dv"]["median"] == 0

    curves = metrics["threshold_curves"]
    at_04 = curves["n_th_1"]["c_th"].index(0.4)
    assert curves["n_th_1"]["purity"][at_04] == pytest.approx(4 / 6)
    assert curves["n_th_1"]["completeness"][at_04] == pytest.approx(3 / 5)
    assert curves["n_th_2"]["purity"][at_04] == pytest.approx(1.0)
    assert curves["n_th_2"]["completeness"][at_04] == pytest.approx(3 / 5)

    bins = metrics["redshift_bins"]
    z2 = bins["edges"].index(2.0)
    assert bins["n_truth_qso"][z2] == 2 and bins["completeness"][z2] == pytest.approx(0.5)

    bal = metrics["bal"]
    assert (bal["n_bal"], bal["n_non_bal"]) == (1, 3)
    assert bal["recognised"] == 1.0 and bal["rejected"] == 1.0
    assert bal["rejected_vs_bal_th"][bal["bal_th"].index(0.02)] == pytest.approx(0.0)
    assert bal["recognised_by_bi"]["n"] == [0, 1, 0, 0, 0] and bal["recognised_by_bi"]["recognised"][1] == 1.0
    bal = metrics["bal_qn"]
    assert (bal["n_bal"], bal["n_non_bal"]) == (1, 3)
    assert bal["recognised"] == 1.0 and bal["rejected"] == pytest.approx(2 / 3)
    assert bal["n_excluded"] == 0
    below, above = bal["bal_th"].index(0.18), bal["bal_th"].index(0.5)  # C_BAL_CIV is 0.2 or 0.8
    assert bal["recognised_vs_bal_th"][below] == 1.0 and bal["rejected_vs_bal_th"][below] == 0.0
    assert bal["recognised_vs_bal_th"][above] == 1.0 and bal["rejected_vs_bal_th"][above] == pytest.approx(2 / 3)

    sightlines = metrics["mgii"]["sightlines"]
    assert sightlines["n_searched"] == 4 and sightlines["accuracy"] == pytest.approx(0.5)
    assert sightlines["completeness"] == pytest.approx(2 / 3) and sightlines["purity"] == pytest.approx(2 / 3)
    absorbers = metrics["mgii"]["absorbers"]
    assert absorbers["n_truth_total"] == 4 and absorbers["n_recovered_total"] == 2
    assert absorbers["n_truth"] == [1, 1, 0, 1, 0, 1, 0] and absorbers["n_recovered"] == [0, 1, 0, 0, 0, 1, 0]
    assert absorbers["purity"] == pytest.approx(2 / 3)

    per_class = metrics["per_class"]
    assert per_class["STAR"]["n"] == 2 and per_class["STAR"]["fraction_classified_qso"] == 0.5
    assert per_class["GALAXY"]["fraction_right_z_of_qso"] == 1.0


def test_automatic_subset_leaves_out_the_single_line_quasars():
    """Quasars 1, 3, 6, 10 are automatic (all right); 2 (catastrophic) and 5 (a star) rest on one line, 2 of
    the 9 spectra evaluated."""
    automatic = ev.evaluate(make_catalog(), make_truth())["automatic"]
    assert (automatic["n_classified_qso"], automatic["n_correct"], automatic["n_truth_qso_found"]) == (4, 4, 3)
    assert automatic["purity"] == 1.0 and automatic["completeness"] == pytest.approx(3 / 5)
    assert automatic["catastrophic_rate"] == 0.0
    assert automatic["n_single_line"] == 2 and automatic["fraction_single_line"] == pytest.approx(2 / 9)
    assert automatic["single_line_purity"] == 0.0


def test_single_line_quasars_stay_classifiable_in_the_threshold_curves():
    """At the catalog's c_th the n_th = 1 curve is the catalog's own decision, single-line quasars included."""
    metrics = ev.evaluate(make_catalog(), make_truth())
    at_04 = metrics["threshold_curves"]["n_th_1"]["c_th"].index(0.4)
    assert metrics["threshold_curves"]["n_th_1"]["purity"][at_04] == metrics["qso"]["purity"] == pytest.approx(4 / 6)
    catalog = make_catalog()
    catalog["QN_FLAG"][catalog["FIBERID"] == 5] |= QNFlag.UNUSABLE_INPUT
    curves = ev.evaluate(catalog, make_truth())["threshold_curves"]["n_th_1"]
    assert curves["purity"][at_04] == pytest.approx(4 / 5)


def test_catalog_without_nlines_has_no_automatic_subset():
    catalog = make_catalog()
    del catalog["NLINES_QN"]
    assert ev.evaluate(catalog, make_truth())["automatic"] is None


def test_per_star_subtype_fraction_called_quasar():
    per_subtype = ev.evaluate(make_catalog(), make_truth())["per_star_subtype"]
    assert per_subtype == {"M": {"n": 1, "n_classified_qso": 0, "fraction_classified_qso": 0.0,
                                 "n_automatic": 0, "fraction_automatic": 0.0},
                           "WD": {"n": 1, "n_classified_qso": 1, "fraction_classified_qso": 1.0,
                                  "n_automatic": 0, "fraction_automatic": 0.0}}  # the WD rests on one line
    truth = make_truth()
    truth["SIM_SUBTYPE"][:] = ""
    assert ev.evaluate(make_catalog(), truth)["per_star_subtype"] is None


def _write_truth(path, truth, truth_abs):
    with fitsio.FITS(str(path), "rw", clobber=True) as fits:
        fits.write(truth, extname="TRUTH")
        fits.write(truth_abs, extname="MGII_ABSORBERS")


@pytest.fixture()
def catalog_and_truth(tmp_path):
    """(catalog FITS, truth FITS) of the hand-made catalog and truth."""
    cat_abs, truth_abs = make_absorbers()
    catalog_path = tmp_path / "catalog.fits"
    inputs = {"PATH": np.array(["a"]), "PLATE": np.array([1]), "MJD": np.array([2]),
              "STATUS": np.array(["done"]), "REASON": np.array([""])}
    write_catalog(catalog_path, make_catalog(), cat_abs, inputs, [("C_TH", 0.4, ""), ("N_TH", 1, "")])
    truth_path = tmp_path / "truth.fits"
    _write_truth(truth_path, make_truth(), truth_abs)
    return catalog_path, truth_path


def test_best_redshift_is_scored_beside_z_qn():
    catalog, truth = make_catalog(), make_truth()
    catalog["Z"] = catalog["Z_QN"]
    metrics = ev.evaluate(catalog, truth)
    assert metrics["dv_z"] == metrics["dv"] and metrics["dv"]["n"] > 0
    catalog["Z"] = catalog["Z_QN"] + 0.001 * (1 + catalog["Z_QN"])
    assert ev.evaluate(catalog, truth)["dv_z"]["median"] == pytest.approx(299.79, abs=0.1)
    del catalog["Z"]
    assert ev.evaluate(catalog, truth)["dv_z"] is None


def test_command_writes_json_and_plots(tmp_path, catalog_and_truth):
    catalog_path, truth_path = catalog_and_truth
    result = CliRunner().invoke(ev.command, [str(catalog_path), "--truth", str(truth_path),
                                             "--json", str(tmp_path / "m.json")], catch_exceptions=False)
    assert result.exit_code == 0
    metrics = json.loads(result.stdout)
    assert metrics["qso"]["purity"] == pytest.approx(4 / 6) and metrics["c_th"] == 0.4
    assert metrics["automatic"]["purity"] == 1.0 and metrics["automatic"]["n_single_line"] == 2
    assert metrics["per_star_subtype"]["WD"]["fraction_classified_qso"] == 1.0
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    plots = sorted(p.name for p in (tmp_path / "catalog-evaluate").iterdir())
    assert plots == ["bal_vs_threshold.png", "dv_histogram.png", "mgii_completeness_vs_ew.png",
                     "purity_completeness_vs_cth.png", "redshift_bins.png"]
    assert "dv_histogram.png" in result.stderr


def test_command_imports_no_tensorflow(tmp_path, catalog_and_truth, run_without_tensorflow):
    catalog_path, truth_path = catalog_and_truth
    run_without_tensorflow("evaluate", catalog_path, "--truth", truth_path, "--json", tmp_path / "no-tf.json")
    assert json.loads((tmp_path / "no-tf.json").read_text())["qso"]["purity"] == pytest.approx(4 / 6)


def test_spall_labels(tmp_path):
    catalog = make_catalog()
    spall = {"PLATE": catalog["PLATE"], "MJD": catalog["MJD"], "FIBERID": catalog["FIBERID"],
             "THING_ID": catalog["THING_ID"], "CLASS": np.array(["QSO"] * 4 + ["STAR", "GALAXY"] * 3 + ["QSO"]),
             "Z": catalog["Z_QN"], "ZWARNING": np.zeros(11, np.int64)}
    metrics = ev.evaluate(catalog, ev.truth_from_spall(spall))
    assert set(metrics["per_class"]) == {"QSO", "STAR", "GALAXY"}
    assert metrics["bal"] is None and metrics["bal_qn"] is None and metrics["mgii"] is None
    assert metrics["per_star_subtype"] is None
    # QSO rows 1-4 and 11: 4 classified with their own redshift; row 4 not classified.
    assert metrics["qso"]["completeness"] == pytest.approx(4 / 5)
