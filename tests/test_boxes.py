"""QuasarNET's box encoding and training targets (qsopipe.models.boxes), without TensorFlow."""

import numpy as np
import pytest

from qsopipe.models.boxes import BAL_INDEX, N_EMISSION, decode, decode_finders, encode, training_targets
from qsopipe.pipeline.constants import LYA, QN_FINDERS
from qsopipe.pipeline.grids import QN_DLOGLAM, QN_LOGLAM_MIN, QN_NBINS, QN_NBOXES
from qsopipe.stages.decision import best_redshift


# --- box encoding ---------------------------------------------------------------

def _z_range_on_grid(rest):
    """Redshifts that put a line of rest wavelength `rest` on the 443-bin grid."""
    lam_min = 10 ** QN_LOGLAM_MIN
    lam_max = 10 ** (QN_LOGLAM_MIN + QN_DLOGLAM * QN_NBINS)
    return lam_min / rest - 1, lam_max / rest - 1


@pytest.mark.parametrize("name,rest", QN_FINDERS)
def test_encode_decode_round_trip(name, rest):
    zmin, zmax = _z_range_on_grid(rest)
    z = np.linspace(zmin, zmax, 2001)[1:-1]
    z = z[z > -0.9]
    box, offset = encode(z, name)
    assert box.shape == offset.shape == (len(z), QN_NBOXES)
    assert np.all(box.sum(axis=1) == 1)
    assert np.all((offset >= 0) & (offset < 1))
    assert np.all(offset[box == 0] == 0)
    c, z_back = decode(box, offset, name)
    assert np.all(c == 1)
    np.testing.assert_allclose(z_back, z, rtol=0, atol=2e-6 * (1 + z.max()))


def test_encode_by_hand():
    # LYA placed 2.5 boxes into the grid: box 2, offset 0.5.
    position = 2.5 * QN_NBINS / QN_NBOXES
    z = 10 ** (QN_LOGLAM_MIN + QN_DLOGLAM * position) / LYA - 1
    box, offset = encode([z], "LYA")
    assert np.argmax(box[0]) == 2 and box[0, 2] == 1
    assert offset[0, 2] == pytest.approx(0.5, abs=1e-6)


def test_encode_off_grid_and_nan_are_empty():
    box, offset = encode([-0.5, 20.0, np.nan], "LYA")
    assert not box.any() and not offset.any()


def test_decode_takes_most_confident_box():
    conf = np.full((1, QN_NBOXES), 0.1)
    conf[0, 5] = 0.9
    off = np.full((1, QN_NBOXES), 0.25)
    c, z = decode(conf, off, 1500.0)
    expected_lambda = 10 ** (QN_LOGLAM_MIN + QN_DLOGLAM * 5.25 * QN_NBINS / QN_NBOXES)
    assert c[0] == pytest.approx(0.9)
    assert z[0] == pytest.approx(expected_lambda / 1500.0 - 1, rel=1e-12)


def test_decode_finders_and_best_redshift():
    z_true = np.array([2.5, 0.8])
    targets, _ = training_targets(np.array([3, 3]), z_true, np.zeros(2), np.zeros(2))
    stacked = np.stack(targets, axis=1)
    c, z = decode_finders(stacked[..., :QN_NBOXES], stacked[..., QN_NBOXES:])
    assert c.shape == z.shape == (2, 7)
    z_qn = best_redshift(c[:, :N_EMISSION], z[:, :N_EMISSION])
    np.testing.assert_allclose(z_qn, z_true, atol=1e-5)


# --- training targets and weights -------------------------------------------

def test_training_targets():
    class_person = np.array([3, 30, 1, 4, 30, 3])
    z = np.array([2.5, 2.5, 0.0, 0.3, 2.5, 2.5])
    bal_flag_vi = np.array([0, 1, 0, 0, 1, 0])
    bi_civ = np.array([0.0, 500.0, 0.0, np.nan, 0.0, 200.0])
    targets, weights = training_targets(class_person, z, bal_flag_vi, bi_civ)
    assert len(targets) == len(weights) == 7
    assert all(t.shape == (6, 2 * QN_NBOXES) for t in targets)
    lya, bal = targets[0], targets[BAL_INDEX]
    assert lya[[0, 1, 4, 5], :QN_NBOXES].sum(axis=1).tolist() == [1, 1, 1, 1]
    for k in range(7):                        # star and galaxy: everything empty
        assert not targets[k][[2, 3]].any()
    assert bal[:, :QN_NBOXES].sum(axis=1).tolist() == [0, 1, 0, 0, 1, 0]
    np.testing.assert_array_equal(bal[1], targets[1][1])   # BAL finder sits on CIV
    assert weights[BAL_INDEX].tolist() == [1, 1, 1, 1, 0, 0]
    assert all(w.tolist() == [1] * 6 for w in weights[:BAL_INDEX])
