"""Fiber ids (qsopipe.pipeline.ids): the TARGETID formula and row matching."""

import numpy as np

from qsopipe.pipeline.ids import match_rows, target_id


def test_target_id_by_hand():
    assert target_id(7000, 56500, 1) == 7_000_565_000_001
    ids = target_id(np.array([7000, 10000], np.int32), np.array([56500, 58000], np.int32), np.int16(1000))
    assert ids.dtype == np.int64 and ids.tolist() == [7_000_565_001_000, 10_000_580_001_000]


def test_match_rows_finds_the_first_row_of_each_key():
    table = target_id([7000, 7000, 7001, 7000], [56000] * 4, [5, 1, 5, 1])
    keys = target_id([7000, 7001, 7000, 7002], [56000] * 4, [1, 5, 9, 1])
    index, found = match_rows(keys, table)
    assert index.tolist() == [1, 2, 0, 0] and found.tolist() == [True, True, False, False]


def test_match_rows_in_an_empty_table_finds_nothing():
    index, found = match_rows([3, 4], np.zeros(0, np.int64))
    assert index.tolist() == [0, 0] and not found.any()
