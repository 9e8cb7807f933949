"""QuasarNET (Busca & Balland 2018) in Keras 3: network, ensemble, loss and compiled forward pass.

The network maps a normalised spectrum on the QuasarNET grid, shape
(n, 443, 1), to seven *finders*: the six emission lines of
`qsopipe.pipeline.constants.QN_LINES` in that order, then the BAL finder on
CIV(1548) (`qsopipe.pipeline.constants.QN_BAL_LINE`). Output order (fixed): a
list of 7 tensors, one per finder in `qsopipe.models.boxes.FINDER_NAMES`
order, each of shape (n, 26) = [13 box confidences, 13 box offsets]. That is
the published Keras-2 models' layout (their `conc_box_k` outputs), so
imported weights map one to one. The box encoding of line positions is
`qsopipe.models.boxes`; the decision rule on the decoded outputs is
`qsopipe.stages.decision`.

Importing this module imports TensorFlow and registers the custom layer and
loss (package "qsopipe"), so `keras.models.load_model` reads saved models.
"""

import logging
import os
import weakref

import keras
import tensorflow as tf

from qsopipe.models.batching import FixedBatchForward
from qsopipe.models.boxes import FINDER_NAMES
from qsopipe.pipeline.grids import QN_NBINS, QN_NBOXES

log = logging.getLogger(__name__)

#: Offset rescale of the published network: offset = OFFSET_SHIFT + OFFSET_SCALE * sigmoid.
OFFSET_SHIFT = -0.1
OFFSET_SCALE = 1.2


@keras.saving.register_keras_serializable(package="qsopipe")
class OffsetRescale(keras.layers.Layer):
    """Maps a sigmoid output x in (0, 1) to shift + scale * x (default -0.1 + 1.2 x).

    Lets a predicted offset reach slightly past its box edges, as in the
    published QuasarNET (which used a Python Lambda for it).
    """

    def __init__(self, shift=OFFSET_SHIFT, scale=OFFSET_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.shift = float(shift)
        self.scale = float(scale)

    def call(self, inputs):
        return self.shift + self.scale * inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "shift": self.shift, "scale": self.scale}


def build_quasarnet(nconv=4, filters=100, kernel_size=10, strides=2, padding="valid",
                    dense_units=100, nboxes=QN_NBOXES, finder_names=FINDER_NAMES,
                    dropout=0.0, npix=QN_NBINS, name="QuasarNET"):
    """Build the QuasarNET network (uncompiled).

    nconv x [Conv1D(filters, kernel_size, strides, padding) + BatchNorm + ReLU
    (+ Dropout(dropout) when dropout > 0)], Flatten, Dense(dense_units) +
    BatchNorm + ReLU, then per finder Dense(nboxes, sigmoid) box confidences
    and Dense(nboxes, sigmoid) offsets rescaled by `OffsetRescale`,
    concatenated to (n, 2*nboxes).

    Layer names (used by the legacy importer): conv_<i>, bn_conv_<i>
    (i = 1..nconv), fc_common, bn_fc_common, box_<FINDER>, offset_<FINDER>,
    offset_rescale_<FINDER>, and the outputs <FINDER> (e.g. "LYA", "BAL_CIV").

    Returns a keras.Model: input (n, npix, 1) -> list of len(finder_names)
    tensors of shape (n, 2*nboxes).
    """
    inputs = keras.Input(shape=(npix, 1), name="spectrum")
    x = inputs
    for i in range(1, nconv + 1):
        x = keras.layers.Conv1D(filters, kernel_size, strides=strides, padding=padding, name=f"conv_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_conv_{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu_conv_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_conv_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, name="fc_common")(x)
    x = keras.layers.BatchNormalization(name="bn_fc_common")(x)
    common = keras.layers.Activation("relu", name="relu_fc_common")(x)
    outputs = []
    for finder in finder_names:
        boxes = keras.layers.Dense(nboxes, activation="sigmoid", name=f"box_{finder}")(common)
        raw_offsets = keras.layers.Dense(nboxes, activation="sigmoid", name=f"offset_{finder}")(common)
        offsets = OffsetRescale(name=f"offset_rescale_{finder}")(raw_offsets)
        outputs.append(keras.layers.Concatenate(axis=-1, name=finder)([boxes, offsets]))
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="qsopipe")
class ConfidenceWeightedMean(keras.layers.Layer):
    """One finder's output from several networks' outputs, each (n, 2*nboxes) = [confidences, offsets].

    Box confidences are averaged; each box's offset is the members' offsets
    weighted by their confidence in that box, so a member that does not see
    the line in a box hardly moves where the others place it.
    """

    def call(self, inputs):
        stacked = keras.ops.stack(inputs, axis=0)
        nboxes = stacked.shape[-1] // 2
        confidence, offset = stacked[..., :nboxes], stacked[..., nboxes:]
        weight = confidence + keras.backend.epsilon()
        mean_offset = keras.ops.sum(weight * offset, axis=0) / keras.ops.sum(weight, axis=0)
        return keras.ops.concatenate([keras.ops.mean(confidence, axis=0), mean_offset], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def build_ensemble(members, name="QuasarNETEnsemble"):
    """A QuasarNET whose finders average those of `members` (`ConfidenceWeightedMean`).

    members : QuasarNET keras.Models of one input shape and finder list (they
    may differ in depth and width); their weights are copied, the originals
    are left as they are. Returns a keras.Model with a QuasarNET's input and
    outputs (n, npix, 1) -> 7 x (n, 2*nboxes), so every stage runs it unchanged.
    """
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    copies = []
    for index, member in enumerate(members, start=1):
        config = member.get_config()
        config["name"] = f"member_{index}"
        copy = keras.Model.from_config(config)
        copy.set_weights(member.get_weights())
        copies.append(copy)
    inputs = keras.Input(shape=tuple(members[0].inputs[0].shape[1:]), name="spectrum")
    outputs = [copy(inputs) for copy in copies]
    finders = [ConfidenceWeightedMean(name=finder)([out[k] for out in outputs])
               for k, finder in enumerate(members[0].output_names)]
    return keras.Model(inputs, finders, name=name)


def quasarnet_loss_value(y_true, y_pred, sample_weight=None, epsilon=1e-7):
    """Equation 1 of Busca & Balland (2018) for one finder, over a batch (a scalar tensor).

    y_true, y_pred : (n, 2*nboxes) = [box confidences, offsets].
    sample_weight : (n,) or None (all 1).

    loss = - sum_filled w log(c) / N_filled - sum_empty w log(1 - c) / N_empty
           + sum_filled w (offset_true - offset_pred)^2 / N_filled,
    where N_filled = sum w * box_true and N_empty = sum w * (1 - box_true) run
    over every box of every object in the batch. A term whose N is 0 is 0.
    """
    nboxes = y_pred.shape[-1] // 2
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    box_true, offset_true = y_true[:, :nboxes], y_true[:, nboxes:]
    box_pred = keras.ops.clip(y_pred[:, :nboxes], epsilon, 1.0 - epsilon)
    offset_pred = y_pred[:, nboxes:]
    if sample_weight is None:
        weight = keras.ops.ones_like(box_true[:, :1])
    else:
        weight = keras.ops.reshape(keras.ops.cast(sample_weight, y_pred.dtype), (-1, 1))
    filled = weight * box_true
    empty = weight * (1.0 - box_true)
    n_filled = keras.ops.maximum(keras.ops.sum(filled), epsilon)
    n_empty = keras.ops.maximum(keras.ops.sum(empty), epsilon)
    filled_term = -keras.ops.sum(filled * keras.ops.log(box_pred)) / n_filled
    empty_term = -keras.ops.sum(empty * keras.ops.log(1.0 - box_pred)) / n_empty
    offset_term = keras.ops.sum(filled * keras.ops.square(offset_true - offset_pred)) / n_filled
    return filled_term + empty_term + offset_term


@keras.saving.register_keras_serializable(package="qsopipe")
class QuasarNetLoss(keras.losses.Loss):
    """QuasarNET's per-finder loss (`quasarnet_loss_value`), batch-normalised.

    Sample weights enter the normalisations N_filled and N_empty, so the
    usual per-sample weighting of keras.losses.Loss is bypassed.
    """

    def __init__(self, epsilon=1e-7, name="quasarnet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.epsilon = float(epsilon)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return quasarnet_loss_value(y_true, y_pred, sample_weight, self.epsilon)

    def call(self, y_true, y_pred):
        return quasarnet_loss_value(y_true, y_pred, None, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="qsopipe")
def box_accuracy(y_true, y_pred):
    """Per object, 1 where the finder is right: empty truth and every box < 0.5, or
    filled truth and its most confident box is the filled one with confidence >= 0.5.
    """
    nboxes = y_pred.shape[-1] // 2
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    box_true, box_pred = y_true[:, :nboxes], y_pred[:, :nboxes]
    present = keras.ops.max(box_true, axis=-1) > 0.5
    detected = keras.ops.max(box_pred, axis=-1) >= 0.5
    same_box = keras.ops.argmax(box_pred, axis=-1) == keras.ops.argmax(box_true, axis=-1)
    right = keras.ops.where(present, detected & same_box, keras.ops.logical_not(detected))
    return keras.ops.cast(right, y_pred.dtype)


def compile_quasarnet(model, learning_rate=1e-3):
    """Compile with Adam (AMSGrad), `QuasarNetLoss` and `box_accuracy` on every finder."""
    nout = len(model.outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate, amsgrad=True),
                  loss=[QuasarNetLoss() for _ in range(nout)],
                  metrics=[[box_accuracy] for _ in range(nout)])
    return model


def configure_threads(nthreads=None):
    """Set TensorFlow's thread pools before any op runs.

    nthreads: intra-op threads; default from the environment (QSOPIPE_TF_THREADS,
    then SLURM_CPUS_PER_TASK, then TF_NUM_INTRAOP_THREADS); TF's own default
    when none is set. Inter-op threads: TF_NUM_INTEROP_THREADS, else 1 or 2.
    Returns the intra-op count in effect (0 = TF's default).
    """
    if nthreads is None:
        for variable in ("QSOPIPE_TF_THREADS", "SLURM_CPUS_PER_TASK", "TF_NUM_INTRAOP_THREADS"):
            if os.environ.get(variable, "").strip().isdigit():
                nthreads = int(os.environ[variable])
                break
    if not nthreads:
        return 0
    interop = int(os.environ.get("TF_NUM_INTEROP_THREADS", "0") or 0) or min(nthreads, 2)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(nthreads)
        tf.config.threading.set_inter_op_parallelism_threads(interop)
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread counts unchanged")
    return tf.config.threading.get_intra_op_parallelism_threads()


class CompiledForward:
    """The QuasarNET forward pass on fixed-size batches (`qsopipe.models.batching.FixedBatchForward`).

    Calling it on x (n, npix) or (n, npix, 1) returns (confidence, offset),
    float32 numpy arrays (n, nfinders, nboxes); calls never retrace.
    """

    def __init__(self, model, batch=1024):
        self.model = model
        self.batch = int(batch)
        self._forward = FixedBatchForward(self._finders, (int(model.inputs[0].shape[1]), 1), self.batch)

    def _finders(self, x):
        return tf.stack(self.model(x, training=False), axis=1)

    @property
    def tracing_count(self):
        """How many times the forward pass was traced (at most one per batch size)."""
        return self._forward.tracing_count

    def __call__(self, x):
        out = self._forward(x)
        nboxes = out.shape[-1] // 2
        return out[..., :nboxes], out[..., nboxes:]


_FORWARDS = weakref.WeakKeyDictionary()


def predict(model, x, batch=1024):
    """Run `model` on x (n, 443) or (n, 443, 1) with a cached `CompiledForward`.

    Returns {"confidence": (n, 7, 13), "offset": (n, 7, 13)} float32, finders
    in FINDER_NAMES order.
    """
    forwards = _FORWARDS.setdefault(model, {})
    if batch not in forwards:
        forwards[batch] = CompiledForward(model, batch)
    confidence, offset = forwards[batch](x)
    return {"confidence": confidence, "offset": offset}
