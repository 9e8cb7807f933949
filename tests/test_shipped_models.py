"""The shipped weights on the real SDSS spectra in ../shared/data (skipped when absent).

QuasarNET against the spAll labels (the model card's rule: a spAll QSO must
be classified a quasar within DV_MAX = 6000 km/s, anything else must not be), and
the MgII stage on the catalogued DR12 absorbers of these spectra. Of the
three, 3655-55240-0156 and -0714 lie in the CNN window and are found; the
third, -0370 (z 0.919, between Lyman-alpha and CIV emission, on a spectrum of
continuum S/N 2.2), lies on the finder's path but below its detection S/N
(system S/N 4.4 against 4.5), so it is not asserted. The BAL CNN on the one
BAL quasar of picca's plate-3655 catalog, and on a quasar with a narrow CIV
absorber that QuasarNET's BAL finder takes for a trough.
"""

import fitsio
import numpy as np
import pytest

from qsopipe.pipeline.config import defaults
from qsopipe.pipeline.discovery import discover
from qsopipe.models.store import default_weights, load_model
from qsopipe.models.bal import make_predictor
from qsopipe.stages import bal, mgii, quasarnet
from qsopipe.stages.evaluate import DV_MAX, velocity_offset
from qsopipe.stages.preprocess import preprocess_plate
from qsopipe.stages.redshift_fit import fit_plate

#: Catalogued DR12 absorbers (Raghunathan et al. 2016) the stage finds: (plate, mjd, fiber) -> z_abs.
CATALOGUED_ABSORBERS = {(3655, 55240, 156): 1.409, (3655, 55240, 714): 1.592}


#: 3655-55240-0110, deep CIV troughs (picca's BI_CIV flag 1), and -0388, a narrow CIV absorber at 9,500 km/s.
BAL_QUASAR, NARROW_ABSORBER = (3655, 55240, 110), (3655, 55240, 388)

#: The shipped decision thresholds (pipeline/config.yaml).
QN_THRESHOLDS = {key: defaults()[key] for key in ("c_th", "n_th", "bal_th", "c_th_single")}


@pytest.fixture(scope="module")
def real_results(sdss_dir):
    """[(shard table, QuasarNET result table)] of every real plate, through the shipped QuasarNET."""
    plates, _ = discover([sdss_dir / "dr16_spec_lite_picca", sdss_dir / "spec_full_pyqsofit"])
    model_path = default_weights("quasarnet")
    forward = quasarnet.make_forward(model_path)
    results = []
    for plate_input in plates:
        shard = preprocess_plate(plate_input.read())
        results.append((shard, quasarnet.process_shard(shard, forward, model_path, "test", **QN_THRESHOLDS)))
    return results


def test_shipped_quasarnet_agrees_with_spall(sdss_dir, real_results):
    spall = fitsio.read(sdss_dir / "dr16_spec_lite_picca" / "catalogs" / "spAll-plate3655.fits",
                        columns=["PLATE", "MJD", "FIBERID", "CLASS", "Z"])
    labels = {(int(p), int(m), int(f)): (c.strip(), z) for p, m, f, c, z in spall}
    agree = total = 0
    for _, table in real_results:
        columns = table.select(["PLATE", "MJD", "FIBERID", "IS_QSO_QN", "Z_QN"]).to_pydict()
        for plate, mjd, fiber, is_qso, z_qn in zip(*columns.values()):
            if (plate, mjd, fiber) not in labels:
                continue
            label, z = labels[(plate, mjd, fiber)]
            total += 1
            if label == "QSO":
                agree += is_qso == 1 and abs(velocity_offset(z_qn, z)) < DV_MAX
            else:
                agree += is_qso != 1
    assert total == 79
    assert agree >= 76, f"{agree} / {total} agree with spAll (the model card says 76)"


def test_shipped_mgii_stage_finds_the_catalogued_absorbers(real_results):
    cnn = load_model(str(default_weights("mgii")))
    found = {}
    for shard, qn_table in real_results:
        table, absorbers = mgii.process_plate(shard, qn_table, fit_plate(shard, qn_table), cnn,
                                              defaults()["mgii_threshold"])
        flags = table.select(["PLATE", "MJD", "FIBERID", "IS_MGII_ABS"]).to_pydict()
        rows = absorbers.select(["PLATE", "MJD", "FIBERID", "Z_ABS"]).to_pydict()
        for plate, mjd, fiber, is_abs in zip(*flags.values()):
            if (plate, mjd, fiber) in CATALOGUED_ABSORBERS:
                z_abs = [z for p, m, f, z in zip(*rows.values()) if (p, m, f) == (plate, mjd, fiber)]
                found[(plate, mjd, fiber)] = (is_abs, z_abs)
    assert found.keys() == CATALOGUED_ABSORBERS.keys()
    for key, z_catalogue in CATALOGUED_ABSORBERS.items():
        is_abs, z_abs = found[key]
        assert is_abs == 1, key
        assert np.min(np.abs(np.array(z_abs) - z_catalogue)) < 0.002, (key, z_abs)


def test_shipped_bal_cnn_on_a_bal_and_a_narrow_absorber(real_results):
    predict = make_predictor(load_model(str(default_weights("bal"))))
    found = {}
    for shard, qn_table in real_results:
        table = bal.process_plate(shard, qn_table, fit_plate(shard, qn_table), predict, defaults()["bal_prob_th"])
        columns = table.select(["PLATE", "MJD", "FIBERID", "BAL_PROB", "BAL_FLAG"]).to_pydict()
        for plate, mjd, fiber, probability, flag in zip(*columns.values()):
            found[(plate, mjd, fiber)] = (probability, flag)
    assert found[BAL_QUASAR][0] > 0.9 and found[BAL_QUASAR][1] == 1
    assert 0 <= found[NARROW_ABSORBER][0] < defaults()["bal_prob_th"] and found[NARROW_ABSORBER][1] == 0
