"""Speed of the MgII stage on one core: the CNN forward pass and `process_plate`.

Usage: python benchmarks/mgii_speed.py [--model MODEL.keras] [--vetter VETTER.json|none] [--fibers 1000] [--repeat 3]

Without --model, an untrained network of the shipped architecture is used
(same cost). The plate is synthetic: power-law spectra on the MgII grid, a
third of them quasars at z 0.5-3.5, a quarter of those with one or two
doublets. The stage's default threshold (0) fits every searched sightline,
so the fits cost what they would with a trained network. Reports spectra/s
of the compiled fixed-batch forward pass, of prepare_input, of the doublet
search and fits per searched sightline and of the whole process_plate (per
input fiber). The doublet finder is the configured one (the shipped
candidate vetter) unless --vetter says otherwise ('none': the rules alone).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from qsopipe.pipeline.constants import MGII_2796  # noqa: E402
from qsopipe.pipeline.grids import MGII_NPIX, mgii_loglam  # noqa: E402
from qsopipe.pipeline.parquet_io import fixed_size_list  # noqa: E402
from qsopipe.pipeline.config import defaults  # noqa: E402
from qsopipe.stages.mgii import doublet_finder, measure_absorbers, prepare_input, process_plate  # noqa: E402
from qsopipe.stages.mgii_fit import doublet_profile  # noqa: E402
from timing import best_of  # noqa: E402


def synthetic_plate(nfiber, seed=0):
    """(shard table, QuasarNET table) of a synthetic plate."""
    rng = np.random.default_rng(seed)
    wave = 10 ** mgii_loglam()
    z_qso = rng.uniform(0.5, 3.5, nfiber)
    is_qso = (rng.random(nfiber) < 1 / 3).astype(np.int16)
    continuum = rng.uniform(2, 20, (nfiber, 1)) * (wave / 5000.0) ** -1.5
    depth = np.zeros((nfiber, MGII_NPIX))
    for row in np.flatnonzero(is_qso & (rng.random(nfiber) < 0.25)):
        for _ in range(rng.integers(1, 3)):
            z_abs = (1 + z_qso[row]) * rng.uniform(1700, 2700) / MGII_2796 - 1
            ew = rng.uniform(0.5, 2.5)
            depth[row] += doublet_profile(z_abs, ew * (1 + z_abs), ew * (1 + z_abs) / 1.4, 80.0)
    ivar = (rng.uniform(5, 30, (nfiber, 1)) / continuum) ** 2
    flux = continuum * (1 - depth) + rng.normal(size=continuum.shape) / np.sqrt(ivar)
    ids = {"PLATE": pa.array(np.full(nfiber, 9000, np.int32)), "MJD": pa.array(np.full(nfiber, 57000, np.int32)),
           "FIBERID": pa.array(np.arange(1, nfiber + 1, dtype=np.int32))}
    shard = pa.table({**ids, "RA": pa.array(rng.uniform(0, 360, nfiber)), "DEC": pa.array(rng.uniform(-10, 60, nfiber)),
                      "PREP_FLAG": pa.array(np.zeros(nfiber, np.int32)),
                      "MGII_FLUX": fixed_size_list(flux.astype(np.float32)),
                      "MGII_IVAR": fixed_size_list(ivar.astype(np.float32))})
    qn = pa.table({**ids, "IS_QSO_QN": pa.array(is_qso), "BAL_FLAG_QN": pa.array(np.zeros(nfiber, np.int16)),
                   "Z_QN": pa.array(z_qso),
                   "QN_FLAG": pa.array(np.zeros(nfiber, np.int32))})
    return shard, qn, flux.astype(np.float32), ivar.astype(np.float32), z_qso, is_qso


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="MgII CNN .keras (default: untrained, same architecture)")
    parser.add_argument("--vetter", help="candidate vetter .json, or 'none' [default: pipeline/config.yaml's]")
    parser.add_argument("--fibers", type=int, default=1000)
    parser.add_argument("--forward-spectra", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from qsopipe.models.mgii import MgIIPredictor, build_model, load_predictor

    predictor = load_predictor(args.model) if args.model else MgIIPredictor(build_model())
    x = np.random.default_rng(1).random((args.forward_spectra, MGII_NPIX), dtype=np.float32)
    predictor(x[:1])
    seconds, _ = best_of(args.repeat, lambda: predictor(x))
    print(f"forward pass (batch {predictor.batch_size}, 1 thread): {args.forward_spectra / seconds:.0f} spectra/s")

    shard, qn, flux, ivar, z_qso, is_qso = synthetic_plate(args.fibers)
    zfit = pa.table({"FIBERID": qn["FIBERID"], "Z": qn["Z_QN"]})
    quasars = np.flatnonzero(is_qso == 1)
    seconds, (xq, searchable) = best_of(args.repeat, lambda: prepare_input(flux[quasars], ivar[quasars], z_qso[quasars]))
    print(f"prepare_input: {quasars.size / seconds:.0f} spectra/s")
    positive = quasars[searchable][predictor(xq[searchable]) >= defaults()["mgii_threshold"]]
    criteria, vetter = doublet_finder({"mgii_vetter": args.vetter})
    seconds, (found, _) = best_of(1, lambda: measure_absorbers(flux[positive], ivar[positive], z_qso[positive],
                                                                 criteria, vetter))
    print(f"doublet search + fits over the whole path: {positive.size / seconds:.0f} searched sightlines/s, "
          f"{sum(map(len, found)) / max(positive.size, 1):.2f} absorbers each")
    seconds, (mgii, absorbers) = best_of(args.repeat, lambda: process_plate(shard, qn, zfit, predictor,
                                                                            defaults()["mgii_threshold"], criteria, vetter))
    print(f"process_plate: {args.fibers} fibers ({quasars.size} quasars, {positive.size} fitted, "
          f"{absorbers.num_rows} absorbers) in {seconds:.2f} s = {args.fibers / seconds:.0f} fibers/s, "
          f"{quasars.size / seconds:.0f} quasars/s")


if __name__ == "__main__":
    main()
