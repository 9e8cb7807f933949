"""QuasarNET's decision rule (qsopipe.stages.decision), without TensorFlow."""

import numpy as np

from qsopipe.stages.decision import bal_flag, best_redshift, classify, count_lines, single_line


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

