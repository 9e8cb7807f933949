"""Import of published Keras-2 QuasarNET .h5 files (qsopipe.models.legacy).

The reference is an independent numpy forward pass that interprets the h5
file's own model_config layer by layer with the file's weights.
"""

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.grids import QN_NBINS
from qsopipe.models import legacy

qn = pytest.importorskip("qsopipe.models.quasarnet")
keras = pytest.importorskip("keras")

LEGACY_4LAYER = "weights/quasarnet_legacy_keras2_4layer.h5"


# --- an independent numpy QuasarNET interpreter -------------------------------

def _conv1d(x, kernel, bias, stride, padding):
    """x (n, L, C), kernel (K, C, F) -> (n, L_out, F), TensorFlow's padding rules."""
    size = kernel.shape[0]
    length = x.shape[1]
    if padding == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + size - length, 0)
        x = np.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, size, axis=1)[:, ::stride]
    return np.einsum("nlck,kcf->nlf", windows, kernel) + bias


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_forward(path, x):
    """Evaluate the .h5 model on x (n, npix) in float64: list of (n, 26) per output."""
    with h5py.File(path, "r") as h5:
        config = json.loads(h5.attrs["model_config"])["config"]
        weights = {}
        for name in h5["model_weights"]:
            group = h5["model_weights"][name]
            weights[name] = {n.decode().split("/")[-1].split(":")[0]: np.asarray(group[n.decode()], np.float64)
                             for n in group.attrs["weight_names"]}
    values = {}
    for layer in config["layers"]:
        kind, cfg, name = layer["class_name"], layer["config"], layer["name"]
        inputs = [values[entry[0]] for entry in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        w = weights.get(name, {})
        if kind == "InputLayer":
            out = np.asarray(x, np.float64)[:, :, None]
        elif kind == "Conv1D":
            out = _conv1d(inputs[0], w["kernel"], w["bias"], cfg["strides"][0], cfg["padding"])
        elif kind == "BatchNormalization":
            out = (inputs[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) \
                * w["gamma"] + w["beta"]
        elif kind == "Activation":
            assert cfg["activation"] == "relu"
            out = np.maximum(inputs[0], 0)
        elif kind == "Dropout":
            out = inputs[0]
        elif kind == "Flatten":
            out = inputs[0].reshape(len(inputs[0]), -1)
        elif kind == "Dense":
            out = inputs[0] @ w["kernel"] + w["bias"]
            out = _sigmoid(out) if cfg["activation"] == "sigmoid" else out
        elif kind == "Lambda":                  # QuasarNET's offset rescale
            out = -0.1 + 1.2 * inputs[0]
        elif kind == "Concatenate":
            out = np.concatenate(inputs, axis=-1)
        else:
            raise AssertionError(kind)
        values[name] = out
    return [values[output[0]] for output in config["output_layers"]]


# --- a synthetic legacy file with the published layout ------------------------

def _layer(kind, name, inbound, **config):
    return {"class_name": kind, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [[[source, 0, 0, {}] for source in inbound]] if inbound else []}


def write_legacy_h5(path, nconv=6, filters=100, padding="same", dense_units=100, dropout=0.2,
                    nfinders=7, nboxes=13, seed=0):
    """Write a QuasarNET in the Keras-2 .h5 layout of the published files, random weights."""
    rng = np.random.default_rng(seed)
    layers = [_layer("InputLayer", "input_1", [], batch_input_shape=[None, QN_NBINS, 1], dtype="float32")]
    weights = {}

    def batchnorm(name, source, width):
        layers.append(_layer("BatchNormalization", name, [source], axis=[2], momentum=0.99, epsilon=0.001,
                             center=True, scale=True))
        weights[name] = {"gamma": rng.uniform(0.5, 1.5, width), "beta": rng.normal(0, 0.1, width),
                         "moving_mean": rng.normal(0, 0.1, width),
                         "moving_variance": rng.uniform(0.5, 2.0, width)}

    source, length, channels = "input_1", QN_NBINS, 1
    for i in range(1, nconv + 1):
        suffix = "" if i == 1 else f"_{i - 1}"
        layers.append(_layer("Conv1D", f"conv_{i}", [source], filters=filters, kernel_size=[10], strides=[2],
                             padding=padding, data_format="channels_last", dilation_rate=[1], groups=1,
                             activation="linear", use_bias=True))
        weights[f"conv_{i}"] = {"kernel": rng.normal(0, 1 / np.sqrt(10 * channels), (10, channels, filters)),
                                "bias": rng.normal(0, 0.1, filters)}
        batchnorm(f"batch_normalization{suffix}", f"conv_{i}", filters)
        layers.append(_layer("Activation", f"activation{suffix}", [f"batch_normalization{suffix}"],
                             activation="relu"))
        source = f"activation{suffix}"
        if dropout:
            layers.append(_layer("Dropout", f"dropout{suffix}", [source], rate=dropout))
            source = f"dropout{suffix}"
        length = -(-length // 2) if padding == "same" else (length - 10) // 2 + 1
        channels = filters
    layers.append(_layer("Flatten", "flatten", [source], data_format="channels_last"))
    layers.append(_layer("Dense", "fc_common", ["flatten"], units=dense_units, activation="linear", use_bias=True))
    weights["fc_common"] = {"kernel": rng.normal(0, 1 / np.sqrt(length * channels), (length * channels, dense_units)),
                            "bias": rng.normal(0, 0.1, dense_units)}
    batchnorm(f"batch_normalization_{nconv}", "fc_common", dense_units)
    layers.append(_layer("Activation", "fc_activation", [f"batch_normalization_{nconv}"], activation="relu"))
    for k in range(nfinders):
        for head in ("fc_offset", "fc_box"):
            layers.append(_layer("Dense", f"{head}_{k}", ["fc_activation"], units=nboxes, activation="sigmoid",
                                 use_bias=True))
            weights[f"{head}_{k}"] = {"kernel": rng.normal(0, 1 / np.sqrt(dense_units), (dense_units, nboxes)),
                                      "bias": rng.normal(0, 0.5, nboxes)}
        lam = "lambda" if k == 0 else f"lambda_{k}"
        layers.append(_layer("Lambda", lam, [f"fc_offset_{k}"], function=["NOT-BYTECODE", None, None],
                             function_type="lambda", module="quasarnet.models", arguments={}))
        layers.append(_layer("Concatenate", f"conc_box_{k}", [f"fc_box_{k}", lam], axis=-1))
    model_config = {"class_name": "Functional",
                    "config": {"name": "QuasarNET", "layers": layers,
                               "input_layers": [["input_1", 0, 0]],
                               "output_layers": [[f"conc_box_{k}", 0, 0] for k in range(nfinders)]}}
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(model_config)
        h5.attrs["keras_version"] = "2.4.0"
        h5.attrs["backend"] = "tensorflow"
        root = h5.create_group("model_weights")
        for layer in layers:
            group = root.create_group(layer["name"])
            names = [f"{layer['name']}/{short}:0" for short in weights.get(layer["name"], {})]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for short, value in weights.get(layer["name"], {}).items():
                group.create_dataset(f"{layer['name']}/{short}:0", data=value.astype(np.float32))
    return path


# --- tests ------------------------------------------------------------------------

def _keras_outputs(model, x):
    return [np.asarray(o) for o in model(np.asarray(x, np.float32)[..., None], training=False)]


def _assert_same(model, path, x):
    expected = numpy_forward(path, x)
    got = _keras_outputs(model, x)
    assert len(got) == len(expected) == 7
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_real_legacy_file_equals_numpy_forward(shared_data):
    path = shared_data / LEGACY_4LAYER
    model = legacy.import_legacy(path)
    conv = model.get_layer("conv_1")
    assert (conv.filters, conv.padding, len([l for l in model.layers if l.name.startswith("conv_")])) == (25, "valid", 4)
    x = np.random.default_rng(3).normal(size=(32, QN_NBINS))
    _assert_same(model, path, x)


def test_real_legacy_file_on_real_spectra(shared_data):
    preprocess = pytest.importorskip("qsopipe.stages.preprocess")
    from qsopipe.pipeline.discovery import discover

    plates, _ = discover([shared_data / "sdss" / "spec_full_pyqsofit"])
    x = np.concatenate([preprocess.quasarnet_input(p.loglam, p.flux, p.ivar, p.and_mask)[0]
                        for p in (plate_input.read() for plate_input in plates)])
    path = shared_data / LEGACY_4LAYER
    _assert_same(legacy.import_legacy(path), path, x)


def test_six_layer_same_padding_100_filters(tmp_path):
    path = write_legacy_h5(tmp_path / "qn6.h5", nconv=6, filters=100, padding="same")
    model = legacy.import_legacy(path)
    assert model.get_layer("conv_6").padding == "same"
    assert model.get_layer("conv_6").filters == 100
    assert model.get_layer("fc_common").units == 100
    _assert_same(model, path, np.random.default_rng(4).normal(size=(16, QN_NBINS)))


def test_command_writes_loadable_keras(tmp_path):
    from qsopipe.pipeline.cli import cli

    path = write_legacy_h5(tmp_path / "qn4.h5", nconv=4, filters=8, padding="valid", dense_units=8, dropout=0)
    out = tmp_path / "model.keras"
    result = CliRunner().invoke(cli, ["import-weights", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    loaded = keras.models.load_model(out)
    _assert_same(loaded, path, np.random.default_rng(5).normal(size=(8, QN_NBINS)))
    assert not list(tmp_path.glob("*.partial.keras"))


def test_wrong_number_of_finders_is_refused(tmp_path):
    path = write_legacy_h5(tmp_path / "qn5.h5", nconv=4, filters=4, dense_units=4, nfinders=5)
    with pytest.raises(InputError, match="5 finders"):
        legacy.import_legacy(path)


def test_unknown_layers_are_refused():
    config = {"class_name": "Functional",
              "config": {"layers": [_layer("InputLayer", "in", [], batch_input_shape=[None, 443, 1]),
                                    _layer("LSTM", "lstm", ["in"])], "output_layers": [["lstm", 0, 0]]}}
    with pytest.raises(InputError, match="LSTM"):
        legacy.parse_legacy_config(config)
