"""The MgII absorber CNN of Zhao et al. (2019) and its compiled forward pass.

Architecture (paper's Fig. 4: 10 layers, 5 convolutions, 3 max-poolings and
2 fully connected layers; the paper fixes conv1 and the 25-pixel end of the
stack, the other sizes are ours, chosen to keep inference cheap on one CPU
core, about 9 million multiply-adds per spectrum):

=====  ===========================================  ============
layer  operation                                    output shape
=====  ===========================================  ============
input  rescaled flux on the MgII grid               (3841, 1)
conv1  Conv1D(96, kernel 15, stride 5, valid), ReLU  (766, 96)
pool1  MaxPool1D(2)                                  (383, 96)
conv2  Conv1D(48, kernel 5, stride 2, valid), ReLU   (190, 48)
pool2  MaxPool1D(2)                                  (95, 48)
conv3  Conv1D(48, kernel 7, valid), ReLU             (89, 48)
conv4  Conv1D(48, kernel 7, valid), ReLU             (83, 48)
conv5  Conv1D(32, kernel 7, valid), ReLU             (77, 32)
pool3  MaxPool1D(3)                                  (25, 32)
gmax   GlobalMaxPooling1D over the 25 positions       (32,)
fc1    Dense(64), ReLU, Dropout(0.5)                  (64,)
fc2    Dense(1), sigmoid: P(strong MgII absorber)    (1,)
=====  ===========================================  ============

The global max over the stack's 25 positions (in place of the paper's
flatten) makes the detector translation invariant (models/weights/mgii.md
tells why the network needs it). conv1's 15-pixel kernel spans the doublet
(2796/2803 A are 11.1 pixels apart on the 1e-4 dex grid). Trained with
Adam on binary cross-entropy. The network uses only built-in Keras layers,
so a saved `.keras` file loads with `keras.models.load_model` and no custom
objects.
"""

import weakref

from qsopipe.pipeline.grids import MGII_NPIX
from qsopipe.models.batching import FixedBatchForward

#: Layer names and output lengths (pixels) of the conv/pool stack, for tests and docs.
STACK_LENGTHS = {
    "conv1": 766, "pool1": 383, "conv2": 190, "pool2": 95,
    "conv3": 89, "conv4": 83, "conv5": 77, "pool3": 25,
}

#: Spectra per call of the compiled forward pass; the last batch is zero-padded. Small batches keep
#: the first layer's output (batch x 766 x 96 float32: 4.7 MB at 64, 19 MB at 256) in the CPU's cache
#: (benchmarks/README.md has the speeds).
DEFAULT_BATCH = 64


def build_model(learning_rate=1e-3):
    """The MgII CNN, compiled with Adam and binary cross-entropy.

    Input: float32 (batch, 3841, 1), the output of
    `qsopipe.stages.mgii.prepare_input` with a channel axis.
    Output: float32 (batch, 1), the probability of a strong MgII absorber.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(MGII_NPIX, 1), name="flux")
    x = layers.Conv1D(96, 15, strides=5, padding="valid", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling1D(2, name="pool1")(x)
    x = layers.Conv1D(48, 5, strides=2, padding="valid", activation="relu", name="conv2")(x)
    x = layers.MaxPooling1D(2, name="pool2")(x)
    x = layers.Conv1D(48, 7, padding="valid", activation="relu", name="conv3")(x)
    x = layers.Conv1D(48, 7, padding="valid", activation="relu", name="conv4")(x)
    x = layers.Conv1D(32, 7, padding="valid", activation="relu", name="conv5")(x)
    x = layers.MaxPooling1D(3, name="pool3")(x)
    x = layers.GlobalMaxPooling1D(name="gmax")(x)
    x = layers.Dense(64, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="fc2")(x)
    model = keras.Model(inputs, outputs, name="mgii_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


class MgIIPredictor:
    """A loaded MgII CNN with a compiled forward pass on fixed-size batches
    (`qsopipe.models.batching.FixedBatchForward`); calls never retrace."""

    def __init__(self, model, batch_size=DEFAULT_BATCH):
        self.model = model
        self.batch_size = int(batch_size)
        self._forward = FixedBatchForward(self._probability, (MGII_NPIX, 1), self.batch_size)

    def _probability(self, x):
        return self.model(x, training=False)

    def __call__(self, x):
        """P(strong absorber) for x float32 (n, 3841) -> float32 (n,)."""
        return self._forward(x)[:, 0]


_PREDICTORS = weakref.WeakKeyDictionary()


def predictor_for(model):
    """The MgIIPredictor of `model` (a Keras model or already a predictor), built once per model."""
    if isinstance(model, MgIIPredictor):
        return model
    if model not in _PREDICTORS:
        _PREDICTORS[model] = MgIIPredictor(model)
    return _PREDICTORS[model]


def load_predictor(path, batch_size=DEFAULT_BATCH):
    """Load a saved `.keras` MgII CNN and wrap it in a compiled MgIIPredictor."""
    import keras

    return MgIIPredictor(keras.models.load_model(path, compile=False), batch_size=batch_size)
