"""QuasarNET's decision rule on decoded finder outputs: NLINES_QN, IS_QSO_QN, Z_QN, BAL_FLAG_QN and
the single-line quasars.

Inputs are the confidences and redshifts of `qsopipe.models.boxes.decode_finders`
(emission lines in `qsopipe.pipeline.constants.QN_LINES` order). numpy
only: nothing here imports TensorFlow. The thresholds' defaults are the
run configuration's (pipeline/config.yaml).
"""

import numpy as np


def count_lines(confidences, c_th):
    """NLINES: the number of emission lines with confidence > c_th.

    confidences : (n, nline) emission-line confidences.
    Returns int16 (n,).
    """
    return np.sum(np.asarray(confidences) > c_th, axis=1).astype(np.int16)


def classify(confidences, c_th, n_th, c_th_single=0.0):
    """IS_QSO: at least n_th emission lines with confidence > c_th, and a quasar
    that rests on one such line needs its confidence > c_th_single.

    confidences : (n, nline) emission-line confidences.
    c_th_single : at or below c_th, the paper's rule (n_th lines above c_th).
    Returns bool (n,).
    """
    confidences = np.asarray(confidences)
    nlines = count_lines(confidences, c_th)
    return (nlines >= n_th) & ((nlines >= 2) | (np.max(confidences, axis=1, initial=0.0) > c_th_single))


def single_line(is_qso, nlines):
    """Quasars that rest on one line above c_th (the paper's candidates for visual inspection).

    is_qso : bool (n,), IS_QSO; nlines : int (n,), NLINES (`count_lines`).
    Returns bool (n,).
    """
    return np.asarray(is_qso, bool) & (np.asarray(nlines) == 1)


def best_redshift(c_lines, z_lines):
    """Z_QN: the redshift of the most confident emission line. (n, 6), (n, 6) -> (n,)."""
    best = np.argmax(c_lines, axis=1)
    return np.take_along_axis(np.asarray(z_lines), best[:, None], axis=1)[:, 0]


def bal_flag(is_qso, c_bal, bal_th):
    """BAL_FLAG: a quasar whose BAL finder confidence exceeds bal_th. (n,), (n,) -> bool (n,)."""
    return np.asarray(is_qso, bool) & (np.asarray(c_bal) > bal_th)
