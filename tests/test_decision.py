"""QuasarNET's decision rule (qsopipe.stages.decision) and the QuasarNET stage's use of it
(`classify_spectra` with a stand-in network), without TensorFlow."""

import numpy as np
import pytest

from qsopipe.pipeline.grids import QN_NBINS, QN_NBOXES
from qsopipe.stages.decision import bal_flag, best_redshift, classify, count_lines, single_line
from qsopipe.stages.preprocess import PrepFlag
from qsopipe.stages.quasarnet import QNFlag, classify_spectra, is_classified


def test_classify_and_bal_flag():
    c = np.array([[0.9, 0, 0, 0, 0, 0],
                  [0.4, 0.4, 0, 0, 0, 0],
                  [0.5, 0.45, 0.1, 0, 0, 0],
                  [0.0, 0.0, 0.0, 0, 0, 0]])
    assert classify(c, 0.4, 1).tolist() == [True, False, True, False]
    assert classify(c, c_th=0.4, n_th=2).tolist() == [False, False, True, False]
    assert classify(c, c_th=0.3, n_th=2).tolist() == [False, True, True, False]
    c_bal = np.array([0.5, 0.9, 0.3, 0.9])
    assert bal_flag(classify(c, 0.4, 1), c_bal, 0.4).tolist() == [True, False, False, False]
    assert bal_flag(classify(c, 0.4, 1), c_bal, 0.5).tolist() == [False, False, False, False]


def test_a_quasar_on_one_line_needs_c_th_single():
    """One line at 0.6 is a quasar under the paper's rule but not at c_th_single 0.8; two such lines are."""
    c = np.array([[0.6, 0, 0, 0, 0, 0],
                  [0.6, 0.5, 0, 0, 0, 0],
                  [0.85, 0, 0, 0, 0, 0],
                  [0.3, 0, 0, 0, 0, 0]])
    assert classify(c, 0.4, 1).tolist() == [True, True, True, False]
    assert classify(c, 0.4, 1, c_th_single=0.8).tolist() == [False, True, True, False]
    assert classify(c, 0.7, 1, c_th_single=0.2).tolist() == [False, False, True, False]
    assert classify(c, 0.4, 2, c_th_single=0.8).tolist() == [False, True, False, False]
    nlines = count_lines(c, 0.4)
    assert single_line(classify(c, 0.4, 1, 0.8), nlines).tolist() == [False, False, True, False]


def test_count_lines_and_single_line():
    c = np.array([[0.9, 0, 0, 0, 0, 0],
                  [0.4, 0.4, 0, 0, 0, 0],
                  [0.5, 0.45, 0.1, 0, 0, 0],
                  [0.9, 0.8, 0.7, 0.6, 0.5, 0.41]])
    nlines = count_lines(c, 0.4)
    assert nlines.dtype == np.int16 and nlines.tolist() == [1, 0, 2, 6]
    assert count_lines(c, 0.3).tolist() == [1, 2, 2, 6]
    assert single_line(classify(c, 0.4, 1), nlines).tolist() == [True, False, False, False]
    assert single_line([False, True, True, True], [1, 1, 2, 0]).tolist() == [False, True, False, False]


def test_best_redshift_is_that_of_the_most_confident_line():
    c_lines = np.array([[0.1, 0.9, 0.3], [0.8, 0.2, 0.8]])
    z_lines = np.array([[1.0, 2.0, 3.0], [0.5, 0.6, 0.7]])
    assert best_redshift(c_lines, z_lines).tolist() == [2.0, 0.5]


#: Finder confidences (LYA, CIV, CIII, MGII, HBETA, HALPHA, BAL_CIV) of the stand-in network, one row per fiber:
#: a single-line quasar with a BAL, a two-line quasar, no line, an unusable input, a non-finite output.
FINDER_CONFIDENCES = np.array([[0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9],
                               [0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1],
                               [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
                               [0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1],
                               [0.9, np.nan, 0.1, 0.1, 0.1, 0.1, 0.1]])
PREP_FLAGS = np.array([0, 0, 0, PrepFlag.NO_VALID_PIXEL, 0])


def _stand_in_classification(c_th=0.4, n_th=1, c_th_single=0.8):
    """classify_spectra of the five fibers of FINDER_CONFIDENCES; each finder's best box is box 4."""
    n = len(FINDER_CONFIDENCES)
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None], QN_NBINS, axis=1)

    def forward(rows):
        index = rows[:, 0].astype(int)
        confidence = np.zeros((len(index), 7, QN_NBOXES))
        confidence[:, :, 4] = FINDER_CONFIDENCES[index]
        return {"confidence": confidence, "offset": np.full_like(confidence, 0.5)}

    return classify_spectra(x, PREP_FLAGS, forward, c_th=c_th, n_th=n_th, bal_th=0.5, c_th_single=c_th_single)


def test_a_single_line_quasar_is_a_flagged_quasar():
    out = _stand_in_classification()
    assert out["NLINES_QN"].dtype == np.int16 and out["NLINES_QN"].tolist() == [1, 2, 0, 0, 0]
    assert out["IS_QSO_QN"].tolist() == [1, 1, 0, 0, 0]
    assert out["QN_FLAG"].tolist() == [QNFlag.SINGLE_LINE, 0, 0, QNFlag.UNUSABLE_INPUT, QNFlag.NONFINITE_OUTPUT]
    assert is_classified(out["QN_FLAG"]).tolist() == [True, True, True, False, False]
    assert out["BAL_FLAG_QN"].tolist() == [1, 0, 0, 0, 0]
    assert out["C_LYA"][0] == np.float32(0.9) and out["Z_LYA"][0] > 0
    assert out["Z_QN"][0] == pytest.approx(out["Z_LYA"][0], rel=1e-6)
    assert np.all(out["Z_QN"][3:] == -1) and np.all(out["C_LYA"][3:] == 0)


def test_single_line_needs_a_quasar():
    """With n_th = 2 the one-line fiber is no quasar: NLINES_QN = 1 but no SINGLE_LINE bit."""
    out = _stand_in_classification(n_th=2)
    assert out["NLINES_QN"].tolist() == [1, 2, 0, 0, 0]
    assert out["IS_QSO_QN"].tolist() == [0, 1, 0, 0, 0]
    assert out["QN_FLAG"][:3].tolist() == [0, 0, 0]


def test_unclassified_bits():
    assert QNFlag.unclassified() == QNFlag.UNUSABLE_INPUT | QNFlag.NONFINITE_OUTPUT
    assert not QNFlag.unclassified() & QNFlag.SINGLE_LINE
    assert is_classified([0, 4, 1, 2, 5, 7]).tolist() == [True, True, False, False, False, False]
