"""The CIV BAL classifier: a CNN on the CIV absorption region at full resolution.

QuasarNET's BAL finder sees 1e-3 dex bins (690 km/s), where a narrow CIV
absorber and a 2,000 km/s trough look alike. Like the BAL network of
DR16Q (Guo & Martini 2019), this one looks at the CIV region of the
spectrum at the MgII grid's resolution, in the quasar's rest frame, and
gives the probability that the quasar has BI_CIV > 0.

The input is cut from the MgII grid (3841 pixels of 1e-4 dex from 3800 A,
`qsopipe.pipeline.grids`): WINDOW_NPIX pixels from WINDOW_REST_MIN A rest
frame, averaged in pairs (2e-4 dex, 138 km/s), as two channels: flux over
the window's flux level, minus 1, and the noise over that level (0 and
SIGMA_CAP on pixels without data).
"""

import warnings

import numpy as np

from qsopipe.models.batching import FixedBatchForward
from qsopipe.pipeline.constants import CIV_EMISSION, SPEED_OF_LIGHT_KMS
from qsopipe.pipeline.grids import MGII_DLOGLAM, MGII_LOGLAM_MIN, MGII_NPIX

#: Rest wavelength (A) of the window's first pixel and its length in MgII-grid pixels (to 1636 A).
WINDOW_REST_MIN = 1330.0
WINDOW_NPIX = 900
#: MgII-grid pixels averaged into one input pixel.
BIN = 2
INPUT_NPIX = WINDOW_NPIX // BIN
#: Outflow velocities (km/s) over which BI integrates (Weymann et al. 1991).
BI_VMIN, BI_VMAX = 3000.0, 25000.0
#: A window needs this many input pixels with data within the BI velocities to be classified.
MIN_BI_PIXELS = 60
#: Bounds of the two channels: normalised flux - 1 and normalised noise.
FLUX_CLIP = (-2.0, 3.0)
SIGMA_CAP = 3.0
#: Largest traced batch of the compiled forward pass.
DEFAULT_BATCH = 256
#: Percentile of the window's good pixels taken as its flux level (troughs pull the median down).
LEVEL_PERCENTILE = 75


def rest_wavelength(velocity_kms, rest=CIV_EMISSION):
    """Rest wavelength (A) of outflow velocity `velocity_kms` (km/s, positive blueward) from line `rest`."""
    beta = np.asarray(velocity_kms, np.float64) / SPEED_OF_LIGHT_KMS
    return rest * np.sqrt((1.0 - beta) / (1.0 + beta))


def _bi_pixels():
    """Input pixels (slice) whose rest wavelengths lie at the BI velocities."""
    loglam = np.log10(WINDOW_REST_MIN) + MGII_DLOGLAM * BIN * (np.arange(INPUT_NPIX) + 0.5 * (BIN - 1) / BIN)
    inside = np.flatnonzero((loglam >= np.log10(rest_wavelength(BI_VMAX)))
                            & (loglam <= np.log10(rest_wavelength(BI_VMIN))))
    return slice(int(inside[0]), int(inside[-1]) + 1)


BI_PIXELS = _bi_pixels()


def window_start(z_qso):
    """MgII-grid pixel (int64, may be off the grid) at WINDOW_REST_MIN for redshifts `z_qso` (n,)."""
    loglam = np.log10(WINDOW_REST_MIN * (1.0 + np.asarray(z_qso, np.float64)))
    return np.rint((loglam - MGII_LOGLAM_MIN) / MGII_DLOGLAM).astype(np.int64)


def cut_windows(flux, ivar, start, npix=WINDOW_NPIX):
    """Rows (n, npix) of flux and ivar (n, 3841) from pixel `start` (n,) on; ivar 0 off the grid."""
    columns = np.asarray(start)[:, None] + np.arange(npix)[None, :]
    on_grid = (columns >= 0) & (columns < MGII_NPIX)
    columns = np.clip(columns, 0, MGII_NPIX - 1)
    cut_flux = np.where(on_grid, np.take_along_axis(flux, columns, axis=1), 0.0).astype(np.float32)
    cut_ivar = np.where(on_grid, np.take_along_axis(ivar, columns, axis=1), 0.0).astype(np.float32)
    return cut_flux, cut_ivar


def network_input(flux, ivar):
    """Network input (n, INPUT_NPIX, 2) float32 and `usable` (n,) bool from windows (n, WINDOW_NPIX).

    Pairs of pixels are ivar-weighted; the flux level is the
    LEVEL_PERCENTILE-th percentile of the binned pixels with data. A window
    is usable when its level is positive and MIN_BI_PIXELS binned pixels at
    the BI velocities have data; the rows of unusable ones are zeros.
    """
    n = flux.shape[0]
    weight = ivar.reshape(n, INPUT_NPIX, BIN).astype(np.float64)
    total = weight.sum(axis=2)
    good = total > 0
    binned = np.where(good, (flux.reshape(n, INPUT_NPIX, BIN) * weight).sum(axis=2) / np.where(good, total, 1.0), 0.0)
    sigma = np.where(good, 1.0 / np.sqrt(np.where(good, total, 1.0)), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nan_to_num(np.nanpercentile(np.where(good, binned, np.nan), LEVEL_PERCENTILE, axis=1))
    usable = (level > 0) & (good[:, BI_PIXELS].sum(axis=1) >= MIN_BI_PIXELS)
    scale = np.where(usable, level, 1.0)[:, None]
    x = np.zeros((n, INPUT_NPIX, 2), np.float32)
    x[..., 0] = np.where(good, np.clip(binned / scale - 1.0, *FLUX_CLIP), 0.0)
    x[..., 1] = np.where(good, np.minimum(sigma / scale, SIGMA_CAP), SIGMA_CAP)
    x[~usable] = 0.0
    return x, usable


def spectra_input(flux, ivar, z_qso):
    """Network input and `usable` (see network_input) for MgII-grid spectra (n, 3841) at redshifts z_qso (n,)."""
    return network_input(*cut_windows(flux, ivar, window_start(z_qso)))


def build_model(learning_rate=1e-3, seed=0):
    """The BAL CNN: (n, INPUT_NPIX, 2) -> P(BI_CIV > 0), (n, 1).

    Four Conv1D(k=9) + ReLU + MaxPool(2) blocks (16, 32, 32, 64 filters; 121
    input pixels, 16,700 km/s, of receptive field), Flatten (the position
    in velocity matters: BI counts 3,000-25,000 km/s), Dense(64) + ReLU +
    Dropout(0.3), Dense(1, sigmoid).
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((INPUT_NPIX, 2), name="civ_window")
    x = inputs
    for filters in (16, 32, 32, 64):
        x = keras.layers.Conv1D(filters, 9, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_bal")(x)
    model = keras.Model(inputs, outputs, name="bal_cnn")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def make_predictor(model, batch_size=DEFAULT_BATCH):
    """P(BI_CIV > 0), float32 (n,), of network inputs (n, INPUT_NPIX, 2), by `model`'s forward pass compiled
    on fixed batches (`qsopipe.models.batching.FixedBatchForward`)."""
    forward = FixedBatchForward(lambda x: model(x, training=False), (INPUT_NPIX, 2), batch_size)
    return lambda x: forward(x)[:, 0]
