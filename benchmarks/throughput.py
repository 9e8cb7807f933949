"""End-to-end throughput of `qsopipe run` against the machine's limit.

Usage: python benchmarks/throughput.py [--plates 10] [--fibers 1000] [--workers N] [--repeat 3] [--json OUT]

1. Simulates N plates (qsopipe simulate).
2. Runs `qsopipe run` on the first 2 plates and on all N (fresh output
   directories), --repeat times each, and keeps the fastest of each size;
   the steady-state rate is the marginal one, (N - 2) * fibers / (t_N - t_2),
   so start-up (Dask, TensorFlow, model loading, tracing) cancels. Start-up
   varies by a second or so from run to run, hence the repeats.
3. Measures the limit in this process on the same machine: one core's
   compiled forward passes of the shipped models on random inputs (QuasarNET
   on every spectrum, the BAL and MgII CNNs on the fractions of spectra the
   run sent to them) plus the spPlate reads, scaled by the number of workers.
4. Prints spectra/s, the limit, their ratio, per-stage time per spectrum
   (the median over the plates, so start-up does not count) and peak RSS
   per worker (from the run report); with --json, writes them too.
   As a cross-check of the marginal rate, which divides by the difference
   of two wall times of a few seconds, it also prints the per-plate rate:
   workers / the median over the plates of a plate's seconds per spectrum
   on its worker (each single-threaded worker runs one plate at a time).

On a GPU machine the same script runs unchanged; the forward passes then run
on the GPU and the figures are per GPU.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from qsopipe.pipeline.layout import RunLayout, find_products
from timing import best_of


def qsopipe(*args):
    subprocess.run([sys.executable, "-m", "qsopipe.pipeline", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def timed_run(inputs, outdir, workers):
    """Wall seconds of one `qsopipe run` and its run report."""
    start = time.perf_counter()
    qsopipe("run", *inputs, "--out", outdir, "--workers", workers)
    seconds = time.perf_counter() - start
    return seconds, json.loads(RunLayout(outdir).report.read_text())


def forward_rate(predict, width, batch, repeat=5):
    """Spectra/s of a compiled forward pass on random (batch, width) inputs, best of `repeat`."""
    x = np.random.default_rng(0).normal(size=(batch, width)).astype(np.float32)
    predict(x)
    best, _ = best_of(repeat, lambda: predict(x))
    return batch / best


def read_rate(paths):
    """Spectra/s of reading spPlate files with the pipeline's reader."""
    from qsopipe.pipeline.sdss import read_spplate

    start = time.perf_counter()
    nfiber = sum(read_spplate(path).nfiber for path in paths)
    return nfiber / (time.perf_counter() - start)


def measure_limit(plates, fractions, workers, batch):
    """Spectra/s the machine allows: reads + QuasarNET + BAL + MgII forward passes on one core, times workers.

    fractions : {"bal", "mgii"}, the fractions of spectra each CNN ran on.
    """
    os.environ.setdefault("QSOPIPE_TF_THREADS", "1")
    from qsopipe.models.bal import INPUT_NPIX, make_predictor
    from qsopipe.models.mgii import predictor_for
    from qsopipe.models.quasarnet import predict
    from qsopipe.models.store import default_weights, load_model

    qn_model = load_model(str(default_weights("quasarnet")))
    mgii_predict = predictor_for(load_model(str(default_weights("mgii"))))
    bal_predict = make_predictor(load_model(str(default_weights("bal"))))
    rates = {
        "read": read_rate(plates),
        "quasarnet_forward": forward_rate(lambda x: predict(qn_model, x, batch=batch), 443, batch),
        "bal_forward": forward_rate(bal_predict, 2 * INPUT_NPIX, 256),
        "mgii_forward": forward_rate(mgii_predict, 3841, 1024),
    }
    per_core = 1.0 / (1 / rates["read"] + 1 / rates["quasarnet_forward"] + fractions["bal"] / rates["bal_forward"]
                      + fractions["mgii"] / rates["mgii_forward"])
    return per_core * workers, rates


def ran_fraction(results, product, column):
    """Fraction of the spectra whose probability `column` of `product` (under RESULTS) is >= 0: the CNN ran."""
    import pyarrow.parquet as pq

    values = [pq.read_table(path, columns=[column]).column(0).to_numpy() for _, path in find_products(product, results)]
    return float(np.mean(np.concatenate(values) >= 0))


def stage_costs(report):
    """Steady-state seconds per spectrum of each stage and of a whole plate, and peak RSS (MB) per
    worker, from a run report.

    Each cost is its median over the plates, so that each worker's first
    plate, which also loads the models and traces the forward passes, does
    not count.
    """
    plates = [p for p in report["plates"] if p["status"] == "done"]
    stages = {name: float(np.median([p["stage_seconds"][name] / p["nfiber"] for p in plates]))
              for name in plates[0]["stage_seconds"]}
    plate_seconds = float(np.median([p["seconds"] / p["nfiber"] for p in plates]))
    rss = {}
    for p in plates:
        rss[p["worker_pid"]] = max(rss.get(p["worker_pid"], 0), p["worker_peak_rss_mb"])
    return stages, plate_seconds, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plates", type=int, default=10)
    parser.add_argument("--fibers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each size; the fastest counts.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        qsopipe("simulate", "--out", work / "sim", "--plates", args.plates, "--fibers", args.fibers,
                "--seed", 31, "--first-plate", 9500)
        plates = sorted((work / "sim" / "spectra").rglob("spPlate-*.fits"))
        t_small = min(timed_run(plates[:2], work / f"run2-{k}", args.workers)[0] for k in range(args.repeat))
        runs = {work / f"runN-{k}": timed_run(plates, work / f"runN-{k}", args.workers) for k in range(args.repeat)}
        fastest = min(runs, key=lambda outdir: runs[outdir][0])
        t_all, report = runs[fastest]
        stages, plate_seconds, rss = stage_costs(report)
        fractions = {product: ran_fraction(RunLayout(fastest).results, product, column)
                     for product, column in (("bal", "BAL_PROB"), ("mgii", "MGII_PROB"))}
        limit, rates = measure_limit(plates, fractions, args.workers, args.batch_size)
    marginal = (len(plates) - 2) * args.fibers / (t_all - t_small)
    per_plate = args.workers / plate_seconds
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "plates": len(plates), "fibers_per_plate": args.fibers, "workers": args.workers,
        "wall_seconds": {"2_plates": t_small, f"{len(plates)}_plates": t_all},
        "run_spectra_per_s": marginal, "limit_spectra_per_s": limit, "ratio": marginal / limit,
        "per_plate_spectra_per_s": per_plate, "per_plate_ratio": per_plate / limit,
        "limit_parts_per_core": rates, "bal_fraction": fractions["bal"], "mgii_fraction": fractions["mgii"],
        "stage_seconds_per_spectrum": stages, "peak_rss_mb_per_worker": rss,
    }
    print(f"run: {marginal:,.0f} spectra/s steady state ({len(plates)} x {args.fibers} fibers, "
          f"{args.workers} workers); limit {limit:,.0f} spectra/s; ratio {marginal / limit:.2f}")
    print(f"per-plate rate: {per_plate:,.0f} spectra/s (median plate {plate_seconds * args.fibers:.3f} s "
          f"on its worker); ratio {per_plate / limit:.2f}")
    print("limit parts (one core): " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items())
          + f"; BAL CNN on {fractions['bal']:.0%}, MgII on {fractions['mgii']:.0%} of spectra")
    print("stage time per spectrum: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in stages.items()))
    print("peak RSS per worker: " + ", ".join(f"{v:,.0f} MB" for v in rss.values()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
