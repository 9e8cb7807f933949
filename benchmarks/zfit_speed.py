"""The redshift fit against redrock 0.21, side by side on the same real spectra, one core each.

    .venv/bin/python -m pip install -e '.[bench]'          # redrock 0.21 (benchmark only)
    qsopipe run ../shared/data/sdss/dr16_spec_lite_picca ../shared/data/sdss/spec_full_pyqsofit \
        --out REAL --keep-shards
    python benchmarks/zfit_speed.py --run REAL [--json OUT.json]

Spectra: every fiber QuasarNET calls a quasar, on the MgII grid of the
shards (MGII_FLUX, MGII_IVAR; 3800-9200 A, 1e-4 dex). Both fitters get the
same two templates (redrock-templates QSO-LOZ and QSO-HIZ v1.1, from
../shared/data/templates) and a window of +-window_kms around Z_QN, LOZ
where Z_QN is in its redshift range, HIZ in its own, both in the overlap.
redrock: one `zfind` per spectrum with `Template` copies whose redshifts
are the template's own grid step (5e-4 dex) across the window, wavelengths
clipped to what the templates cover at those redshifts, an identity
resolution matrix, no polynomial (its QSO default); the per-spectrum
template rebinning is part of its cost. Ours: `fit_redshifts` on the same
arrays, with the windows around QuasarNET's other lines that the stage also
fits (`other_line_redshifts`; redrock gets Z_QN's window only, so ours does
the more work). Both: single-threaded BLAS and numba, no multiprocessing, CPU time
(time.process_time, so that other work on a shared machine counts less),
the fastest of REPEAT passes over the spectra; redrock's first spectrum
(numba compilation) and our first call (the templates' shifted copies,
laid out once per process) are not timed. Accuracy: median and
NMAD of c (Z - Z_spAll) / (1 + Z_spAll) on the fibers with a confident
spAll redshift (ZWARNING 0, CLASS QSO).
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import contextlib
import copy
import io
import time
from pathlib import Path

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse

from qsopipe.pipeline import grids
from qsopipe.pipeline.constants import SPEED_OF_LIGHT_KMS
from qsopipe.pipeline.parquet_io import list_column
from qsopipe.stages.redshift_fit import FitSettings, fit_redshifts, other_line_redshifts
from timing import report

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = REPO.parent / "shared" / "data" / "templates"
SPALL = REPO.parent / "shared" / "data" / "sdss" / "dr16_spec_lite_picca" / "catalogs" / "spAll-plate3655.fits"
#: Margin (A) kept inside the templates' coverage when clipping wavelengths for redrock.
CLIP_MARGIN_A = 2.0
#: Timed passes of each fitter over the spectra; the fastest counts.
REPEAT = 3


def quasar_spectra(run):
    """flux, ivar (n, 3841) float32 as the zfit stage reads them, Z_QN, BAL flag, the other lines' redshifts
    (n, 6; `other_line_redshifts`), (plate, mjd, fiber) keys of every QuasarNET quasar of a run."""
    flux, ivar, z_qn, bal, z_lines, keys = [], [], [], [], [], []
    for qn_file in sorted(Path(run, "results", "quasarnet").glob("qn-*.parquet")):
        plate, mjd = qn_file.stem.split("-")[1:]
        qn = pq.read_table(qn_file)
        shard = pq.read_table(Path(run, "shards", f"PLATE={plate}", f"plate-{plate}-{mjd}.parquet"))
        chosen = pa.array(qn.column("IS_QSO_QN").to_numpy() == 1)
        qn, shard = qn.filter(chosen), shard.filter(chosen)
        flux.append(list_column(shard, "MGII_FLUX"))
        ivar.append(list_column(shard, "MGII_IVAR"))
        z_qn.append(qn.column("Z_QN").to_numpy())
        bal.append(qn.column("BAL_FLAG_QN").to_numpy() == 1)
        z_lines.append(other_line_redshifts(qn))
        keys += zip(*(qn.column(n).to_pylist() for n in ("PLATE", "MJD", "FIBERID")))
    return (np.concatenate(flux), np.concatenate(ivar), np.concatenate(z_qn), np.concatenate(bal),
            np.concatenate(z_lines), keys)


def spall_redshifts(keys):
    """spAll Z (n,) of confident quasars (ZWARNING 0, CLASS QSO), NaN for the other keys."""
    spall = fitsio.read(str(SPALL), columns=["PLATE", "MJD", "FIBERID", "Z", "ZWARNING", "CLASS"])
    confident = {(int(r["PLATE"]), int(r["MJD"]), int(r["FIBERID"])): float(r["Z"]) for r in spall
                 if r["ZWARNING"] == 0 and r["CLASS"].strip() == "QSO"}
    return np.array([confident.get(tuple(key), np.nan) for key in keys])


def accuracy(z, z_true):
    """median and NMAD (km/s) of c (z - z_true) / (1 + z_true) where z_true is known."""
    known = np.isfinite(z_true)
    dv = SPEED_OF_LIGHT_KMS * (z[known] - z_true[known]) / (1 + z_true[known])
    median = float(np.median(dv))
    return {"n": int(known.sum()), "median_kms": round(median, 1),
            "nmad_kms": round(float(1.4826 * np.median(np.abs(dv - median))), 1)}


def time_ours(flux, ivar, z_qn, bal, z_lines, repeat=REPEAT):
    """(Z (n,): fit where ZWARNING == 0, else Z_QN; best-of-`repeat` CPU seconds; CPU seconds of the first
    call, which also lays out the templates' shifted copies, once per process) of `fit_redshifts`."""
    fit = np.ones(len(z_qn), bool)
    start = time.process_time()
    fit_redshifts(flux, ivar, z_qn, fit, bal, z_lines=z_lines)
    first = time.process_time() - start
    seconds = []
    for _ in range(repeat):
        start = time.process_time()
        out = fit_redshifts(flux, ivar, z_qn, fit, bal, z_lines=z_lines)
        seconds.append(time.process_time() - start)
    return np.where(out["ZWARNING"] == 0, out["Z_FIT"], z_qn), min(seconds), first


class RedrockWindowFit:
    """redrock 0.21 `zfind` on one spectrum with the QSO templates restricted to a window around Z_QN."""

    def __init__(self, window_kms):
        np.NaN = np.nan  # redrock 0.21's priors module still uses the alias numpy 2 removed
        from redrock.templates import Template

        self.window_dex = np.log10(1 + window_kms / SPEED_OF_LIGHT_KMS)
        self.templates = [Template(str(TEMPLATE_DIR / f"rrtemplate-QSO-{name}-v1.1.fits")) for name in ("LOZ", "HIZ")]

    def window_templates(self, z_qn):
        """Copies of the templates whose range holds z_qn, with redshifts on their own step across the window."""
        chosen = []
        for template in self.templates:
            grid = template.redshifts
            if not grid[0] <= z_qn <= grid[-1]:
                continue
            step = np.median(np.diff(np.log10(1 + grid)))
            half = int(np.ceil(self.window_dex / step))
            trial = 10 ** (np.log10(1 + z_qn) + step * np.arange(-half, half + 1)) - 1
            window = copy.copy(template)
            window._redshifts = trial[(trial >= grid[0]) & (trial <= grid[-1])]
            chosen.append(window)
        return chosen

    def __call__(self, wave, flux, ivar, z_qn, targetid):
        """Best redshift (z, zwarn) of one spectrum (wave in A)."""
        from redrock.targets import DistTargetsCopy, Spectrum, Target
        from redrock.templates import DistTemplate
        from redrock.zfind import zfind

        templates = self.window_templates(z_qn)
        low = max(t.wave.min() * (1 + t.redshifts.max()) for t in templates) + CLIP_MARGIN_A
        high = min(t.wave.max() * (1 + t.redshifts.min()) for t in templates) - CLIP_MARGIN_A
        keep = (wave > low) & (wave < high)
        n = int(keep.sum())
        resolution = scipy.sparse.dia_matrix((np.ones((1, n)), [0]), shape=(n, n))
        spectrum = Spectrum(wave[keep], flux[keep], ivar[keep], resolution)
        targets = DistTargetsCopy([Target(targetid, [spectrum])])
        dwave = targets.wavegrids()
        with contextlib.redirect_stdout(io.StringIO()):
            _, fits = zfind(targets, [DistTemplate(t, dwave) for t in templates], mp_procs=1)
        best = fits[fits["znum"] == 0][0]
        return float(best["z"]), int(best["zwarn"])


def time_redrock(flux, ivar, z_qn, window_kms, repeat=REPEAT):
    """(Z (n,), best-of-`repeat` CPU seconds for spectra 2..n, CPU seconds of the first) of redrock on every
    spectrum; the first spectrum of the first pass (numba compilation) is timed apart."""
    fitter = RedrockWindowFit(window_kms)
    wave = 10 ** grids.mgii_loglam()
    z = np.empty(len(z_qn))
    start = time.process_time()
    z[0], zwarn = fitter(wave, flux[0], ivar[0], z_qn[0], 0)
    z[0] = z[0] if zwarn == 0 else z_qn[0]
    first = time.process_time() - start
    seconds = []
    for _ in range(repeat):
        start = time.process_time()
        for row in range(1, len(z_qn)):
            z[row], zwarn = fitter(wave, flux[row], ivar[row], z_qn[row], row)
            z[row] = z[row] if zwarn == 0 else z_qn[row]
        seconds.append(time.process_time() - start)
    return z, min(seconds), first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="`qsopipe run --keep-shards` output of the real spectra")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    flux, ivar, z_qn, bal, z_lines, keys = quasar_spectra(args.run)
    z_true = spall_redshifts(keys)
    window_kms = FitSettings().window_kms
    z_ours, ours_s, ours_first_s = time_ours(flux, ivar, z_qn, bal, z_lines)
    z_rr, rr_s, rr_first_s = time_redrock(flux.astype(np.float64), ivar.astype(np.float64), z_qn, window_kms)
    n = len(z_qn)
    result = {"spectra": n, "window_kms": window_kms,
              "ours": {"seconds": round(ours_s, 4), "first_call_s": round(ours_first_s, 3),
                       "spectra_per_s": round(n / ours_s, 1), **accuracy(z_ours, z_true)},
              "redrock_0.21": {"seconds": round(rr_s, 2), "first_spectrum_s": round(rr_first_s, 2),
                               "spectra_per_s": round((n - 1) / rr_s, 2), **accuracy(z_rr, z_true)},
              "Z_QN": accuracy(z_qn, z_true)}
    result["speed_ratio"] = round(result["ours"]["spectra_per_s"] / result["redrock_0.21"]["spectra_per_s"], 1)
    report(result, args.json)


if __name__ == "__main__":
    main()
