"""Preprocess stage: one plate in, one Parquet shard out (QuasarNET and MgII inputs).

Science functions take arrays and return arrays; `preprocess_plate` turns a
Plate into a table and `command` is the thin `qsopipe preprocess` CLI.
Every fiber of a plate becomes a row: defects set PREP_FLAG bits, they never
drop a row.
"""

import enum
import logging
from dataclasses import dataclass

import click
import numpy as np
import pyarrow as pa

from qsopipe.pipeline import __version__, grids
from qsopipe.pipeline.discovery import discover, failures, log_rejects, require_plates
from qsopipe.pipeline.parquet_io import fixed_size_list, read_metadata, structured_to_arrays, with_metadata
from qsopipe.pipeline.stage import SPECTRA, Stage, run_stage_on_plates

log = logging.getLogger(__name__)

#: Fewest QuasarNET bins with data for a spectrum to be classified.
MIN_QN_BINS = 50


class PrepFlag(enum.IntFlag):
    """PREP_FLAG bits. UNUSABLE bits stop classification; the others are notes."""

    NO_VALID_PIXEL = 1       #: no pixel with ivar > 0 in 3600-10000 A
    ZERO_RMS = 2             #: the QuasarNET input has zero ivar-weighted rms
    FEW_QN_BINS = 4          #: fewer than MIN_QN_BINS of 443 QuasarNET bins have data
    NONFINITE_INPUT = 8      #: NaN or inf in flux or ivar (those pixels got ivar = 0)
    NEGATIVE_IVAR = 16       #: negative ivar (those pixels got ivar = 0)
    NO_MGII_PIXEL = 32       #: no pixel with ivar > 0 on the MgII grid

    @classmethod
    def unusable(cls):
        """Bits that make a spectrum unclassifiable by QuasarNET."""
        return cls.NO_VALID_PIXEL | cls.ZERO_RMS | cls.FEW_QN_BINS


def clean_pixels(flux, ivar, and_mask=None, masked_bits=()):
    """Zero the weight of unusable pixels.

    Parameters
    ----------
    flux, ivar : ndarray (nfiber, npix)
    and_mask : ndarray of int (nfiber, npix), optional
    masked_bits : iterable of int
        and_mask bits whose pixels get ivar = 0.

    Returns
    -------
    flux, ivar : float32 arrays with NaN/inf replaced by 0 and ivar = 0 where
        the pixel is non-finite, has negative ivar or carries a masked bit.
        Inputs that need no change come back as they are, not copied.
    flag : int32 (nfiber,) NONFINITE_INPUT / NEGATIVE_IVAR bits.
    """
    flux = np.asarray(flux, np.float32)
    ivar = np.asarray(ivar, np.float32)
    flag = np.zeros(flux.shape[0], np.int32)
    finite = np.isfinite(flux)
    finite &= np.isfinite(ivar)
    if not finite.all():
        flag[~finite.all(axis=1)] |= PrepFlag.NONFINITE_INPUT
        flux = np.where(finite, flux, np.float32(0))
        ivar = np.where(finite, ivar, np.float32(0))
    negative = ivar < 0
    if negative.any():
        flag[negative.any(axis=1)] |= PrepFlag.NEGATIVE_IVAR
        ivar = np.where(negative, np.float32(0), ivar)
    return flux, zero_masked(ivar, and_mask, masked_bits), flag


def zero_masked(ivar, and_mask, masked_bits):
    """ivar (nfiber, npix) with 0 wherever and_mask has one of `masked_bits`; `ivar` itself when none is given."""
    bits = sum(1 << bit for bit in masked_bits)
    if not bits:
        return ivar
    return np.where((and_mask & bits) != 0, np.float32(0), ivar)


def qn_bin_index(loglam):
    """QuasarNET bin of each native pixel: floor((loglam - log10 3600) / 1e-3); same shape as loglam."""
    return np.floor((loglam - grids.QN_LOGLAM_MIN) / grids.QN_DLOGLAM).astype(np.int64)


@dataclass(frozen=True)
class GridPlan:
    """How fibers on one shared log-lambda grid map onto both networks' grids; computed once per plate.

    qn_runs : (first, stop, run_starts, run_bins) when every QuasarNET bin is
        one run of consecutive native pixels (pixels first..stop-1 are in
        range, run k starts at run_starts[k] and fills bin run_bins[k]), or
        None where a per-fiber bincount is needed.
    mgii_start : fractional native pixel of the first MgII grid pixel when
        the native grid has 1e-4 dex pixels, or None (per-fiber interpolation).
    """

    qn_runs: tuple = None
    mgii_start: float = None


def grid_plan(loglam):
    """The GridPlan of a wavelength grid, log10(A): (npix,) shared by all fibers, or (nfiber, npix)."""
    if loglam.ndim != 1:
        return GridPlan()
    runs = None
    bins = qn_bin_index(loglam)
    inside = np.flatnonzero((bins >= 0) & (bins < grids.QN_NBINS))
    if np.all(np.diff(bins) >= 0) and inside.size:
        first, stop = int(inside[0]), int(inside[-1]) + 1
        run_starts = first + np.flatnonzero(np.diff(bins[first:stop], prepend=bins[first] - 1))
        runs = (first, stop, run_starts, bins[run_starts])
    start = None
    if np.allclose(np.diff(loglam), grids.MGII_DLOGLAM, rtol=0, atol=1e-9):
        start = (grids.MGII_LOGLAM_MIN - loglam[0]) / grids.MGII_DLOGLAM
    return GridPlan(runs, start)


def rebin_sums(loglam, weighted_flux, ivar, plan=None):
    """Sum flux*ivar and ivar into the 443 QuasarNET bins.

    On a shared, increasing grid every bin is one run of consecutive pixels
    (10 for BOSS's 1e-4 dex pixels), so each row is summed run by run with
    one `np.add.reduceat` over all fibers; per-fiber grids take a bincount.

    Parameters
    ----------
    loglam : ndarray (npix,) or (nfiber, npix), log10(A)
    weighted_flux, ivar : ndarray (nfiber, npix)
    plan : GridPlan of loglam (computed here when not given)

    Returns
    -------
    flux_sum, ivar_sum : float64 arrays (nfiber, 443)
    """
    plan = grid_plan(loglam) if plan is None else plan
    if plan.qn_runs is not None:
        return _run_sums(plan.qn_runs, weighted_flux, ivar)
    return _bincount_sums(np.broadcast_to(qn_bin_index(loglam), weighted_flux.shape), weighted_flux, ivar)


def _run_sums(runs, weighted_flux, ivar):
    """Sums over the runs (GridPlan.qn_runs) of every row at once."""
    first, stop, run_starts, run_bins = runs
    sums = np.zeros((2, weighted_flux.shape[0], grids.QN_NBINS), np.float64)
    for k, values in enumerate((weighted_flux, ivar)):
        sums[k][:, run_bins] = np.add.reduceat(values[:, first:stop], run_starts - first, axis=1)
    return sums[0], sums[1]


def _bincount_sums(bins, weighted_flux, ivar):
    nrow = weighted_flux.shape[0]
    keep = (bins >= 0) & (bins < grids.QN_NBINS)
    flat = (np.arange(nrow)[:, None] * grids.QN_NBINS + bins)[keep]
    size = nrow * grids.QN_NBINS
    flux_sum = np.bincount(flat, weights=weighted_flux[keep], minlength=size).reshape(nrow, -1)
    ivar_sum = np.bincount(flat, weights=ivar[keep], minlength=size).reshape(nrow, -1)
    return flux_sum, ivar_sum


def quasarnet_input(loglam, flux, ivar, and_mask):
    """The QuasarNET input of Busca & Balland (2018) for every fiber.

    ivar is zeroed where and_mask bit 25 (COMBINEREJ) is set; flux is binned
    ivar-weighted by floor onto 443 bins of 1e-3 dex from 3600 A (empty bins
    hold 0); then every bin has the ivar-weighted mean subtracted and is
    divided by the ivar-weighted rms, as the published code does.

    Parameters
    ----------
    loglam : ndarray (npix,) or (nfiber, npix), log10(A)
    flux, ivar : ndarray (nfiber, npix), 1e-17 erg/s/cm^2/A and its inverse variance
    and_mask : ndarray of int (nfiber, npix)

    Returns
    -------
    x : float32 (nfiber, 443), all zeros where the spectrum is unusable
    flag : int32 (nfiber,) PrepFlag bits
    """
    flux, ivar, flag = clean_pixels(flux, ivar, and_mask, masked_bits=(grids.COMBINEREJ_BIT,))
    return _normalised_bins(loglam, flux, ivar, flag)


def _normalised_bins(loglam, flux, ivar, flag, plan=None):
    """QuasarNET input and flags from cleaned flux and ivar (COMBINEREJ pixels already at ivar = 0)."""
    flux_sum, ivar_sum = rebin_sums(loglam, flux * ivar, ivar, plan)
    filled = ivar_sum > 0
    binned = np.divide(flux_sum, ivar_sum, out=np.zeros_like(flux_sum), where=filled)
    weight = ivar_sum.sum(axis=1)
    has_data = weight > 0
    safe_weight = np.where(has_data, weight, 1.0)
    mean = (binned * ivar_sum).sum(axis=1) / safe_weight
    rms = np.sqrt(((binned - mean[:, None]) ** 2 * ivar_sum).sum(axis=1) / safe_weight)
    usable = has_data & (rms > 0)
    x = np.where(usable[:, None], (binned - mean[:, None]) / np.where(usable, rms, 1.0)[:, None], 0.0)
    flag = flag | np.where(~has_data, PrepFlag.NO_VALID_PIXEL, 0).astype(np.int32)
    flag |= np.where(has_data & ~(rms > 0), PrepFlag.ZERO_RMS, 0).astype(np.int32)
    flag |= np.where(has_data & (filled.sum(axis=1) < MIN_QN_BINS), PrepFlag.FEW_QN_BINS, 0).astype(np.int32)
    return x.astype(np.float32), flag


def mgii_input(loglam, flux, ivar, plan=None):
    """Flux and ivar linearly interpolated onto the MgII CNN grid (3841 pixels of 1e-4 dex from 3800 A).

    A shared native grid of 1e-4 dex pixels is the MgII grid shifted by a
    fraction of a pixel: one two-tap blend of two slices serves every fiber.
    Other grids are interpolated per fiber. ivar is the interpolation of
    the taps' variances, 1 / sum(w_k / ivar_k), so that sums over a few
    pixels (a line's equivalent width, a matched filter) keep the native
    noise: neighbouring interpolated pixels share a native pixel, and
    1 / sum(w_k^2 / ivar_k), right for a single pixel, ignores that
    covariance and overstates such S/N by up to sqrt(2). 0 where either tap
    has no data, or off the native grid.

    Parameters
    ----------
    loglam : ndarray (npix,) or (nfiber, npix), log10(A)
    flux, ivar : ndarray (nfiber, npix), already cleaned (ivar = 0 on bad pixels)
    plan : GridPlan of loglam (computed here when not given)

    Returns
    -------
    flux, ivar : float32 arrays (nfiber, 3841)
    """
    plan = grid_plan(loglam) if plan is None else plan
    if plan.mgii_start is not None:
        return _shifted_blend(flux, ivar, plan.mgii_start)
    target = grids.mgii_loglam()
    rows = np.broadcast_to(loglam, flux.shape)
    out_flux = np.zeros((flux.shape[0], target.size), np.float32)
    out_ivar = np.zeros_like(out_flux)
    for row in range(flux.shape[0]):
        position = np.interp(target, rows[row], np.arange(rows.shape[1]), left=-1, right=-1)
        out_flux[row], out_ivar[row] = _blend(flux[row], ivar[row], position)
    return out_flux, out_ivar


def _shifted_blend(flux, ivar, start):
    """Two-tap interpolation at native positions start + j, j = 0..3840, for all rows at once."""
    nrow, npix = flux.shape
    left = int(np.floor(start))
    frac = np.float32(start - left)
    lo, hi = max(0, -left), min(grids.MGII_NPIX, npix - 1 - left)
    out_flux = np.zeros((nrow, grids.MGII_NPIX), np.float32)
    out_ivar = np.zeros_like(out_flux)
    if hi > lo:
        taps = slice(left + lo, left + hi), slice(left + lo + 1, left + hi + 1)
        out_flux[:, lo:hi], out_ivar[:, lo:hi] = _two_tap(
            flux[:, taps[0]], flux[:, taps[1]], ivar[:, taps[0]], ivar[:, taps[1]], frac)
    return out_flux, out_ivar


def _blend(flux, ivar, position):
    """Two-tap interpolation of one spectrum (npix,) at fractional positions (-1 = off the grid)."""
    npix = flux.size
    on_grid = (position >= 0) & (position <= npix - 1)
    left = np.clip(np.floor(position).astype(np.int64), 0, npix - 2)
    frac = np.clip(position - left, 0.0, 1.0).astype(np.float32)
    out_flux, out_ivar = _two_tap(flux[left], flux[left + 1], ivar[left], ivar[left + 1], frac)
    return np.where(on_grid, out_flux, 0), np.where(on_grid, out_ivar, 0)


#: Smallest denominator of the two-tap ivar; only pixels without data (ivar product 0) come near it.
_TINY = np.float32(1e-30)


def _two_tap(flux_left, flux_right, ivar_left, ivar_right, frac):
    """(1 - frac) * left + frac * right, with ivar interpolated; 0 where either tap has ivar = 0.

    ivar = 1 / ((1 - frac) / ivar_left + frac / ivar_right) (see
    `mgii_input`), written as ivar_left * ivar_right / ((1 - frac) ivar_right
    + frac ivar_left) so that a tap without data gives 0 with no division by
    zero. float32 in, float32 out.
    """
    keep = np.float32(1) - frac
    product = ivar_left * ivar_right
    denominator = ivar_right * keep
    denominator += ivar_left * frac
    out_ivar = product / np.maximum(denominator, _TINY, out=denominator)
    out_flux = flux_left * keep
    out_flux += flux_right * frac
    out_flux *= product > 0
    return out_flux, out_ivar


#: Fibers preprocessed together: a block's temporaries stay in a core's L2 cache (about 1.5 MB each).
BLOCK_FIBERS = 64


def plate_inputs(loglam, flux, ivar, and_mask):
    """Both networks' inputs and PREP_FLAG of every fiber of a plate.

    The grid's GridPlan is made once; the fibers are processed in blocks of
    BLOCK_FIBERS (every function is vectorised over the fibers of a block);
    each block is cleaned once and feeds both the QuasarNET rebin and the
    MgII regrid.

    Parameters
    ----------
    loglam : ndarray (npix,) or (nfiber, npix), log10(A)
    flux, ivar : ndarray (nfiber, npix); and_mask : int (nfiber, npix)

    Returns
    -------
    qn_x : float32 (nfiber, 443); mgii_flux, mgii_ivar : float32 (nfiber, 3841);
    flag : int32 (nfiber,) PrepFlag bits
    """
    nfiber = flux.shape[0]
    qn_x = np.empty((nfiber, grids.QN_NBINS), np.float32)
    mgii_flux = np.empty((nfiber, grids.MGII_NPIX), np.float32)
    mgii_ivar = np.empty_like(mgii_flux)
    flag = np.empty(nfiber, np.int32)
    plan = grid_plan(loglam)
    for start in range(0, nfiber, BLOCK_FIBERS):
        rows = slice(start, start + BLOCK_FIBERS)
        block_loglam = loglam if loglam.ndim == 1 else loglam[rows]
        block_flux, block_ivar, block_flag = clean_pixels(flux[rows], ivar[rows])
        qn_ivar = zero_masked(block_ivar, and_mask[rows], (grids.COMBINEREJ_BIT,))
        qn_x[rows], flag[rows] = _normalised_bins(block_loglam, block_flux, qn_ivar, block_flag, plan)
        mgii_flux[rows], mgii_ivar[rows] = mgii_input(block_loglam, block_flux, block_ivar, plan)
    flag |= np.where((mgii_ivar > 0).any(axis=1), 0, PrepFlag.NO_MGII_PIXEL).astype(np.int32)
    return qn_x, mgii_flux, mgii_ivar, flag


def preprocess_plate(plate):
    """The shard table of one Plate: ids, PREP_FLAG, QN_FLUX (443), MGII_FLUX and MGII_IVAR (3841)."""
    qn_x, mgii_flux, mgii_ivar, flag = plate_inputs(plate.loglam, plate.flux, plate.ivar, plate.and_mask)
    columns = structured_to_arrays(plate.fibers)
    columns["PREP_FLAG"] = pa.array(flag)
    columns["QN_FLUX"] = fixed_size_list(qn_x)
    columns["MGII_FLUX"] = fixed_size_list(mgii_flux)
    columns["MGII_IVAR"] = fixed_size_list(mgii_ivar)
    return with_metadata(pa.table(columns), {
        "version": __version__,
        "plate": plate.plate, "mjd": plate.mjd,
        "qn_grid": {"loglam_min": grids.QN_LOGLAM_MIN, "dloglam": grids.QN_DLOGLAM, "npix": grids.QN_NBINS},
        "mgii_grid": {"loglam_min": grids.MGII_LOGLAM_MIN, "dloglam": grids.MGII_DLOGLAM, "npix": grids.MGII_NPIX},
        "sources": list(plate.sources),
        "prep_flags": {flag.name: int(flag.value) for flag in PrepFlag},
    })


def shard_table(plate_input):
    """Read one discovered plate and return its shard table.

    Raises InputError when the plate's file(s) cannot be read. A spec plate
    leaves out its unreadable files and lists them in the shard's
    `qsopipe.skipped` metadata (path -> reason).
    """
    skipped = {}
    table = preprocess_plate(plate_input.read(skipped))
    if skipped:
        table = with_metadata(table, {"skipped": skipped})
    return table


class PreprocessStage(Stage):
    """spectra -> shard: the QuasarNET and MgII inputs and PREP_FLAG of every fiber of a plate."""

    name = "preprocess"
    version = 2  # 2: the fibers carry PIPE_COLUMNS
    reads = (SPECTRA,)
    writes = ("shard",)

    def settings(self, config):
        return {"qn_grid": [grids.QN_LOGLAM_MIN, grids.QN_DLOGLAM, grids.QN_NBINS],
                "mgii_grid": [grids.MGII_LOGLAM_MIN, grids.MGII_DLOGLAM, grids.MGII_NPIX],
                "masked_bits": [grids.COMBINEREJ_BIT], "min_qn_bins": MIN_QN_BINS}

    def run(self, inputs, config, loaded):
        return {"shard": shard_table(inputs[SPECTRA])}

    def counts(self, outputs):
        shard = outputs["shard"]
        return {"nfiber": shard.num_rows, "skipped": read_metadata(shard.schema).get("skipped", {})}


STAGE = PreprocessStage()


@click.command(name="preprocess")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Shard directory.")
@click.option("--force", is_flag=True, help="Redo plates whose shard is already up to date.")
def command(inputs, out, force):
    """Turn INPUTS (spPlate/spec files or directories) into one Parquet shard per plate.

    Exits 1 when any input could not be processed; each is named in the log.
    """
    plates, rejects = discover(inputs)
    log_rejects(rejects)
    require_plates(plates, inputs)
    failed = run_stage_on_plates(STAGE, [(plate.name, plate) for plate in plates], {"shard": out}, {}, force)
    if failed or failures(rejects):
        raise SystemExit(1)
