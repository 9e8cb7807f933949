"""`make demo`: the main job on an embedded default.

Simulates a few BOSS plates, runs `qsopipe run` on them, scores the catalog
against the simulated truth, then runs the real SDSS spectra found beside
the checkout (../shared/data/sdss, or $SDSS_TEST_DATA/sdss) and scores those
against their spAll classifications. Prints each command, the catalog paths,
the quality figures and the plot paths.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REAL_SPECTRA = ("dr16_spec_lite_picca", "spec_full_pyqsofit")


def qsopipe(*args, check=True):
    """Run one qsopipe command in a subprocess, echoing it; returns its stdout."""
    command = [sys.executable, "-m", "qsopipe.pipeline", *map(str, args)]
    print("$ qsopipe " + " ".join(map(str, args)), flush=True)
    return subprocess.run(command, check=check, stdout=subprocess.PIPE, text=True).stdout


def real_data_dir():
    """The real SDSS spectra beside the checkout, or None."""
    root = Path(os.environ.get("SDSS_TEST_DATA", Path.cwd().parent / "shared" / "data")) / "sdss"
    return root if (root / REAL_SPECTRA[0]).is_dir() else None


def scalar_figures(metrics, prefix=""):
    """The scalar entries of a nested metrics dict as (dotted name, value), lists left out."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from scalar_figures(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def print_summary(title, metrics):
    print(f"\n== {title} ==")
    for name, value in scalar_figures(metrics):
        print(f"  {name:45s} {value:.4g}" if isinstance(value, float) else f"  {name:45s} {value}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--plates", type=int, default=3)
    parser.add_argument("--fibers", type=int, default=500)
    args = parser.parse_args()
    out = args.out
    sim = out / "sim"
    if not (sim / "truth.fits").exists():
        qsopipe("simulate", "--out", sim, "--plates", args.plates, "--fibers", args.fibers, "--seed", 2026,
                "--first-plate", 9000)
    qsopipe("run", sim / "spectra", "--out", out / "sim-run")
    catalog = out / "sim-run" / "catalog.fits"
    metrics = json.loads(qsopipe("evaluate", catalog, "--truth", sim / "truth.fits", "--plots", out / "plots"))
    print_summary(f"simulated plates: {catalog}", metrics)
    real = real_data_dir()
    if real is None:
        print("\nno real spectra found beside the checkout (../shared/data/sdss); skipped")
    else:
        qsopipe("run", *(real / name for name in REAL_SPECTRA), "--out", out / "real-run")
        real_catalog = out / "real-run" / "catalog.fits"
        spall = real / "dr16_spec_lite_picca" / "catalogs" / "spAll-plate3655.fits"
        real_metrics = json.loads(qsopipe("evaluate", real_catalog, "--spall", spall,
                                          "--plots", out / "plots-real"))
        print_summary(f"real SDSS spectra: {real_catalog}", real_metrics)
    print(f"\ncatalog: {catalog}")
    print(f"plots:   {out / 'plots'}")


if __name__ == "__main__":
    main()
