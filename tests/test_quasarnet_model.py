"""QuasarNET network, loss, ensemble and compiled forward pass (qsopipe.models.quasarnet)."""

import numpy as np
import pytest

from qsopipe.models.boxes import FINDER_NAMES
from qsopipe.pipeline.grids import QN_NBINS, QN_NBOXES

qn = pytest.importorskip("qsopipe.models.quasarnet")
keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def tiny_model():
    return qn.build_quasarnet(filters=4, dense_units=8)


# --- loss: equation 1 on cases worked by hand (2 boxes) ---------------------

Y_TRUE = np.array([[1, 0, 0.5, 0.0],   # object A: line in box 0 at offset 0.5
                   [0, 0, 0.0, 0.0]],  # object B: no line
                  np.float32)
Y_PRED = np.array([[0.8, 0.1, 0.3, 0.9],
                   [0.2, 0.5, 0.7, 0.4]], np.float32)


def test_loss_by_hand():
    # N_filled = 1, N_empty = 3.
    filled = -np.log(0.8)
    empty = -(np.log(0.9) + np.log(0.8) + np.log(0.5)) / 3
    offset = (0.5 - 0.3) ** 2
    assert filled + empty + offset == pytest.approx(0.60369397, abs=1e-7)
    loss = qn.QuasarNetLoss()(Y_TRUE, Y_PRED)
    assert float(loss) == pytest.approx(0.60369397, rel=1e-5)


def test_loss_sample_weight_enters_normalisation():
    # Object B weighs 0: N_filled = 1, N_empty = 1 (object A's box 1).
    expected = -np.log(0.8) - np.log(0.9) + 0.04
    loss = qn.QuasarNetLoss()(Y_TRUE, Y_PRED, sample_weight=np.array([1.0, 0.0], np.float32))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.36850407, abs=1e-7)


def test_loss_without_filled_boxes_is_the_empty_term_only():
    y_true = np.zeros((1, 4), np.float32)
    y_pred = np.array([[0.5, 0.75, 0.9, 0.1]], np.float32)
    expected = -(np.log(0.5) + np.log(0.25)) / 2
    assert float(qn.QuasarNetLoss()(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_loss_is_normalised_per_batch_not_per_object():
    # Doubling the batch with copies leaves the loss unchanged.
    single = float(qn.QuasarNetLoss()(Y_TRUE, Y_PRED))
    double = float(qn.QuasarNetLoss()(np.vstack([Y_TRUE, Y_TRUE]), np.vstack([Y_PRED, Y_PRED])))
    assert double == pytest.approx(single, rel=1e-6)


# --- network --------------------------------------------------------------------

def test_default_architecture():
    model = qn.build_quasarnet()
    assert model.input_shape == (None, QN_NBINS, 1)
    assert model.output_names == list(FINDER_NAMES)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 2 * QN_NBOXES)] * 7
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv1D)] == \
        ["conv_1", "conv_2", "conv_3", "conv_4"]
    conv = model.get_layer("conv_1")
    assert (conv.filters, conv.kernel_size, conv.strides, conv.padding) == (100, (10,), (2,), "valid")
    assert model.get_layer("fc_common").units == 100
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_offsets_are_rescaled(tiny_model):
    x = np.random.default_rng(0).normal(size=(3, QN_NBINS, 1)).astype(np.float32)
    out = tiny_model(x, training=False)
    raw = keras.Model(tiny_model.input, tiny_model.get_layer("offset_LYA").output)(x)
    np.testing.assert_allclose(np.asarray(out[0])[:, QN_NBOXES:], -0.1 + 1.2 * np.asarray(raw), rtol=1e-6)


def test_save_and_load_keras(tiny_model, tmp_path):
    qn.compile_quasarnet(tiny_model)
    path = tmp_path / "qn.keras"
    tiny_model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(1).normal(size=(5, QN_NBINS, 1)).astype(np.float32)
    for a, b in zip(tiny_model(x, training=False), loaded(x, training=False)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_compiled_forward_matches_and_never_retraces(tiny_model):
    forward = qn.CompiledForward(tiny_model, batch=8)
    rng = np.random.default_rng(2)
    for n in (3, 8, 19, 1):
        x = rng.normal(size=(n, QN_NBINS)).astype(np.float32)
        conf, off = forward(x)
        assert conf.shape == off.shape == (n, 7, QN_NBOXES)
        ref = np.stack([np.asarray(o) for o in tiny_model(x[..., None], training=False)], axis=1)
        np.testing.assert_allclose(conf, ref[..., :QN_NBOXES], atol=1e-5)
        np.testing.assert_allclose(off, ref[..., QN_NBOXES:], atol=1e-5)
    assert forward.tracing_count == 1
    empty = qn.predict(tiny_model, np.zeros((0, QN_NBINS), np.float32), batch=8)
    assert empty["confidence"].shape == (0, 7, QN_NBOXES)


def test_ensemble_averages_confidences_and_weights_offsets_by_them(tmp_path):
    from click.testing import CliRunner

    from qsopipe.pipeline.cli import cli
    from qsopipe.models.training_files import save_model

    paths = []
    for index, filters in enumerate((4, 6)):
        keras.utils.set_random_seed(index)
        paths.append(tmp_path / f"member{index}.keras")
        save_model(qn.build_quasarnet(nconv=2, filters=filters, dense_units=8), paths[-1])
    out = tmp_path / "ensemble.keras"
    result = CliRunner().invoke(cli, ["ensemble", *map(str, paths), "--out", str(out)])
    assert result.exit_code == 0, result.output
    members = [keras.models.load_model(path) for path in paths]
    ensemble = keras.models.load_model(out)
    assert ensemble.output_names == list(FINDER_NAMES)

    x = np.random.default_rng(3).normal(size=(40, QN_NBINS)).astype(np.float32)
    first, second = (qn.predict(member, x) for member in members)
    combined = qn.predict(ensemble, x)
    assert not np.allclose(first["confidence"], second["confidence"], atol=1e-3)
    np.testing.assert_allclose(combined["confidence"], (first["confidence"] + second["confidence"]) / 2,
                               atol=1e-6)
    weight_first, weight_second = first["confidence"] + 1e-7, second["confidence"] + 1e-7
    expected_offset = (weight_first * first["offset"] + weight_second * second["offset"]) / \
        (weight_first + weight_second)
    np.testing.assert_allclose(combined["offset"], expected_offset, atol=1e-5)

    result = CliRunner().invoke(cli, ["ensemble", str(paths[0]), "--out", str(out)])
    assert result.exit_code != 0 and "two" in result.output
