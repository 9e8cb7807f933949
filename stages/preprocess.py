"""Preprocess stage: one plate in, one Parquet shard out (QuasarNET and MgII inputs).

Science functions take arrays and return arrays; `preprocess_plate` turns a
Plate into a table and `command` is the thin `qsopipe preprocess` CLI.
Every fiber of a plate becomes a row: defects set PREP_FLAG bits, they never
drop a row.
"""

import enum
import logging
import time
from pathlib import Path

import click
import numpy as np
import pyarrow as pa

from qsopipe import __version__, grids
from qsopipe.atomic import is_up_to_date
from qsopipe.discovery import discover
from qsopipe.errors import InputError
from qsopipe.parquet_io import fixed_size_list, structured_to_arrays, with_metadata, write_parquet
from qsopipe.sdss.reader import read_plate

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
    flag : int32 (nfiber,) NONFINITE_INPUT / NEGATIVE_IVAR bits.
    """
    nonfinite = ~(np.isfinite(flux) & np.isfinite(ivar))
    negative = ivar < 0
    bad = nonfinite | negative
    for bit in masked_bits:
        bad |= (and_mask & (1 << bit)) != 0
    flag = np.where(nonfinite.any(axis=1), PrepFlag.NONFINITE_INPUT, 0)
    flag |= np.where(negative.any(axis=1), PrepFlag.NEGATIVE_IVAR, 0)
    flux = np.where(nonfinite, 0, flux).astype(np.float32, copy=False)
    ivar = np.where(bad, 0, ivar).astype(np.float32, copy=False)
    return flux, ivar, flag.astype(np.int32)


def qn_bin_index(loglam):
    """QuasarNET bin of each native pixel: floor((loglam - log10 3600) / 1e-3); same shape as loglam."""
    return np.floor((loglam - grids.QN_LOGLAM_MIN) / grids.QN_DLOGLAM).astype(np.int64)


def rebin_sums(loglam, weighted_flux, ivar):
    """Sum flux*ivar and ivar into the 443 QuasarNET bins.

    With a shared grid whose bins hold consecutive runs of equal length
    (10 pixels for BOSS's 1e-4 dex pixels), this is a reshape and a sum;
    otherwise a bincount per fiber row.

    Parameters
    ----------
    loglam : ndarray (npix,) or (nfiber, npix), log10(A)
    weighted_flux, ivar : ndarray (nfiber, npix)

    Returns
    -------
    flux_sum, ivar_sum : float64 arrays (nfiber, 443)
    """
    bins = qn_bin_index(loglam)
    if bins.ndim == 1:
        block = _regular_blocks(bins)
        if block is not None:
            return _reshape_sums(bins, block, weighted_flux, ivar)
        bins = np.broadcast_to(bins, weighted_flux.shape)
    return _bincount_sums(bins, weighted_flux, ivar)


def _regular_blocks(bins):
    """The run length if every in-range bin's pixels are one consecutive run of one length."""
    inside = np.flatnonzero((bins >= 0) & (bins < grids.QN_NBINS))
    if inside.size == 0:
        return None
    first, last = inside[0], inside[-1]
    counts = np.bincount(bins[first:last + 1] - bins[first])
    interior = counts[1:-1]
    if interior.size == 0 or np.any(interior != interior[0]) or counts[0] > interior[0] or counts[-1] > interior[0]:
        return None
    if np.any(np.diff(bins[first:last + 1]) < 0):
        return None
    return int(interior[0])


def _reshape_sums(bins, block, weighted_flux, ivar):
    """Sums over runs of `block` pixels as reshapes of views; the partial edge bins are summed apart."""
    inside = np.flatnonzero((bins >= 0) & (bins < grids.QN_NBINS))
    first, last = int(inside[0]), int(inside[-1]) + 1
    lead = int(np.count_nonzero(bins[first:last] == bins[first]))
    nfull = (last - first - lead) // block
    body = slice(first + lead, first + lead + nfull * block)
    tail = slice(body.stop, last)
    first_bin = int(bins[first])
    nrow = weighted_flux.shape[0]
    out = []
    for values in (weighted_flux, ivar):
        sums = np.zeros((nrow, grids.QN_NBINS), np.float64)
        sums[:, first_bin] = values[:, first:first + lead].sum(axis=1)
        sums[:, first_bin + 1:first_bin + 1 + nfull] = values[:, body].reshape(nrow, nfull, block).sum(axis=2)
        if tail.stop > tail.start:
            sums[:, first_bin + 1 + nfull] = values[:, tail].sum(axis=1)
        out.append(sums)
    return out[0], out[1]


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
    flux_sum, ivar_sum = rebin_sums(loglam, flux * ivar, ivar)
    filled = ivar_sum > 0
    binned = np.divide(flux_sum, ivar_sum, out=np.zeros_like(flux_sum), where=filled)
    weight = ivar_sum.sum(axis=1)
    has_data = weight > 0
    safe_weight = np.where(has_data, weight, 1.0)
    mean = (binned * ivar_sum).sum(axis=1) / safe_weight
    rms = np.sqrt(((binned - mean[:, None]) ** 2 * ivar_sum).sum(axis=1) / safe_weight)
    usable = has_data & (rms > 0)
    x = np.where(usable[:, None], (binned - mean[:, None]) / np.where(usable, rms, 1.0)[:, None], 0.0)
    flag |= np.where(~has_data, PrepFlag.NO_VALID_PIXEL, 0).astype(np.int32)
    flag |= np.where(has_data & ~(rms > 0), PrepFlag.ZERO_RMS, 0).astype(np.int32)
    flag |= np.where(has_data & (filled.sum(axis=1) < MIN_QN_BINS), PrepFlag.FEW_QN_BINS, 0).astype(np.int32)
    return x.astype(np.float32), flag


def mgii_input(loglam, flux, ivar):
    """Flux and ivar linearly interpolated onto the MgII CNN grid (3841 pixels of 1e-4 dex from 3800 A).

    A shared native grid of 1e-4 dex pixels is the MgII grid shifted by a
    fraction of a pixel: one two-tap blend of two slices serves every fiber.
    Other grids are interpolated per fiber. ivar propagates as
    1 / sum(w_k^2 / ivar_k) and is 0 where either tap has none, or off the
    native grid.

    Parameters
    ----------
    loglam : ndarray (npix,) or (nfiber, npix), log10(A)
    flux, ivar : ndarray (nfiber, npix), already cleaned (ivar = 0 on bad pixels)

    Returns
    -------
    flux, ivar : float32 arrays (nfiber, 3841)
    """
    target = grids.mgii_loglam()
    if loglam.ndim == 1 and np.allclose(np.diff(loglam), grids.MGII_DLOGLAM, rtol=0, atol=1e-9):
        return _shifted_blend(flux, ivar, (target[0] - loglam[0]) / grids.MGII_DLOGLAM)
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


def _two_tap(flux_left, flux_right, ivar_left, ivar_right, frac):
    """(1 - frac) * left + frac * right, with ivar propagated; 0 where either tap has ivar = 0."""
    both = (ivar_left > 0) & (ivar_right > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (1 - frac) ** 2 / ivar_left + frac ** 2 / ivar_right
        out_flux = np.where(both, (1 - frac) * flux_left + frac * flux_right, 0).astype(np.float32)
        out_ivar = np.where(both, 1 / variance, 0).astype(np.float32)
    return out_flux, out_ivar


def preprocess_plate(plate):
    """The shard table of one Plate: ids, PREP_FLAG, QN_FLUX (443), MGII_FLUX and MGII_IVAR (3841)."""
    qn_x, qn_flag = quasarnet_input(plate.loglam, plate.flux, plate.ivar, plate.and_mask)
    flux, ivar, clean_flag = clean_pixels(plate.flux, plate.ivar)
    mgii_flux, mgii_ivar = mgii_input(plate.loglam, flux, ivar)
    flag = qn_flag | clean_flag
    flag |= np.where((mgii_ivar > 0).any(axis=1), 0, PrepFlag.NO_MGII_PIXEL).astype(np.int32)
    columns = structured_to_arrays(plate.fibers)
    columns["PREP_FLAG"] = pa.array(flag.astype(np.int32))
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


def shard_path(root, plate, mjd):
    """SHARDS/PLATE=pppp/plate-pppp-mmmmm.parquet"""
    return Path(root) / f"PLATE={plate:04d}" / f"plate-{plate:04d}-{mjd:05d}.parquet"


def preprocess_input(plate_input, root, force=False, skip_unreadable=False):
    """Read one discovered plate and write its shard, unless an up-to-date shard exists.

    Returns (shard path, the shard table written, or None when skipped).
    Raises InputError when the plate's file(s) cannot be read. With
    `skip_unreadable`, a spec plate leaves out its unreadable files and lists
    them in the shard's `qsopipe.skipped` metadata (path -> reason).
    """
    path = shard_path(root, plate_input.plate, plate_input.mjd)
    if not force and is_up_to_date(path, plate_input.files):
        return path, None
    skipped = {} if skip_unreadable else None
    table = preprocess_plate(read_plate(plate_input, skipped))
    if skipped:
        table = with_metadata(table, {"skipped": skipped})
    write_parquet(table, path)
    return path, table


@click.command(name="preprocess")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Shard directory.")
@click.option("--force", is_flag=True, help="Redo plates whose shard is already up to date.")
def command(inputs, out, force):
    """Turn INPUTS (spPlate/spec files or directories) into one Parquet shard per plate.

    Exits 1 when any input could not be processed; each is named in the log.
    """
    plates, rejects = discover(inputs)
    for reject in rejects:
        log.warning("skipping %s: %s", reject.path, reject.reason)
    failed = 0
    for plate_input in plates:
        start = time.perf_counter()
        try:
            path, table = preprocess_input(plate_input, out, force=force)
        except InputError as err:
            failed += 1
            log.error("plate %s failed: %s", plate_input.name, err)
            continue
        if table is None:
            log.info("plate %s: shard %s is up to date, skipped", plate_input.name, path)
        else:
            seconds = time.perf_counter() - start
            log.info("plate %s: %d fibers -> %s in %.2f s (%.0f spectra/s)",
                     plate_input.name, table.num_rows, path, seconds, table.num_rows / seconds)
    if failed or any(r.reason.startswith(("no such", "file name")) for r in rejects):
        raise SystemExit(1)
