"""Read and preprocess speed for one 1000-fiber plate, and peak memory.

Usage: python benchmarks/preprocess_speed.py [--plate spPlate.fits] [--repeat 5]

Without --plate, one plate is simulated first (qsopipe simulate). Reports,
per plate (best of --repeat): the spPlate read, the preprocess (QuasarNET
rebin and MgII regrid of every fiber), the Parquet shard write, spectra/s
for read + preprocess and for read + preprocess + write on one core, and
the process's peak RSS.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from qsopipe.pipeline.parquet_io import write_parquet  # noqa: E402
from qsopipe.pipeline.sdss import read_spplate  # noqa: E402
from qsopipe.stages.preprocess import plate_inputs, preprocess_plate  # noqa: E402
from timing import best_of  # noqa: E402


def simulated_plate(workdir, fibers):
    subprocess.run([sys.executable, "-m", "qsopipe.pipeline", "simulate", "--out", str(workdir), "--plates", "1",
                    "--fibers", str(fibers), "--seed", "11"], check=True)
    return next(Path(workdir).rglob("spPlate-*.fits"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plate", type=Path)
    parser.add_argument("--fibers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        path = args.plate or simulated_plate(workdir, args.fibers)
        read_s, plate = best_of(args.repeat, lambda: read_spplate(path))
        inputs_s, _ = best_of(args.repeat, lambda: plate_inputs(plate.loglam, plate.flux, plate.ivar, plate.and_mask))
        prep_s, table = best_of(args.repeat, lambda: preprocess_plate(plate))
        out = Path(workdir) / "shard.parquet"
        write_s, _ = best_of(args.repeat, lambda: write_parquet(table, out))
        size_mb = out.stat().st_size / 1e6
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nfiber = plate.nfiber
    print(f"plate {path.name}: {nfiber} fibers x {plate.flux.shape[1]} pixels (best of {args.repeat})")
    print(f"  read spPlate                     {read_s * 1e3:8.1f} ms")
    print(f"  rebin + regrid (plate_inputs)    {inputs_s * 1e3:8.1f} ms")
    print(f"  preprocess, shard table          {prep_s * 1e3:8.1f} ms")
    print(f"  Parquet write                    {write_s * 1e3:8.1f} ms  ({size_mb:.1f} MB)")
    for label, seconds in (("read + preprocess", read_s + prep_s), ("read + preprocess + write", read_s + prep_s + write_s)):
        print(f"  {label}: {seconds * 1e3:.1f} ms = {nfiber / seconds:,.0f} spectra/s on one core")
    print(f"  peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
