"""QuasarNET's decision rule on decoded finder outputs: IS_QSO_QN, Z_QN and BAL_FLAG_QN.

Inputs are the confidences and redshifts of `qsopipe.models.boxes.decode_finders`
(emission lines in `qsopipe.pipeline.constants.QN_LINES` order). numpy
only: nothing here imports TensorFlow. The thresholds' defaults are the
run configuration's (pipeline/config.yaml).
"""

import numpy as np

def classify(confidences, c_th, n_th):
    """IS_QSO: at least n_th emission lines with confidence > c_th.

    confidences : (n, nline) emission-line confidences.
    Returns bool (n,).
    """
    return np.sum(np.asarray(confidences) > c_th, axis=1) >= n_th


def best_redshift(c_lines, z_lines):
    """Z_QN: the redshift of the most confident emission line. (n, 6), (n, 6) -> (n,)."""
    best = np.argmax(c_lines, axis=1)
    return np.take_along_axis(np.asarray(z_lines), best[:, None], axis=1)[:, 0]


def bal_flag(is_qso, c_bal, bal_th):
    """BAL_FLAG: a quasar whose BAL finder confidence exceeds bal_th. (n,), (n,) -> bool (n,)."""
    return np.asarray(is_qso, bool) & (np.asarray(c_bal) > bal_th)
