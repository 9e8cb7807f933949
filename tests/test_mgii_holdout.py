"""The shipped MgII stage on a small simulated hold-out: the model card's acceptance figures, on fewer plates.

Runs benchmarks/mgii_holdout.py's scoring on 3 fresh simulated plates
(seed and plate numbers used by no training or tuning run). The bounds sit
at most four standard errors of a 3-plate sample below this sample's figures
(with the simulator's redrock quasars, whole-path absorbers and CIV/SiIV
confusers, and the shipped candidate vetter: accuracy 0.948, localised on
IS_MGII_ABS = 1 sightlines 0.950, all 0.778; the finder over the whole
path, purity and completeness at EW_2796 >= 1 A and S/N >= 5, 0.997 /
0.887 in the CNN window and 1.000 / 0.795 between Lyman-alpha and CIV), so
a change of the finder, the vetter or the weights that costs accuracy,
localisation, purity or completeness fails here.
"""

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def _holdout_module():
    spec = importlib.util.spec_from_file_location("mgii_holdout", REPO / "benchmarks" / "mgii_holdout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    from qsopipe.models.mgii import load_predictor
    from qsopipe.models.store import default_weights
    from qsopipe.models.train_mgii import read_sim_sightlines
    from qsopipe.pipeline.config import defaults
    from qsopipe.stages.mgii import doublet_finder
    from qsopipe.stages.simulate.command import command as simulate

    sim = tmp_path_factory.mktemp("mgii_holdout")
    result = CliRunner().invoke(simulate, ["--out", str(sim), "--plates", "3", "--seed", "4711",
                                           "--first-plate", "8700", "--first-mjd", "58700"])
    assert result.exit_code == 0, result.output
    return _holdout_module().evaluate(read_sim_sightlines(sim), load_predictor(str(default_weights("mgii"))),
                                     defaults()["mgii_threshold"], doublet_finder(defaults()))


def test_shipped_mgii_stage_keeps_its_accuracy_and_localisation(metrics):
    assert metrics["sightlines"] > 1400 and metrics["positives"] > 300
    assert metrics["accuracy"] >= 0.935, metrics["accuracy"]
    assert metrics["localised_on_is_mgii_abs"] >= 0.90, metrics["localised_on_is_mgii_abs"]
    assert metrics["localised_all"] >= 0.74, metrics["localised_all"]


def test_shipped_mgii_stage_measures_equivalent_widths_without_bias(metrics):
    assert abs(metrics["ew_2796_median_ratio"] - 1) <= 0.05, metrics["ew_2796_median_ratio"]
    assert metrics["false_per_fitted_absorber_free"] <= 0.02


def test_the_finder_over_the_whole_path_keeps_its_purity_and_completeness(metrics):
    window, lya_civ = metrics["by_region"]["CNN_WINDOW"], metrics["by_region"]["LYA_CIV"]
    assert window["purity"] >= 0.985 and window["completeness"] >= 0.85, window
    assert lya_civ["absorbers_found"] > 60 and lya_civ["purity"] >= 0.95 and lya_civ["completeness"] >= 0.72, lya_civ
