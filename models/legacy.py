"""Import published QuasarNET weights (Keras-2 `.h5`) into our Keras 3 network.

The published files hold a Functional model whose offsets pass through a
Python Lambda (stored as marshalled bytecode), which Keras 3 cannot and
should not deserialise. We read the stored `model_config` JSON as data only,
recognise the QuasarNET layout in it (4 or 6 conv blocks, 'valid' or 'same'
padding, any number of filters, dropout or not), rebuild the network with
`qsopipe.models.quasarnet.build_quasarnet`, and copy the weights layer by
layer with h5py. The Lambda is taken to be QuasarNET's -0.1 + 1.2 x rescale
(`OffsetRescale`); its bytecode is never executed or unmarshalled.

This module imports TensorFlow only inside `import_legacy` and the command.
"""

import json
import logging
import os
from dataclasses import dataclass, field

import click
import h5py
import numpy as np

from qsopipe.models.boxes import FINDER_NAMES
from qsopipe.pipeline.errors import InputError

log = logging.getLogger(__name__)

#: Keras 2 layer classes a QuasarNET model may contain.
KNOWN_CLASSES = {"InputLayer", "Conv1D", "BatchNormalization", "Activation", "Dropout",
                 "Flatten", "Dense", "Lambda", "Concatenate"}

#: The BatchNormalization epsilon our network uses (Keras' default).
BN_EPSILON = 1e-3


@dataclass
class LegacyLayout:
    """What a legacy model_config says about the network.

    build_kwargs : keyword arguments for build_quasarnet (finder names excluded).
    nfinders : number of finder outputs, in the file's output order.
    The other fields name the legacy layers holding weights: conv blocks in
    order, their batch norms, the common dense layer and its batch norm, and
    per output its box and offset dense layers.
    """

    build_kwargs: dict
    nfinders: int
    conv_layers: list = field(default_factory=list)
    conv_batchnorms: list = field(default_factory=list)
    dense_layer: str = ""
    dense_batchnorm: str = ""
    box_layers: list = field(default_factory=list)
    offset_layers: list = field(default_factory=list)


def _inbound_names(layer, path):
    """Names of the layers feeding `layer` (Keras 2 'inbound_nodes' list format)."""
    nodes = layer.get("inbound_nodes", [])
    if not nodes:
        return []
    if len(nodes) != 1 or not isinstance(nodes[0], list):
        raise InputError(path, f"layer {layer.get('name')!r}: unsupported inbound_nodes format")
    return [entry[0] for entry in nodes[0]]


def _single(items, what, path):
    if len(items) != 1:
        raise InputError(path, f"not a QuasarNET layout: expected one {what}, found {len(items)}")
    return items[0]


def parse_legacy_config(model_config, path="<model_config>"):
    """Recognise the QuasarNET layout in a Keras-2 model_config (a parsed JSON dict).

    Returns a LegacyLayout. Raises InputError for anything that is not a
    QuasarNET network our builder can reproduce exactly.
    """
    config = model_config.get("config", {})
    layers = config.get("layers")
    if model_config.get("class_name") not in ("Functional", "Model") or not layers:
        raise InputError(path, "model_config is not a Keras-2 Functional model")
    by_name = {layer["name"]: layer for layer in layers}
    unknown = sorted({layer["class_name"] for layer in layers} - KNOWN_CLASSES)
    if unknown:
        raise InputError(path, f"not a QuasarNET layout: unexpected layer classes {unknown}")
    consumers = {name: [] for name in by_name}
    for layer in layers:
        for source in _inbound_names(layer, path):
            consumers[source].append(layer["name"])

    def next_layer(name):
        return by_name[_single(consumers[name], f"layer after {name!r}", path)]

    def expect(layer, class_name, **settings):
        if layer["class_name"] != class_name:
            raise InputError(path, f"not a QuasarNET layout: {layer['name']!r} is "
                                   f"{layer['class_name']}, expected {class_name}")
        for key, value in settings.items():
            if layer["config"].get(key) != value:
                raise InputError(path, f"layer {layer['name']!r}: {key} = "
                                       f"{layer['config'].get(key)!r}, only {value!r} is supported")
        return layer

    input_layer = _single([l for l in layers if l["class_name"] == "InputLayer"], "input layer", path)
    shape = input_layer["config"].get("batch_input_shape") or input_layer["config"].get("batch_shape")
    if not shape or len(shape) != 3 or shape[2] != 1:
        raise InputError(path, f"input shape {shape} is not (None, npix, 1)")

    layout = LegacyLayout(build_kwargs={"npix": int(shape[1])}, nfinders=0)
    dropout, conv_settings = 0.0, set()
    layer = next_layer(input_layer["name"])
    while layer["class_name"] == "Conv1D":
        cfg = expect(layer, "Conv1D", activation="linear", use_bias=True)["config"]
        conv_settings.add((cfg["filters"], tuple(cfg["kernel_size"]), tuple(cfg["strides"]),
                           cfg["padding"], tuple(cfg.get("dilation_rate", [1]))))
        batchnorm = expect(next_layer(layer["name"]), "BatchNormalization", epsilon=BN_EPSILON)
        relu = expect(next_layer(batchnorm["name"]), "Activation", activation="relu")
        layout.conv_layers.append(layer["name"])
        layout.conv_batchnorms.append(batchnorm["name"])
        layer = next_layer(relu["name"])
        if layer["class_name"] == "Dropout":
            dropout = max(dropout, float(layer["config"]["rate"]))
            layer = next_layer(layer["name"])
    if not layout.conv_layers or len(conv_settings) != 1:
        raise InputError(path, f"not a QuasarNET layout: conv blocks {sorted(conv_settings)}")
    filters, (kernel_size,), (strides,), padding, dilation = conv_settings.pop()
    if dilation != (1,):
        raise InputError(path, f"conv dilation {dilation} is not supported")

    expect(layer, "Flatten")
    dense = expect(next_layer(layer["name"]), "Dense", activation="linear", use_bias=True)
    dense_bn = expect(next_layer(dense["name"]), "BatchNormalization", epsilon=BN_EPSILON)
    common = expect(next_layer(dense_bn["name"]), "Activation", activation="relu")
    layout.dense_layer, layout.dense_batchnorm = dense["name"], dense_bn["name"]

    nboxes_seen = set()
    for output in config.get("output_layers", []):
        concat = expect(by_name[output[0]], "Concatenate")
        if concat["config"].get("axis", -1) not in (-1, 1):
            raise InputError(path, f"{concat['name']!r}: concatenation axis is not the last")
        box_name, rescale_name = _inbound_names(concat, path)
        box = expect(by_name[box_name], "Dense", activation="sigmoid")
        rescale = expect(by_name[rescale_name], "Lambda")
        offset = expect(by_name[_single(_inbound_names(rescale, path), "offset input", path)],
                        "Dense", activation="sigmoid")
        for head in (box, offset):
            if _inbound_names(head, path) != [common["name"]]:
                raise InputError(path, f"{head['name']!r} does not read the common dense layer")
            nboxes_seen.add(head["config"]["units"])
        layout.box_layers.append(box["name"])
        layout.offset_layers.append(offset["name"])
    if not layout.box_layers or len(nboxes_seen) != 1:
        raise InputError(path, f"not a QuasarNET layout: finder outputs with {sorted(nboxes_seen)} boxes")
    layout.nfinders = len(layout.box_layers)
    layout.build_kwargs.update(nconv=len(layout.conv_layers), filters=int(filters),
                               kernel_size=int(kernel_size), strides=int(strides), padding=padding,
                               dense_units=int(dense["config"]["units"]), nboxes=nboxes_seen.pop(),
                               dropout=dropout)
    return layout


def read_model_config(h5):
    """The parsed model_config JSON of an open Keras-2 .h5 file (data only)."""
    raw = h5.attrs.get("model_config")
    if raw is None:
        raise InputError(h5.filename, "no model_config attribute: not a full Keras-2 model file")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw)


def read_layer_weights(h5, layer_name):
    """A legacy layer's weights by short name ('kernel', 'bias', 'gamma', ...) -> ndarray."""
    root = h5["model_weights"] if "model_weights" in h5 else h5
    if layer_name not in root:
        raise InputError(h5.filename, f"no weights stored for layer {layer_name!r}")
    group = root[layer_name]
    weights = {}
    for raw in group.attrs.get("weight_names", []):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        weights[name.split("/")[-1].split(":")[0]] = np.asarray(group[name])
    return weights


def layer_pairs(layout, finder_names):
    """(our layer name, legacy layer name) for every layer with weights."""
    pairs = []
    for i, (conv, batchnorm) in enumerate(zip(layout.conv_layers, layout.conv_batchnorms), start=1):
        pairs += [(f"conv_{i}", conv), (f"bn_conv_{i}", batchnorm)]
    pairs += [("fc_common", layout.dense_layer), ("bn_fc_common", layout.dense_batchnorm)]
    for finder, box, offset in zip(finder_names, layout.box_layers, layout.offset_layers):
        pairs += [(f"box_{finder}", box), (f"offset_{finder}", offset)]
    return pairs


def import_legacy(path):
    """Rebuild the QuasarNET network stored in a Keras-2 .h5 file, with its weights.

    Returns an uncompiled keras.Model with our layout (see
    `qsopipe.models.quasarnet.build_quasarnet`): input (n, npix, 1), seven
    outputs (n, 26) in FINDER_NAMES order, numerically equal to the original.
    """
    from qsopipe.models import quasarnet

    path = os.fspath(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise InputError(path, f"cannot open as HDF5: {error}") from error
    with h5:
        layout = parse_legacy_config(read_model_config(h5), path)
        if layout.nfinders != len(FINDER_NAMES):
            raise InputError(path, f"{layout.nfinders} finders; expected {len(FINDER_NAMES)} "
                                   f"({', '.join(FINDER_NAMES)})")
        log.info("%s: QuasarNET layout %s", path, layout.build_kwargs)
        model = quasarnet.build_quasarnet(**layout.build_kwargs)
        for ours, theirs in layer_pairs(layout, FINDER_NAMES):
            layer = model.get_layer(ours)
            stored = read_layer_weights(h5, theirs)
            values = []
            for variable in layer.weights:
                short = variable.path.split("/")[-1]
                if short not in stored or tuple(stored[short].shape) != tuple(variable.shape):
                    raise InputError(path, f"layer {theirs!r}: weight {short!r} missing or of shape "
                                           f"{getattr(stored.get(short), 'shape', None)}, "
                                           f"expected {tuple(variable.shape)}")
                values.append(stored[short])
            layer.set_weights(values)
    return model


@click.command("import-weights")
@click.argument("legacy", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output model file (.keras).")
def command(legacy, out):
    """Import a published Keras-2 QuasarNET .h5 (LEGACY) as a Keras 3 .keras model."""
    if not out.endswith(".keras"):
        raise click.BadParameter("the output name must end in .keras", param_hint="--out")
    try:
        model = import_legacy(legacy)
    except InputError as error:
        raise click.ClickException(str(error)) from error
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, f".{os.path.basename(out)}.{os.getpid()}.partial.keras")
    model.save(partial)
    os.replace(partial, out)
    click.echo(f"wrote {out}")
