"""QuasarNET's box encoding of line positions: training targets from redshifts, redshifts from outputs.

The network (`qsopipe.models.quasarnet`) has seven *finders*, in
`qsopipe.pipeline.constants.QN_FINDERS` order: the six emission lines of
QN_LINES, then the BAL finder on CIV(1548). Each finder's output is
(n, 2*nboxes) = [nboxes box confidences, nboxes box offsets].

Box encoding: the 443-bin grid (pixel position p in [0, 443), where
log10(lambda) = log10(3600) + 1e-3 p) is cut into 13 equal boxes of
443/13 pixels. A line at observed wavelength (1+z) lambda_rest falls in
box floor(p / (443/13)) with offset p / (443/13) - box in [0, 1). A line off
the grid has every box empty.

numpy only: nothing here imports TensorFlow.
"""

import numpy as np

from qsopipe.pipeline.constants import QN_FINDERS, QN_LINES, QUASAR_CLASSES
from qsopipe.pipeline.grids import QN_DLOGLAM, QN_LOGLAM_MIN, QN_NBINS, QN_NBOXES
from qsopipe.pipeline.sdss.catalogs import balnicity_bal

#: Finder names in output order (the network's output names).
FINDER_NAMES = tuple(name for name, _ in QN_FINDERS)
#: Number of emission-line finders (the first ones); the rest are BAL finders.
N_EMISSION = len(QN_LINES)
#: Index of the BAL finder in the outputs.
BAL_INDEX = N_EMISSION


def _rest_wavelength(line):
    """A finder name (e.g. 'CIV', 'BAL_CIV') or a rest wavelength (Angstrom) -> Angstrom."""
    if isinstance(line, str):
        return dict(QN_FINDERS)[line]
    return float(line)


def box_size(nboxes=QN_NBOXES, npix=QN_NBINS):
    """Width of one box, in QuasarNET pixels (443/13)."""
    return npix / nboxes


def encode(z, line, nboxes=QN_NBOXES, npix=QN_NBINS):
    """Box and offset targets of the redshifts `z` for one line.

    z : array-like (n,), redshift (NaN allowed: no line).
    line : finder name or rest wavelength in Angstrom.
    Returns (box_target, offset_target), float32 (n, nboxes): box_target is
    1 in the box holding the line's observed wavelength and 0 elsewhere;
    offset_target is the line's position within that box, in [0, 1), and 0
    elsewhere. Lines off the grid (or NaN z) give all-zero rows.
    """
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        position = (np.log10((1.0 + z) * _rest_wavelength(line)) - QN_LOGLAM_MIN) / QN_DLOGLAM
    on_grid = np.isfinite(position) & (position >= 0) & (position < npix)
    in_boxes = np.where(on_grid, position, 0.0) / box_size(nboxes, npix)
    box = np.minimum(np.floor(in_boxes).astype(np.int64), nboxes - 1)
    rows = np.flatnonzero(on_grid)
    box_target = np.zeros((len(z), nboxes), np.float32)
    offset_target = np.zeros((len(z), nboxes), np.float32)
    box_target[rows, box[rows]] = 1.0
    offset_target[rows, box[rows]] = (in_boxes - box)[rows]
    return box_target, offset_target


def decode(confidence, offset, line, npix=QN_NBINS):
    """Line confidence and redshift from one finder's outputs.

    confidence, offset : (..., nboxes). line : finder name or rest wavelength (A).
    Returns (C, Z), float64 (...): C the largest box confidence; Z the
    redshift of the line placed at (most confident box + its offset) boxes.
    """
    confidence = np.asarray(confidence)
    offset = np.asarray(offset)
    nboxes = confidence.shape[-1]
    best = np.argmax(confidence, axis=-1)
    c = np.take_along_axis(confidence, best[..., None], axis=-1)[..., 0].astype(np.float64)
    best_offset = np.take_along_axis(offset, best[..., None], axis=-1)[..., 0].astype(np.float64)
    position = (best + best_offset) * box_size(nboxes, npix)
    z = 10.0 ** (QN_LOGLAM_MIN + QN_DLOGLAM * position) / _rest_wavelength(line) - 1.0
    return c, z


def decode_finders(confidence, offset):
    """Every finder's (C, Z): confidence, offset (n, 7, nboxes) -> C, Z (n, 7) float64, QN_FINDERS order."""
    pairs = [decode(confidence[:, k], offset[:, k], rest) for k, (_, rest) in enumerate(QN_FINDERS)]
    return np.stack([c for c, _ in pairs], axis=1), np.stack([z for _, z in pairs], axis=1)


def training_targets(class_person, z, bal_flag_vi, bi_civ, nboxes=QN_NBOXES):
    """Keras targets and per-finder sample weights from DR12Q-style truth.

    class_person : (n,) int, QUASAR_CLASSES (3 QSO and 30 BAL QSO) are
        quasars; anything else is not (all boxes empty for every finder).
    z : (n,) visual redshift Z_VI.
    bal_flag_vi : (n,) int, visual BAL flag; the BAL finder is filled at the
        CIV(1548) position for quasars with bal_flag_vi > 0.
    bi_civ : (n,) BALnicity index of CIV (km/s; NaN counts as 0).
    Returns (targets, weights): lists in QN_FINDERS order of float32 arrays
    (n, 2*nboxes) and (n,). Emission finders weigh 1; the BAL finder weighs 0
    where (bal_flag_vi > 0) and (bi_civ > 0) disagree, 1 otherwise.
    """
    is_qso = np.isin(np.asarray(class_person), QUASAR_CLASSES)
    is_bal_vi = np.asarray(bal_flag_vi) > 0
    is_bal_bi = balnicity_bal(bi_civ)
    z_qso = np.where(is_qso, np.asarray(z, dtype=np.float64), np.nan)
    targets, weights = [], []
    for k, (_, rest) in enumerate(QN_FINDERS):
        z_line = z_qso if k < N_EMISSION else np.where(is_bal_vi, z_qso, np.nan)
        box_target, offset_target = encode(z_line, rest, nboxes)
        targets.append(np.concatenate([box_target, offset_target], axis=1))
        agree = np.ones(len(z_qso), bool) if k < N_EMISSION else (is_bal_vi == is_bal_bi)
        weights.append(agree.astype(np.float32))
    return targets, weights
