"""The MgII candidate vetter (qsopipe.stages.mgii_vetter): its numpy network, file round trip, and the shipped
vetter's decisions on clear cases, through the doublet finder."""

import numpy as np
import pytest

from qsopipe.models.train_mgii_vetter import POOL_CRITERIA, build_network, to_vetter
from qsopipe.pipeline.config import defaults
from qsopipe.pipeline.constants import MGII_2796, MGII_2803
from qsopipe.stages.mgii import doublet_finder, vetter_path
from qsopipe.stages.mgii_fit import DoubletCriteria, running_continuum, search_doublets
from qsopipe.stages.mgii_vetter import FEATURES, Vetter, load_vetter, save_vetter
from test_mgii_fit import _spectrum

#: Window covering the test doublets at z 1.3 and 1.6 (2796 at 6431 and 7271 A).
WINDOW = ([1600 * 3.7], [2770 * 3.7])


def test_the_numpy_network_is_the_keras_network(tmp_path):
    """The vetter evaluates the trained Keras perceptron's layers with numpy to the same probabilities."""
    network = build_network(len(FEATURES))
    rng = np.random.default_rng(3)
    features = rng.normal(size=(50, len(FEATURES)))
    mean, scale = rng.normal(size=len(FEATURES)), 1 + rng.random(len(FEATURES))
    vetter = to_vetter(network, mean, scale, {"CNN_WINDOW": 0.5, "LYA_CIV": 0.7})
    expected = network.predict((features - mean) / scale, verbose=0)[:, 0]
    np.testing.assert_allclose(vetter.probability(features), expected, rtol=1e-5, atol=1e-6)
    save_vetter(tmp_path / "v.json", vetter, {"sims": ["x"]})
    loaded = load_vetter(str(tmp_path / "v.json"))
    np.testing.assert_allclose(loaded.probability(features), expected, rtol=1e-5, atol=1e-6)
    assert loaded.thresholds == {"CNN_WINDOW": 0.5, "LYA_CIV": 0.7}


def test_thresholds_are_per_region():
    """accepts() compares P with the threshold of each candidate's region."""
    single = (np.zeros((len(FEATURES), 1)), np.array([0.0]))  # P = 0.5 for every input
    vetter = Vetter((single,), np.zeros(len(FEATURES)), np.ones(len(FEATURES)), {"CNN_WINDOW": 0.4, "LYA_CIV": 0.6})
    features = np.zeros((2, len(FEATURES)))
    assert vetter.accepts(features, np.array([False, True])).tolist() == [True, False]


def test_a_vetter_with_other_features_is_refused(tmp_path):
    path = tmp_path / "old.json"
    vetter = Vetter(((np.zeros((2, 1)), np.zeros(1)),), np.zeros(2), np.ones(2), {"CNN_WINDOW": 0.5, "LYA_CIV": 0.5})
    save_vetter(path, vetter, {})
    path.write_text(path.read_text().replace('"SNR_2796"', '"OTHER"'))
    with pytest.raises(ValueError, match="features"):
        load_vetter(str(path))


def test_the_configuration_picks_the_shipped_vetter_or_the_rules():
    criteria, vetter = doublet_finder(defaults())
    assert vetter is not None and vetter_path(defaults()).name == "mgii_vetter.json"
    assert criteria == DoubletCriteria() and set(vetter.thresholds) == {"CNN_WINDOW", "LYA_CIV"}
    assert doublet_finder({"mgii_vetter": "none"}) == (DoubletCriteria(), None)


def _on_the_line(z_abs, wave):
    """Whether either MgII line of absorbers at z_abs lies within 2 A of an observed wavelength."""
    return np.any(np.abs(np.multiply.outer(1 + np.asarray(z_abs), [MGII_2796, MGII_2803]) - wave) < 2.0)


def _search(flux, ivar, criteria, vetter):
    continuum = running_continuum(flux[None], ivar[None])
    found, _ = search_doublets(flux[None], ivar[None], *WINDOW, continuum, criteria, vetter=vetter)
    return found[0]["Z_ABS"]


def test_the_shipped_vetter_keeps_clear_doublets():
    """Two doublets at S/N ~10 per line, without FeII, pass the criteria and the vetter."""
    flux, ivar, _ = _spectrum([(1.3, 1.2, 0.8), (1.6, 0.9, 0.6)], snr=20, seed=11)
    assert np.allclose(_search(flux, ivar, *doublet_finder(defaults())), [1.3, 1.6], atol=5e-4)


def test_the_vetter_drops_a_lone_line_the_wider_pool_lets_through():
    """A lone 2796 line with nothing at 2803 passes the training pool's criteria but not the shipped vetter."""
    lone = 1.45
    flux, ivar, _ = _spectrum([], snr=20, seed=12, other_lines=[(MGII_2796, lone, 0.5)])
    _, vetter = doublet_finder(defaults())
    assert _on_the_line(_search(flux, ivar, POOL_CRITERIA, None), MGII_2796 * (1 + lone))
    assert not _on_the_line(_search(flux, ivar, POOL_CRITERIA, vetter), MGII_2796 * (1 + lone))


def test_the_trainer_writes_a_vetter_the_stage_loads(tmp_path):
    """`qsopipe train mgii-vetter` on one small simulated plate: a vetter file with its thresholds and provenance."""
    import json

    from click.testing import CliRunner

    from qsopipe.models.train_mgii_vetter import command as train
    from qsopipe.stages.simulate.command import command as simulate

    sim = tmp_path / "sim"
    result = CliRunner().invoke(simulate, ["--out", str(sim), "--plates", "1", "--fibers", "400", "--seed", "919",
                                           "--first-plate", "8800", "--mgii-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "vetter.json"
    result = CliRunner().invoke(train, ["--sim", str(sim), "--out", str(out), "--epochs", "2",
                                        "--lya-civ-threshold", "0.8"])
    assert result.exit_code == 0, result.output
    vetter = load_vetter(str(out))
    assert vetter.thresholds == {"CNN_WINDOW": 0.5, "LYA_CIV": 0.8}
    provenance = json.loads(out.read_text())["provenance"]
    assert 0 < provenance["real"] < provenance["candidates"] and provenance["pool"]["detect_snr"] == 4.2
    assert vetter.probability(np.zeros((3, len(FEATURES)))).shape == (3,)
