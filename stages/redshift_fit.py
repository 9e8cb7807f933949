"""Template redshift fit around QuasarNET's answer: Z_FIT, ZERR, ZWARNING, DELTACHI2.

For every fiber QuasarNET calls a quasar, the MgII-grid spectrum (3841
pixels of 1e-4 dex from 3800 A) is fitted with a template's 4 eigenspectra
plus NPOLY Legendre polynomials (broad-band calibration) at whole-pixel
shifts (69 km/s) within +-window_kms of Z_QN:

1. coarse scan: spectrum and templates binned by `coarse_factor` pixels,
   every coarse shift of the window;
2. fine scan: every whole-pixel shift within +-fine_half of the best
   coarse shift and of the runner-up (the lowest other local minimum more
   than exclusion_kms away; window ends count as minima; else the lowest
   coarse point that far away), each moved to the vertex of the parabola
   through its coarse neighbours; then, in rounds, fine_extension more
   shifts past any end of the scanned shifts where the lowest chi2, or the
   lowest more than exclusion_kms from it, lies, until both minima are
   enclosed by scanned shifts or reach the window's end (and the shifts just
   beyond exclusion_kms on the runner-up's side where the best moved so
   close to it that no scanned shift lies that far);
3. a parabola through the best fine shift and its neighbours gives Z_FIT
   and ZERR (Delta chi2 = 1, from the curvature); DELTACHI2 is the lowest
   fine chi2 more than exclusion_kms from the best, minus the best.

More windows (`fit_plate`, FitSettings.other_lines): around each of
QuasarNET's other lines above c_th whose redshift lies outside the windows
before it, i.e. where QuasarNET may have taken a line for another (MgII for
CIII], say). All of a fiber's windows are fitted over the same pixels, the
lowest chi2 wins, and DELTACHI2 is against the lowest chi2 more than
exclusion_kms away in any of them.

Template choice: LOZ where Z_QN is in its range (0.05-1.598), HIZ in its own
(1.4-6.99); both in the overlap, the lower chi2 wins (both cover the whole
grid there). Pixels: ivar > 0 (the shard's MGII_IVAR is 0 where a native
pixel had ivar 0), inside the template's rest coverage at every shift of the
window, redward of forest_rest_max (1250 A rest at Z_QN, or at the highest
window centre: no Lyman-alpha forest, no NV); on BAL quasars (BAL_FLAG_QN) the troughs blueward of CIV and SiIV
emission up to bal_kms (placed with Z_QN) are masked.

`fit_redshifts` is the science (arrays in, arrays out); `fit_plate` turns a
shard and its QuasarNET results into the per-fiber redshift table.
"""

import enum
import functools
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from qsopipe.pipeline import grids
from qsopipe.pipeline.constants import CIV_1548, QN_LINES, SIIV_1394, SPEED_OF_LIGHT_KMS
from qsopipe.pipeline.digests import sha256_of_file
from qsopipe.pipeline.parquet_io import list_column, read_metadata, with_metadata
from qsopipe.stages.redshift_scan import ScanKernels, ScanSpectra, scan_chi2
from qsopipe.stages.redshift_templates import (
    PIXEL_KMS, TEMPLATE_FILE, load_templates, redshift_of_shift, shift_of_redshift)


class ZWarning(enum.IntFlag):
    """ZWARNING bits (0 = a good fit, and then Z = Z_FIT)."""

    NOT_FITTED = 1            #: QuasarNET does not call the fiber a quasar (IS_QSO_QN = 0): not fitted
    OUT_OF_RANGE = 2          #: Z_QN and every other window centre outside every template's redshift range: not fitted
    NO_DATA = 4               #: no usable pixel (ivar > 0, inside the template's coverage): not fitted
    FEW_PIXELS = 8            #: fewer than min_pixels usable pixels: not fitted
    WINDOW_EDGE = 16          #: the chi2 minimum lies at an end of the search window
    SMALL_DELTA_CHI2 = 32     #: DELTACHI2 < min_deltachi2 (or no other redshift in the window to compare)
    NEGATIVE_AMPLITUDE = 64   #: the first eigenspectrum (the mean quasar) has a coefficient <= 0
    FIT_FAILED = 128          #: non-finite chi2, or no curvature at the minimum


#: Rest wavelengths (A) whose blue side is masked on BAL quasars: CIV 1548.2, SiIV 1393.8.
BAL_LINES = (CIV_1548, SIIV_1394)


@dataclass(frozen=True)
class FitSettings:
    """Knobs of the fit (how the defaults were chosen: docs/redshift_fit.md).

    window_kms : half-width of the search window around Z_QN, km/s
    coarse_factor : pixels per bin of the coarse scan (its shift step is coarse_factor x 69 km/s)
    exclusion_kms : minima closer than this to the best are the same minimum, km/s
    fine_half : the fine scans start at +-fine_half whole shifts around each candidate
    fine_extension : whole shifts added past an end of the scanned shifts where a minimum lies at that end
    max_extensions : most rounds of such additions (a minimum still not enclosed then sets FIT_FAILED)
    other_lines : `fit_plate` also fits a window around each of QuasarNET's other lines above c_th that lies
        outside the windows before it (a line QuasarNET took for another), the lowest chi2 winning
    min_deltachi2 : DELTACHI2 below this sets SMALL_DELTA_CHI2
    min_pixels : fewest usable pixels for a fit
    npoly : Legendre polynomial terms added to the eigenspectra
    bal_kms : extent of the masked BAL troughs blueward of CIV and SiIV, km/s
    forest_rest_max : pixels bluer than this rest wavelength (A, placed with Z_QN) are left out:
        the Lyman-alpha forest, whose absorption differs from sightline to sightline
    """

    window_kms: float = 6000.0
    coarse_factor: int = 8
    exclusion_kms: float = 1000.0
    fine_half: int = 2
    fine_extension: int = 3
    max_extensions: int = 8
    other_lines: bool = True
    min_deltachi2: float = 9.0
    min_pixels: int = 200
    npoly: int = 3
    bal_kms: float = 25000.0
    forest_rest_max: float = 1250.0


def fit_redshifts(flux, ivar, z_qn, fit, bal=None, settings=FitSettings(), templates=None, z_lines=None):
    """Template redshifts of the spectra QuasarNET calls quasars.

    Parameters
    ----------
    flux, ivar : ndarray (n, 3841), flux on the MgII grid (1e-17 erg/s/cm^2/A) and its inverse variance
    z_qn : float (n,), QuasarNET redshift (the window centre)
    fit : bool (n,), fibers to fit (IS_QSO_QN == 1); the others get NOT_FITTED
    bal : bool (n,), optional, BAL quasars (troughs masked)
    settings : FitSettings
    templates : tuple of RestTemplate [default: the shipped LOZ and HIZ]
    z_lines : float (n, k), optional, more window centres: the redshifts of QuasarNET's other lines above
        c_th (NaN where none; `window_centres`). A fiber with more than one window takes the lowest chi2 of
        all of them, every window fitted over the same pixels.

    Returns
    -------
    dict of (n,) arrays: Z_FIT, ZERR (float64; -1 where not measured),
    ZWARNING (int32, ZWarning bits), DELTACHI2 (float32; 0 where not
    measured; against the lowest chi2 more than exclusion_kms away in any
    of the fiber's windows), CHI2 (float64, at the minimum; 0 where not
    fitted), NPIX (int32, pixels in the fit), TEMPLATE (int16, index in
    `templates`; -1 where none).
    """
    templates = load_templates() if templates is None else templates
    n = len(z_qn)
    z_qn = np.asarray(z_qn, np.float64)
    fit = np.asarray(fit, bool)
    bal = np.zeros(n, bool) if bal is None else np.asarray(bal, bool)
    out = {"Z_FIT": np.full(n, -1.0), "ZERR": np.full(n, -1.0),
           "ZWARNING": np.where(fit, 0, ZWarning.NOT_FITTED).astype(np.int32),
           "DELTACHI2": np.zeros(n, np.float32), "CHI2": np.full(n, np.inf), "NPIX": np.zeros(n, np.int32),
           "TEMPLATE": np.full(n, -1, np.int16)}
    centres = window_centres(z_qn, z_lines, settings.window_kms)
    fiber, column = np.nonzero(np.isfinite(centres) & fit[:, None])
    z_centre = centres[fiber, column]
    # one fit for each window and template whose redshift range holds its centre
    chosen = [(z_centre >= t.zmin) & (z_centre <= t.zmax) for t in templates]
    rows, centre = np.concatenate([fiber[c] for c in chosen]), np.concatenate([z_centre[c] for c in chosen])
    which = np.repeat(np.arange(len(templates)), [np.count_nonzero(c) for c in chosen])
    in_range = np.zeros(n, bool)
    in_range[rows] = True
    if rows.size:
        spectra = usable_spectra(flux, ivar, rows, z_qn[rows], bal[rows], settings)
        result = fit_templates(*spectra, centre, which, templates, settings, fiber=rows)
        # each fiber takes its fit of lowest CHI2, of the first template where they are equal
        order = np.lexsort((which, result["CHI2"], rows))
        best = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        _runner_up_across_fits(result, rows, best, settings)
        for name, values in result.items():
            out[name][rows[best]] = values[best]
        out["TEMPLATE"][rows[best]] = which[best]
    out["ZWARNING"][fit & ~in_range] |= np.int32(ZWarning.OUT_OF_RANGE)
    out["CHI2"][~np.isfinite(out["CHI2"])] = 0.0
    return out


def window_centres(z_qn, z_lines=None, window_kms=FitSettings.window_kms):
    """Redshifts to fit around, float64 (n, 1 + k): Z_QN, then each of z_lines (n, k) more than window_kms
    from every valid one before it in its row; NaN where none (or not a redshift)."""
    z_qn = np.asarray(z_qn, np.float64)[:, None]
    centres = z_qn if z_lines is None else np.concatenate([z_qn, np.asarray(z_lines, np.float64)], axis=1)
    centres = np.where(np.isfinite(centres) & (centres > -1), centres, np.nan)
    for k in range(1, centres.shape[1]):
        velocity = SPEED_OF_LIGHT_KMS * np.abs(centres[:, k, None] - centres[:, :k]) / (1.0 + centres[:, :k])
        centres[np.any(velocity <= window_kms, axis=1), k] = np.nan
    return centres


def _runner_up_across_fits(result, rows, best, settings):
    """Where a fiber has other fits (other windows or templates) with a minimum more than exclusion_kms from
    its best fit's, DELTACHI2 of the best fit (indices `best`) becomes the lowest such chi2, or its own runner-up
    if lower, minus its chi2, and SMALL_DELTA_CHI2 follows it; in place. rows: int (m,), the fiber of each fit."""
    best_of = np.full(rows.max() + 1, -1)
    best_of[rows[best]] = best
    mine = best_of[rows]
    z_best = result["Z_FIT"][mine]
    measured = z_best > -1
    velocity = SPEED_OF_LIGHT_KMS * np.abs(result["Z_FIT"] - z_best) / np.where(measured, 1.0 + z_best, 1.0)
    other = (np.arange(len(rows)) != mine) & np.isfinite(result["CHI2"]) & (result["Z_FIT"] > -1) & measured
    other &= velocity > settings.exclusion_kms
    if not other.any():
        return
    lowest = np.full(rows.max() + 1, np.inf)
    np.minimum.at(lowest, rows[other], result["CHI2"][other])
    chi2, own = result["CHI2"][best], result["DELTACHI2"][best].astype(np.float64)
    second = np.minimum(np.where(own > 0, chi2 + own, np.inf), lowest[rows[best]])
    changed = np.isfinite(lowest[rows[best]]) & np.isfinite(chi2)
    deltachi2 = second - chi2
    small = ~(deltachi2 >= settings.min_deltachi2)
    index = best[changed]
    result["DELTACHI2"][index] = deltachi2[changed].astype(np.float32)
    result["ZWARNING"][index] = np.where(small[changed], result["ZWARNING"][index] | ZWarning.SMALL_DELTA_CHI2,
                                         result["ZWARNING"][index] & ~np.int32(ZWarning.SMALL_DELTA_CHI2))


def usable_spectra(flux, ivar, rows, z_qn, bal, settings=FitSettings()):
    """The flux and fit weights of spectra `rows`, float32 (n, 3841) each.

    A pixel is usable where ivar is positive and finite and the flux finite;
    elsewhere both are 0. The weights are ivar on usable pixels at rest
    wavelengths (placed with z_qn) from forest_rest_max on, 0 elsewhere and
    on BAL troughs (rows with `bal`: rest wavelengths from BAL_LINES x
    Doppler(-bal_kms) up to each line).
    """
    flux = np.take(flux, rows, axis=0).astype(np.float32, copy=False)
    weight = np.take(ivar, rows, axis=0).astype(np.float32, copy=False)
    unusable = ~((weight > 0) & (weight < np.inf) & np.isfinite(flux))
    np.copyto(flux, 0.0, where=unusable)
    np.copyto(weight, 0.0, where=unusable)
    for row, end in enumerate(forest_end(z_qn, settings).tolist()):
        weight[row, :end] = 0.0
    wave = observed_wavelengths()
    beta = settings.bal_kms / SPEED_OF_LIGHT_KMS
    blue_edge = np.sqrt((1 - beta) / (1 + beta))
    for row in np.flatnonzero(bal):
        for line in BAL_LINES:
            observed = line * (1.0 + z_qn[row])
            weight[row, np.searchsorted(wave, observed * blue_edge):np.searchsorted(wave, observed, "right")] = 0.0
    return flux, weight


def forest_end(z_qn, settings=FitSettings()):
    """int (n,): the first pixel at rest wavelengths (placed with z_qn) from forest_rest_max on."""
    return np.searchsorted(observed_wavelengths(), settings.forest_rest_max * (1.0 + np.asarray(z_qn)))


@functools.lru_cache(maxsize=1)
def observed_wavelengths():
    """Wavelengths (A) of the MgII grid's pixels, float64 (3841,)."""
    return 10.0 ** grids.mgii_loglam()


def fit_templates(flux, weight, z_qn, which, templates, settings=FitSettings(), fiber=None):
    """Fit a template to each spectrum, in a window around z_qn clipped to the template's range.

    Parameters
    ----------
    flux, weight : float32 (n, 3841) from `usable_spectra`; weight is set to 0 outside what each template
        covers, in place
    z_qn : float64 (n,), the window centres, inside the spectrum's template's [zmin, zmax]
    which : int (n,), the template of each fit, its index in `templates`
    templates : sequence of RestTemplate (the same number of eigenspectra in each); settings : FitSettings
    fiber : int (n,), optional, the fiber of each fit: fits of one fiber keep only the pixels that all of
        them keep (from the forest cut of its highest centre on, inside every template's coverage), so that
        their chi2 compare

    Returns
    -------
    dict of (n,) arrays, as `fit_redshifts` (without TEMPLATE); CHI2 is inf
    where no fit was made.
    """
    n, npix = flux.shape
    window = _Window.around(z_qn, which, templates, settings)
    low, high = window.coverage(settings.coarse_factor)
    low = np.clip(np.maximum(low, forest_end(z_qn, settings)), 0, npix)
    if fiber is not None:
        low, high = _common_span(low, high, fiber)
    high = np.clip(high, low, npix)
    for row, (lo, hi) in enumerate(zip(low.tolist(), high.tolist())):
        weight[row, :lo] = 0.0
        weight[row, hi:] = 0.0
    npix_fit = np.count_nonzero(weight, axis=1).astype(np.int32)
    warning = np.where(npix_fit == 0, ZWarning.NO_DATA,
                       np.where(npix_fit < settings.min_pixels, ZWarning.FEW_PIXELS, 0)).astype(np.int32)
    out = {"Z_FIT": np.full(n, -1.0), "ZERR": np.full(n, -1.0), "ZWARNING": warning,
           "DELTACHI2": np.zeros(n, np.float32), "CHI2": np.full(n, np.inf), "NPIX": npix_fit}
    rows = np.flatnonzero(warning == 0)
    if rows.size:
        if rows.size < n:
            flux, weight, window, low, high = flux[rows], weight[rows], window.take(rows), low[rows], high[rows]
        for name, values in _scan_window(flux, weight, (low, high), window, templates, settings).items():
            out[name][rows] = values
    return out


def _common_span(low, high, group):
    """Per element, the largest low and the smallest high (int (n,) each) of its group (int (n,))."""
    size = group.max() + 1
    largest, smallest = np.full(size, np.iinfo(np.int64).min), np.full(size, np.iinfo(np.int64).max)
    np.maximum.at(largest, group, low)
    np.minimum.at(smallest, group, high)
    return largest[group], smallest[group]


@dataclass(frozen=True)
class _Window:
    """Search windows of n fits: whole shifts first..last (inclusive); the fit's template (which, its index)
    and that template's rest pixels kmin .. kmin + nrest; int (n,) each."""

    first: np.ndarray
    last: np.ndarray
    which: np.ndarray
    kmin: np.ndarray
    nrest: np.ndarray

    @classmethod
    def around(cls, z_qn, which, templates, settings):
        half = int(round(settings.window_kms / PIXEL_KMS))
        centre = np.rint(shift_of_redshift(z_qn)).astype(np.int64)
        lowest, highest = np.array([t.shift_range() for t in templates]).T[:, which]
        kmin, nrest = np.array([(t.kmin, t.nrest) for t in templates]).T[:, which]
        return cls(np.clip(centre - half, lowest, highest), np.clip(centre + half, lowest, highest), which, kmin,
                   nrest)

    def take(self, rows):
        return _Window(self.first[rows], self.last[rows], self.which[rows], self.kmin[rows], self.nrest[rows])

    def coverage(self, margin):
        """Observed pixels [low, high) the template covers at every shift of the window, `margin` pixels
        inside: int (n,) each."""
        return self.last + self.kmin + margin, self.first + self.kmin + self.nrest - margin


def _scan_window(flux, weight, spans, window, templates, settings):
    """Coarse scan, fine scans of the two best minima (extended where a minimum lies at a scan's end),
    parabola: the fit columns of usable spectra (weights 0 outside pixels spans = (lo, hi), int (n,) each)."""
    factor = settings.coarse_factor
    exclusion = settings.exclusion_kms / PIXEL_KMS
    coarse_shift, coarse_chi2 = _coarse_scan(flux, weight, (spans[0] // factor, -(-spans[1] // factor)), window,
                                             templates, settings)
    candidates = _candidate_shifts(coarse_shift, coarse_chi2, exclusion)
    kernels = [scan_kernels(t, factor)[1] for t in templates]
    grid = _FineGrid(window)
    half = settings.fine_half
    rows, first, nlag = np.repeat(np.arange(len(flux)), 2), candidates.ravel() - half, 2 * half + 1
    spectra = ScanSpectra(flux, weight, settings.npoly, spans)
    for _ in range(settings.max_extensions + 1):
        if not rows.size:
            break
        chi2, amplitude = spectra.chi2(first + window.kmin[rows], nlag, kernels, rows, window.which[rows])
        grid.add(rows, first, chi2, amplitude)
        rows, first = grid.extensions(exclusion, settings.fine_extension, candidates, rows)
        nlag = settings.fine_extension
    return _refine(grid, window, exclusion, settings)


class _FineGrid:
    """The fine scans' chi2 and first-eigenspectrum amplitude on every fit's window of whole shifts.

    chi2, amplitude : float64 (n, width), column c for shift window.first + c (inf and nan where not
        scanned); scanned : bool (n, width), True where scanned and on the columns past the window's end
    """

    def __init__(self, window):
        self.first, self.size = window.first, window.last - window.first + 1
        shape = (len(self.first), int(np.max(self.size)))
        self.chi2, self.amplitude = np.full(shape, np.inf), np.full(shape, np.nan)
        self.scanned = np.arange(shape[1]) >= self.size[:, None]

    def add(self, rows, first, chi2, amplitude):
        """Scans (m, nlag) of fits `rows` from whole shifts `first` (int (m,) each); shifts outside the window
        are dropped."""
        column = first[:, None] - self.first[rows, None] + np.arange(chi2.shape[1])
        inside = (column >= 0) & (column < self.size[rows, None])
        row, column = np.broadcast_to(rows[:, None], column.shape)[inside], column[inside]
        self.chi2[row, column] = np.where(np.isfinite(chi2), chi2, np.inf)[inside]
        self.amplitude[row, column] = amplitude[inside]
        self.scanned[row, column] = True

    def minima(self, exclusion, rows=slice(None)):
        """Columns of the lowest chi2 and of the lowest more than `exclusion` columns from it, and whether that
        second one exists: (m,) each, for fits `rows` [default: all]."""
        chi2 = self.chi2[rows]
        best = np.argmin(chi2, axis=1)
        far_chi2 = np.where(np.abs(np.arange(chi2.shape[1]) - best[:, None]) > exclusion, chi2, np.inf)
        second = np.argmin(far_chi2, axis=1)
        return best, second, np.isfinite(far_chi2[np.arange(len(best)), second])

    def extensions(self, exclusion, width, candidates, scanned_rows):
        """The scans still needed: rows and first whole shifts, int (m,) each, of `width` shifts each.

        Only fits among scanned_rows (int, those just scanned) can need more:
        - past an end of the scanned shifts where the lowest chi2 lies (its
          minimum is not yet enclosed), inside the window;
        - the same for the lowest chi2 more than `exclusion` from it, without
          reaching back within `exclusion`;
        - where no scanned shift lies more than `exclusion` from the best (the
          best moved towards the runner-up's scan), the first shifts beyond
          that distance on the runner-up's side. candidates: int (n, 2), the
          whole shifts the fine scans started from (best, runner-up; equal
          where there is no runner-up).
        """
        rows = np.unique(scanned_rows)
        best, second, has_second = self.minima(exclusion, rows)
        chi2, scanned, first_shift, size = self.chi2[rows], self.scanned[rows], self.first[rows], self.size[rows]
        index = np.arange(len(rows))
        found = np.isfinite(chi2[index, best])
        wanted_rows, wanted_first = [], []
        for column, wanted, keep_away in ((best, found, False), (second, has_second, True)):
            for step, first in ((-1, column - width), (1, column + 1)):
                neighbour = np.clip(column + step, 0, chi2.shape[1] - 1)
                needed = wanted & (neighbour == column + step) & ~scanned[index, neighbour]
                if keep_away:
                    needed &= np.abs(neighbour - best) > exclusion
                wanted_rows.append(rows[needed])
                wanted_first.append(first[needed] + first_shift[needed])
        candidates = candidates[rows]
        side = np.where(candidates[:, 1] != candidates[:, 0], np.sign(candidates[:, 1] - first_shift - best), 0)
        boundary = best + side * (int(exclusion) + 1)
        needed = found & ~has_second & (side != 0) & (boundary >= 0) & (boundary < size)
        needed[needed] &= ~scanned[index[needed], boundary[needed]]
        wanted_rows.append(rows[needed])
        wanted_first.append(np.where(side > 0, boundary, boundary - width + 1)[needed] + first_shift[needed])
        return np.concatenate(wanted_rows), np.concatenate(wanted_first)


def _coarse_scan(flux, weight, spans, window, templates, settings):
    """Shifts (n, nlag) int and chi2 (n, nlag) (inf outside the window) of the binned scan (binned weights 0
    outside bins spans = (lo, hi), int (n,) each)."""
    factor = settings.coarse_factor
    binned_weight = bin_sum(weight, factor)
    binned_flux = np.divide(bin_sum(weight * flux, factor), binned_weight,
                            out=np.zeros_like(binned_weight), where=binned_weight > 0)
    first = -(-window.first // factor)
    nlag = int(np.max(window.last // factor - first)) + 1
    chi2, _ = scan_chi2(binned_flux, binned_weight, first + window.kmin // factor, nlag,
                        [scan_kernels(t, factor)[0] for t in templates], settings.npoly, kernel=window.which,
                        spans=spans)
    shift = (first[:, None] + np.arange(nlag)) * factor
    inside = shift <= window.last[:, None]
    return shift, np.where(inside & np.isfinite(chi2), chi2, np.inf)


@functools.lru_cache(maxsize=8)
def scan_kernels(template, factor):
    """(coarse, fine) ScanKernels of a template, made once per process: the coarse ones are the eigenspectra
    and their full-resolution products averaged over rest bins of `factor` pixels (`bin_mean_rest`, first
    bin template.kmin // factor), the fine ones the template's own."""
    fine = ScanKernels(template.basis)
    coarse = ScanKernels(bin_mean_rest(template.basis, template.kmin, factor)[0],
                         bin_mean_rest(fine.products, template.kmin, factor)[0])
    return coarse, fine


def bin_sum(values, factor):
    """Sums over consecutive groups of `factor` pixels (the last group may be shorter): (n, npix) ->
    (n, ceil(npix / factor)), of the dtype of `values` (float32 or float64)."""
    n, npix = values.shape
    whole = npix // factor
    out = np.empty((n, -(-npix // factor)), values.dtype)
    out[:, :whole] = values[:, :whole * factor].reshape(n, whole, factor) @ np.ones(factor, values.dtype)
    if out.shape[1] > whole:
        out[:, whole] = values[:, whole * factor:].sum(axis=1)
    return out


def bin_mean_rest(kernels, kmin, factor):
    """Rest-frame kernels (m, nk) with first rest pixel kmin averaged over rest bins floor(k / factor).

    Returns (binned (m, nbin), first rest bin); pixels outside the kernel count as 0.
    """
    first_bin = kmin // factor
    offset = kmin - first_bin * factor
    padded = np.zeros((kernels.shape[0], -(-(kernels.shape[1] + offset) // factor) * factor))
    padded[:, offset:offset + kernels.shape[1]] = kernels
    return padded.reshape(kernels.shape[0], -1, factor).mean(axis=2), first_bin


def _candidate_shifts(shift, chi2, exclusion):
    """(n, 2) whole shifts: the best coarse shift and the runner-up (see the module docstring).

    Where nothing lies beyond `exclusion` pixels, the runner-up repeats the best.
    """
    n = len(chi2)
    best = np.argmin(chi2, axis=1)
    padded = np.pad(chi2, ((0, 0), (1, 1)), constant_values=np.inf)
    local = np.isfinite(chi2) & (chi2 <= padded[:, :-2]) & (chi2 <= padded[:, 2:])
    far = np.abs(shift - shift[np.arange(n), best][:, None]) > exclusion
    ranked = np.where(far & local, chi2, np.inf)
    fallback = np.where(far, chi2, np.inf)
    second = np.where(np.isfinite(ranked).any(axis=1), np.argmin(ranked, axis=1), np.argmin(fallback, axis=1))
    second = np.where(np.isfinite(fallback).any(axis=1), second, best)
    return np.stack([_vertex_shift(shift, chi2, best), _vertex_shift(shift, chi2, second)], axis=1)


def _vertex_shift(shift, chi2, column):
    """Whole shifts (n,): the vertex of the parabola through coarse point `column` (int (n,)) and its
    neighbours, rounded and kept within half a coarse step of the point; the point itself where a neighbour
    is missing or the curvature is not positive."""
    rows = np.arange(len(chi2))
    step = shift[:, 1] - shift[:, 0] if shift.shape[1] > 1 else np.zeros(len(chi2), shift.dtype)
    left = np.where(column > 0, chi2[rows, np.maximum(column - 1, 0)], np.inf)
    right = np.where(column < chi2.shape[1] - 1, chi2[rows, np.minimum(column + 1, chi2.shape[1] - 1)], np.inf)
    centre = chi2[rows, column]
    curvature = left - 2 * centre + right
    usable = np.isfinite(curvature) & (curvature > 0)
    offset = np.where(usable, 0.5 * (left - right) / np.where(usable, curvature, 1.0), 0.0)
    return shift[rows, column] + np.rint(np.clip(offset, -0.5, 0.5) * step).astype(shift.dtype)


def _refine(grid, window, exclusion, settings):
    """Best fine shift, parabola, DELTACHI2 and warnings from the fine scans (`_FineGrid`)."""
    chi2 = grid.chi2
    n, width = chi2.shape
    rows = np.arange(n)
    best, second, _ = grid.minima(exclusion)
    best_chi2 = chi2[rows, best]
    best_shift = window.first + best
    second_chi2 = chi2[rows, second]
    left = np.where(best > 0, chi2[rows, np.maximum(best - 1, 0)], np.inf)
    right = np.where(best < width - 1, chi2[rows, np.minimum(best + 1, width - 1)], np.inf)
    curvature = left - 2 * best_chi2 + right
    measured = np.isfinite(best_chi2) & np.isfinite(curvature) & (curvature > 0)
    safe = np.where(measured, curvature, 1.0)
    slope = np.subtract(left, right, out=np.zeros(n), where=measured)
    offset = 0.5 * slope / safe
    fitted_shift = best_shift + offset
    z = redshift_of_shift(fitted_shift)
    zerr = np.log(10.0) * grids.MGII_DLOGLAM * (1.0 + z) * np.sqrt(2.0 / safe)
    chi2_min = best_chi2 - 0.25 * offset * slope
    deltachi2 = second_chi2 - chi2_min
    edge = (best_shift <= window.first) | (best_shift >= window.last)
    warning = np.zeros(n, np.int32)
    warning[edge] |= ZWarning.WINDOW_EDGE
    warning[~measured & ~edge] |= ZWarning.FIT_FAILED
    warning[~(np.isfinite(deltachi2) & (deltachi2 >= settings.min_deltachi2))] |= ZWarning.SMALL_DELTA_CHI2
    warning[~(grid.amplitude[rows, best] > 0)] |= ZWarning.NEGATIVE_AMPLITUDE
    good = measured & np.isfinite(z)
    return {"Z_FIT": np.where(good, z, -1.0), "ZERR": np.where(good, zerr, -1.0), "ZWARNING": warning,
            "DELTACHI2": np.where(np.isfinite(deltachi2), deltachi2, 0.0).astype(np.float32),
            "CHI2": np.where(np.isfinite(chi2_min), chi2_min, np.inf)}


#: Columns of `fit_plate`'s table, in order, with their Arrow types.
ZFIT_COLUMNS = {"PLATE": pa.int32(), "MJD": pa.int32(), "FIBERID": pa.int32(), "Z_FIT": pa.float64(),
                "ZERR": pa.float64(), "ZWARNING": pa.int32(), "DELTACHI2": pa.float32(), "Z": pa.float64(),
                "SOURCE_Z": pa.string()}


def best_redshift(z_fit, zwarning, z_qn):
    """Z (n,) float64: z_fit where zwarning == 0, else z_qn; and SOURCE_Z (n,) 'ZFIT' or 'QN'."""
    use_fit = (np.asarray(zwarning) == 0) & np.isfinite(z_fit)
    return np.where(use_fit, z_fit, z_qn).astype(np.float64), np.where(use_fit, "ZFIT", "QN")


def other_line_redshifts(qn):
    """float64 (n, 6): Z_<line> of QuasarNET's lines with C_<line> above the results' c_th (their schema
    metadata), NaN elsewhere; None where the results carry no c_th."""
    c_th = read_metadata(qn.schema).get("c_th")
    if c_th is None:
        return None
    names = [name for name, _ in QN_LINES]
    z = np.stack([qn.column(f"Z_{name}").to_numpy().astype(np.float64) for name in names], axis=1)
    confidence = np.stack([qn.column(f"C_{name}").to_numpy() for name in names], axis=1)
    return np.where(confidence > c_th, z, np.nan)


def fit_plate(shard, qn, settings=FitSettings()):
    """The redshift table of one plate: one row per shard row, same order.

    Parameters
    ----------
    shard : pyarrow.Table, a preprocess shard (PLATE, MJD, FIBERID, MGII_FLUX, MGII_IVAR)
    qn : pyarrow.Table, its QuasarNET results (same rows; Z_QN, IS_QSO_QN, BAL_FLAG_QN)

    Returns
    -------
    pyarrow.Table with ZFIT_COLUMNS: Z_FIT, ZERR (-1 where not measured),
    ZWARNING (ZWarning bits; NOT_FITTED on fibers that are not quasars),
    DELTACHI2 (0 where not measured), Z (Z_FIT where ZWARNING == 0, else
    Z_QN, which is -1 on unclassified fibers) and SOURCE_Z ('ZFIT' or 'QN').
    Schema metadata: the settings, the template file and its sha256, the ZWARNING bits.
    """
    for name in ("PLATE", "MJD", "FIBERID"):
        if not shard.column(name).equals(qn.column(name)):
            raise ValueError(f"shard and QuasarNET results differ in {name}: not the same plate or order")
    z_qn = qn.column("Z_QN").to_numpy().astype(np.float64)
    result = fit_redshifts(list_column(shard, "MGII_FLUX"), list_column(shard, "MGII_IVAR"), z_qn,
                           qn.column("IS_QSO_QN").to_numpy() == 1, qn.column("BAL_FLAG_QN").to_numpy() == 1,
                           settings, z_lines=other_line_redshifts(qn) if settings.other_lines else None)
    z, source = best_redshift(result["Z_FIT"], result["ZWARNING"], z_qn)
    columns = {name: shard.column(name) for name in ("PLATE", "MJD", "FIBERID")}
    columns.update(Z_FIT=result["Z_FIT"], ZERR=result["ZERR"], ZWARNING=result["ZWARNING"],
                   DELTACHI2=result["DELTACHI2"], Z=z, SOURCE_Z=source)
    table = pa.table({name: pa.array(columns[name], type=kind) for name, kind in ZFIT_COLUMNS.items()})
    return with_metadata(table, {"zfit_settings": asdict(settings), "zfit_templates": TEMPLATE_FILE.name,
                                 "zfit_templates_sha256": sha256_of_file(TEMPLATE_FILE),
                                 "zwarning_bits": {flag.name: int(flag.value) for flag in ZWarning}})
