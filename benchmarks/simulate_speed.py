"""Throughput of the survey simulator on one core: spectra per second.

Times simulate_plate (generation of all fibers) and write_spplate (FITS I/O)
separately for a few 1000-fiber plates, and reports spectra/s for both together.
Uses process CPU time (time.process_time), so that other jobs sharing the
machine do not count; run with one BLAS/OpenMP thread.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/simulate_speed.py [NPLATES] [NFIBERS]
"""

import sys
import tempfile
import time

from qsopipe.stages.simulate.plate_model import simulate_plate
from qsopipe.stages.simulate.plate_writer import write_spplate


def main(nplates=3, nfibers=1000):
    nplates, nfibers = int(nplates), int(nfibers)
    simulate_plate(6999, 56999, 50, seed=0)
    generate = write = 0.0
    with tempfile.TemporaryDirectory() as outdir:
        for i in range(nplates):
            start = time.process_time()
            sim = simulate_plate(7000 + i, 57000 + i, nfibers, seed=0)
            middle = time.process_time()
            write_spplate(sim, outdir)
            generate += middle - start
            write += time.process_time() - middle
    total = nplates * nfibers
    print(f"{total} spectra on {nplates} plates of {nfibers} fibers x {sim.spectra.loglam.size} pixels")
    print(f"generation: {total / generate:7.0f} spectra/s ({generate:.2f} CPU s)")
    print(f"spPlate I/O: {total / write:7.0f} spectra/s ({write:.2f} CPU s)")
    print(f"end to end: {total / (generate + write):7.0f} spectra/s")


if __name__ == "__main__":
    main(*sys.argv[1:])
