"""Find and measure MgII 2796/2803 doublets in spectra on the MgII CNN grid.

Five steps, each a function on arrays of many spectra at once:

1. `running_continuum`: a running median (85 pixels, about 5900 km/s, on
   5-pixel block means) over the pixels with ivar > 0, once more after
   clipping absorption dips.
2. `doublet_matched_filter`: the S/N of a doublet template (two Gaussians
   of sigma 1.3 pixels, a given separation and depth ratio) placed with its
   first line on each pixel, on the continuum-normalised flux; peaks of the
   MgII template are the candidates. Each candidate is then scored by the
   S/N of the whole absorber system (`system_snr_at`: the MgII doublet and
   the FeII 2600, 2586, 2382 and 2344 lines that strong MgII absorbers
   carry), and only those above the detection S/N are fitted.
3. `fit_doublets`: a batched Levenberg-Marquardt fit around every candidate
   of two pixel-integrated Gaussians of one velocity width (free z, both
   observed equivalent widths, the width, and a linear continuum
   correction), a fixed number of iterations at most; errors from the
   covariance (J^T J)^-1.
4. `accepted_doublets` and `search_doublets`: a fit is an MgII doublet when
   both lines are significant, EW_2796/EW_2803 is within the optically thin
   to saturated range [1, 2] within errors, the line width is within the
   instrumental + intrinsic range, the dip is better matched by the MgII
   separation than by the CIV 1548/1550 one, and neither line falls on a
   line (MgII, FeII, CIV) of a stronger absorber already accepted; a
   candidate vetter (`qsopipe.stages.mgii_vetter`), when given, judges the
   candidates that pass.
5. `refit_absorbers`: each accepted absorber is fitted again with a sigma
   of its own for each line (a saturated 2796 line can be the broader) and
   without the pixels of other absorbers' lines in its fit region, which
   would pull its continuum and EWs low; its EWs, S/N and z are those of
   this fit.

All thresholds are fields of `DoubletCriteria`, passed explicitly.
Wavelengths in Angstrom (observed unless named rest), equivalent widths in
rest-frame A, line widths sigma in km/s.
"""

from dataclasses import dataclass, replace

import bottleneck
import numpy as np
from scipy.ndimage import correlate1d
from scipy.signal import find_peaks
from scipy.special import erf

from qsopipe.pipeline.constants import (
    ALII_1670, CIV_1548, CIV_1550, FEII_2374, MGI_2853, MGII_2796, MGII_2803, MGII_SYSTEM_FEII_LINES, SIII_1526,
    SIIV_1394, SIIV_1403, SPEED_OF_LIGHT_KMS,
)
from qsopipe.pipeline.grids import MGII_DLOGLAM, MGII_NPIX, mgii_loglam
from qsopipe.stages.mgii_regions import PROXIMATE_KMS
from qsopipe.stages.mgii_vetter import FEATURES, candidate_features

#: Lines an MgII absorber may show besides the doublet, rest A: FeII 2600-2344, MgI 2853, CIV.
COMPANION_LINES = tuple(rest for rest, _ in MGII_SYSTEM_FEII_LINES) + (FEII_2374, MGI_2853, CIV_1548, CIV_1550)

#: Running-median width of the continuum, pixels (odd).
CONTINUUM_WIDTH = 85
#: Error of the running continuum on the scale of a line, as a fraction of it: added in quadrature to each
#: pixel's noise (`with_continuum_error`), so that high-S/N spectra do not turn continuum wiggles into lines.
CONTINUUM_ERROR = 0.02
#: Pixels averaged into one block before the running median.
CONTINUUM_BLOCK = 5
#: Pixels deeper than this many sigma below the first continuum are ignored in the second pass.
CONTINUUM_CLIP_SIGMA = 2.5

#: The doublets the fit can model: (blue, red) rest A.
MGII_DOUBLET = (MGII_2796, MGII_2803)
CIV_DOUBLET = (CIV_1548, CIV_1550)
#: Doublet separations on the grid, pixels: log10(red / blue) / 1e-4 (CIV, a confuser: 7.2 against MgII's 11.1).
DOUBLET_SEPARATION_PIX = np.log10(MGII_2803 / MGII_2796) / MGII_DLOGLAM
CIV_SEPARATION_PIX = np.log10(CIV_1550 / CIV_1548) / MGII_DLOGLAM
#: Matched-filter line sigma in pixels (instrument and a 1.7 A rest FWHM line, in quadrature).
FILTER_SIGMA_PIX = 1.3
#: Matched-filter second/first line depth ratios (MgII between 1/2 and 1; the simulator's CIV 1/1.6).
FILTER_RATIO = 0.7
CIV_FILTER_RATIO = 0.6
#: Fraction of the template's sum of squares that must fall on pixels with data for a filter value.
MIN_TEMPLATE_COVERAGE = 0.5
#: Closest two candidates may be, pixels (keeps the +-11 pixel ghosts of a doublet out).
MIN_PEAK_DISTANCE_PIX = 15
#: Half width of the fit region beyond the doublet, pixels.
FIT_HALF_WIDTH_PIX = 20
#: Pixels of a fit region: FIT_HALF_WIDTH_PIX either side of the doublet.
FIT_REGION_PIX = 2 * FIT_HALF_WIDTH_PIX + int(np.ceil(DOUBLET_SEPARATION_PIX)) + 1
#: Fewest good pixels a fit region needs.
MIN_FIT_PIXELS = 12
#: Bounds of the fitted line width sigma, km/s (wider than any accepted range).
SIGMA_BOUNDS_KMS = (5.0, 600.0)
#: Levenberg-Marquardt damping (relative to the normal matrix's diagonal) at which a fit has stalled.
MAX_DAMPING = 1e6
#: A step that lowers chi^2 by less than this ends a fit: far below any change a parameter's error could show.
CONVERGED_DCHI2 = 1e-4
#: Starting line width sigma of a fit, km/s.
SIGMA_GUESS_KMS = 80.0
#: Doublets of other ions whose partner line lies clear of an MgII candidate's own lines: (line, partner)
#: in rest A, each way round (CIV's partner would sit within VETO_EXCLUSION_PIX; `civ_fits_better` covers CIV);
#: a SiIV doublet vetoes only where its CIV is not missing (`_civ_missing`).
ION_DOUBLETS = ((SIIV_1394, SIIV_1403), (SIIV_1403, SIIV_1394))
#: Lines of CIV systems besides CIV, rest A: a candidate line on one of them, with the CIV doublet there, is vetoed.
CIV_SYSTEM_LINES = (SIIV_1394, SIIV_1403, SIII_1526, ALII_1670)
#: A veto test whose template lines come this close to a line of the candidate's own system
#: (`_lines_of`: MgII, FeII, MgI, CIV) is not used, pixels (beyond VETO_REACH_PIX).
VETO_EXCLUSION_PIX = 6
#: Pixels either side of a veto's test position searched for the line's peak.
VETO_REACH_PIX = 2
#: Levenberg-Marquardt iterations of the CIV fit whose chi^2 is a vetter feature (CIV_DCHI2): it only has to
#: come near its minimum.
VETTER_CIV_ITERATIONS = 8
#: Line sigmas around another absorber's lines that `refit_absorbers` leaves out of a fit.
NEIGHBOUR_MASK_SIGMA = 3.0
#: Range of the 2803 line's sigma over the 2796 line's in `refit_absorbers` (2796 is never the narrower).
WIDTH_RATIO_RANGE = (0.5, 1.0)
#: Levenberg-Marquardt iterations of `refit_absorbers`, which starts from the search's converged fit.
REFIT_ITERATIONS = 10
#: Half width of the pixels whose median continuum S/N is a vetter feature, pixels.
CONTINUUM_SNR_HALF_WIDTH_PIX = 40
#: Rest-EW detection limit of the path, in sigma of the matched filter's EW_2796.
EW_LIMIT_SIGMA = 5.0

ABSORBER_DTYPE = [
    ("Z_ABS", "f8"), ("Z_ABS_ERR", "f8"),
    ("EW_2796", "f8"), ("EW_2796_ERR", "f8"),
    ("EW_2803", "f8"), ("EW_2803_ERR", "f8"),
    ("SNR_2796", "f8"), ("SNR_2803", "f8"),
]
#: The searched path of a sightline: absorber redshifts of its first and last usable pixel, the
#: redshift path of the usable pixels, and the median EW_LIMIT_SIGMA rest-EW_2796 limit over them (A).
PATH_DTYPE = [("ZMIN", "f8"), ("ZMAX", "f8"), ("DZ", "f8"), ("EW_LIMIT", "f8")]

_LOGLAM = mgii_loglam()
WAVE = 10.0 ** _LOGLAM
_EDGE_LO = 10.0 ** (_LOGLAM - MGII_DLOGLAM / 2)
_EDGE_HI = 10.0 ** (_LOGLAM + MGII_DLOGLAM / 2)
PIXEL_WIDTH = _EDGE_HI - _EDGE_LO


@dataclass(frozen=True)
class DoubletCriteria:
    """Thresholds of the doublet finder.

    candidate_snr: MgII doublet matched-filter S/N of a candidate peak.
    detect_snr: S/N of the absorber-system template (`system_snr_at`) a
        candidate needs to be fitted; the detection itself. The fit's S/N
        values below are lower for the same doublet (z, width and continuum
        are free), so they only confirm it. models/weights/mgii.md tells
        how the defaults were chosen.
    min_snr_doublet: fitted EW_2796 + EW_2803 over its error (the joint
        detection; a saturated doublet splits its S/N between the lines).
    min_snr_2796, min_snr_2803: fitted rest EW over its error, each line
        (both lines must be there: no single line passes). A lone line
        with noise at the 2803 position passes the ratio test at low S/N
        (EW_2803's error then spans the optically thin ratio), so 2803 must
        itself be a 2-sigma line.
    ratio_range, ratio_tolerance: EW_2796/EW_2803 must lie in ratio_range
        (1 optically thick, 2 thin) within ratio_tolerance sigma.
    sigma_range_kms: accepted fitted line sigma, km/s: the narrowest
        intrinsic line (rest FWHM 0.5 A, 23 km/s) up to a saturated 4 A line
        (about 300 km/s); SDSS's instrumental ~65 km/s adds in quadrature.
    coincidence_kms: a candidate line this close to a line of a stronger
        accepted absorber is that line, not a new doublet.
    veto_snr: S/N at which a line of another ion's system (`metal_line_veto`)
        vetoes a candidate.
    lya_civ_min_snr, lya_civ_max_sigma_kms: between Lyman-alpha and CIV
        emission (blue of the CIV gap), where CIV systems' lines crowd the
        spectrum, a doublet also needs SNR_2796 and SNR_2803 of at least
        lya_civ_min_snr and a line sigma of at most lya_civ_max_sigma_kms:
        a broader doublet's lines blend over more than the 270 km/s by which
        the MgII and CIV separations differ, so that a CIV fit
        (`civ_fits_better`) no longer tells the two apart, and blends of CIV
        components and the edges of quasar emission lines make such dips
        (models/weights/mgii.md).
    max_iterations: Levenberg-Marquardt iterations of each fit, at most.
    """

    candidate_snr: float = 3.5
    detect_snr: float = 4.5
    min_snr_doublet: float = 3.0
    min_snr_2796: float = 2.0
    min_snr_2803: float = 2.0
    ratio_range: tuple = (1.0, 2.0)
    ratio_tolerance: float = 2.0
    sigma_range_kms: tuple = (20.0, 320.0)
    coincidence_kms: float = 150.0
    veto_snr: float = 4.0
    lya_civ_min_snr: tuple = (3.0, 2.5)
    lya_civ_max_sigma_kms: float = 200.0
    max_iterations: int = 20


def bridge_masked_pixels(flux, ivar):
    """Flux with every pixel of ivar <= 0 replaced by the linear interpolation of its good neighbours.

    Masked pixels beyond a spectrum's first or last good pixel take that
    pixel's flux (as numpy.interp does); rows without a good pixel are
    returned as they are. The neighbours of all masked pixels of all rows
    are found by one search in the flat index of the good pixels.

    Parameters
    ----------
    flux, ivar : ndarray (n, npix)

    Returns
    -------
    bridged : float64 (n, npix), a new array
    """
    bridged = np.array(np.atleast_2d(flux), np.float64)
    good = np.atleast_2d(ivar) > 0
    masked = np.flatnonzero(~good)
    good = np.flatnonzero(good)
    if masked.size == 0 or good.size == 0:
        return bridged
    npix = bridged.shape[1]
    values = bridged.reshape(-1)
    row = masked // npix
    after = np.searchsorted(good, masked)
    before = good[np.maximum(after - 1, 0)]
    after = good[np.minimum(after, good.size - 1)]
    has_before = (before < masked) & (before // npix == row)
    has_after = (after > masked) & (after // npix == row)
    before = np.where(has_before, before, after)  # one good neighbour only: both taps on it
    after = np.where(has_after, after, before)
    span = after - before
    weight = np.divide(masked - before, span, out=np.zeros(masked.size), where=span > 0)
    fill = has_before | has_after
    values[masked[fill]] = (values[before] * (1 - weight) + values[after] * weight)[fill]
    return bridged


def running_continuum(flux, ivar, width=CONTINUUM_WIDTH, clip_sigma=CONTINUUM_CLIP_SIGMA, block=CONTINUUM_BLOCK):
    """Robust running-median continuum of each spectrum.

    Pixels with ivar = 0 are bridged (`bridge_masked_pixels`); the flux is
    averaged in blocks of `block` pixels, the block means get a running
    median over `width` pixels (width // block blocks, made odd) and are
    interpolated back to every pixel. A second pass replaces pixels more than
    `clip_sigma` below the first continuum by that continuum, so absorbers do
    not pull it down.

    Parameters
    ----------
    flux, ivar : ndarray (n, npix)

    Returns
    -------
    continuum : float64 (n, npix); 0 for a spectrum without any good pixel.
    """
    ivar = np.atleast_2d(ivar)
    filled = bridge_masked_pixels(flux, ivar)
    filled[~np.any(ivar > 0, axis=1)] = 0.0
    first = _block_median(filled, width, block)
    dip = (filled - first) * np.sqrt(np.clip(ivar, 0, None)) < -clip_sigma
    return _block_median(np.where(dip, first, filled), width, block)


def with_continuum_error(ivar, continuum, fraction=CONTINUUM_ERROR):
    """Inverse variance with fraction * continuum added in quadrature to each pixel's noise.

    On the real spectra the doublet filter's S/N has a robust spread of
    0.98 at continuum S/N below 5 per pixel and 1.08 at 10-40 without it,
    0.98-1.04 with fraction 0.02 (models/weights/mgii.md).

    Parameters
    ----------
    ivar, continuum : ndarray (n, npix), flux^-2 and flux units

    Returns
    -------
    float64 (n, npix); 0 where ivar <= 0
    """
    ivar = np.asarray(ivar, np.float64)
    good = ivar > 0
    variance = np.square(fraction * np.asarray(continuum, np.float64))
    variance += np.divide(1.0, ivar, out=np.zeros_like(variance), where=good)
    return np.divide(1.0, variance, out=np.zeros_like(variance), where=good)


def _block_median(values, width, block):
    """Running median over ~width pixels of block means, linearly interpolated back; (n, npix).

    The median runs over an odd number of blocks, the edge blocks repeated
    beyond the ends (bottleneck's moving median, whose window ends at each
    element, so the output is shifted back by half a window).
    """
    n, npix = values.shape
    nblock = -(-npix // block)
    padded = np.pad(values, ((0, 0), (0, nblock * block - npix)), mode="edge")
    means = padded.reshape(n, nblock, block) @ np.full(block, 1.0 / block)
    half = max(width // block, 1) // 2
    medians = bottleneck.move_median(np.pad(means, ((0, 0), (half, half)), mode="edge"), 2 * half + 1,
                                     axis=1)[:, 2 * half:]
    position = (np.arange(npix) - (block - 1) / 2) / block
    left = np.clip(np.floor(position).astype(np.int64), 0, nblock - 2)
    frac = np.clip(position - left, 0.0, 1.0)
    return (np.repeat(medians, np.bincount(left, minlength=nblock), axis=1) * (1 - frac)
            + np.repeat(medians, np.bincount(left + 1, minlength=nblock), axis=1) * frac)


def line_template(lines, sigma_pix=FILTER_SIGMA_PIX):
    """Depth template of Gaussian lines of sigma sigma_pix pixels.

    lines : ((offset, depth), ...), each line's offset in (fractional) pixels
    from the template's origin and its peak depth.

    Returns (offsets int (m,), weights (m,)): every pixel within 4 sigma of a
    line, ascending, and the template's depth there.
    """
    reach = int(np.ceil(4 * sigma_pix))
    offsets = np.unique(np.concatenate([np.arange(int(np.floor(offset)) - reach, int(np.ceil(offset)) + reach + 1)
                                        for offset, _ in lines]))
    weights = sum(depth * np.exp(-0.5 * ((offsets - offset) / sigma_pix) ** 2) for offset, depth in lines)
    return offsets, weights


def doublet_template(separation_pix=DOUBLET_SEPARATION_PIX, sigma_pix=FILTER_SIGMA_PIX, ratio=FILTER_RATIO):
    """Doublet depth template on pixel offsets; returns (offsets int (m,), weights (m,)), first line at 0."""
    return line_template(((0.0, 1.0), (separation_pix, ratio)), sigma_pix)


def system_template(sigma_pix=FILTER_SIGMA_PIX):
    """The absorber-system template: the MgII doublet (2796 at offset 0) and MGII_SYSTEM_FEII_LINES.

    The FeII depths relative to 2796 are their typical EW ratios; where the
    FeII lines are off the grid or masked the template is the doublet alone.
    Returns (offsets int (m,), weights (m,)); the FeII lines sit 316-767
    pixels blue of 2796.
    """
    feii = [(np.log10(rest / MGII_2796) / MGII_DLOGLAM, depth) for rest, depth in MGII_SYSTEM_FEII_LINES]
    return line_template([(0.0, 1.0), (DOUBLET_SEPARATION_PIX, FILTER_RATIO), *feii], sigma_pix)


def doublet_matched_filter(depth, weight, separation_pix=DOUBLET_SEPARATION_PIX, sigma_pix=FILTER_SIGMA_PIX,
                           ratio=FILTER_RATIO):
    """S/N and amplitude of a doublet template with its first line on each pixel.

    Parameters
    ----------
    depth : ndarray (n, npix), 1 - flux / continuum
    weight : ndarray (n, npix), inverse variance of depth (0 = ignore)
    separation_pix, sigma_pix, ratio : the template (default MgII 2796/2803)

    Returns
    -------
    snr, amplitude, amplitude_error : float64 (n, npix); the template's
        best-fit peak depth, its S/N and its standard error; S/N and
        amplitude are 0 and the error inf where pixels with weight > 0 hold
        less than MIN_TEMPLATE_COVERAGE of the template's sum of squares.
    """
    offsets, template = doublet_template(separation_pix, sigma_pix, ratio)
    origin = -offsets[0] - template.size // 2
    numerator = correlate1d(depth * weight, template, axis=1, mode="constant", origin=origin)
    denominator = correlate1d(weight, template ** 2, axis=1, mode="constant", origin=origin)
    coverage = _covered_squares(weight > 0, template ** 2, origin)
    snr, amplitude = _filter_snr(numerator, denominator, coverage, template)
    usable = _covered(coverage, template) & (denominator > 0)
    error = 1.0 / np.sqrt(np.where(usable, denominator, 1.0))
    error[~usable] = np.inf
    return snr, amplitude, error


def _covered(coverage, template):
    """Where the covered sum of squares reaches MIN_TEMPLATE_COVERAGE of the template's; bool, as coverage."""
    return coverage >= MIN_TEMPLATE_COVERAGE * np.sum(template ** 2)


def _covered_squares(has_data, squares, origin):
    """correlate1d(has_data, squares, axis=1, mode="constant", origin=origin), from the pixels without data.

    Pixels without data are few, so the correlation is that of a row full
    of data (one 1-D correlation) less each such pixel's impulse response;
    (n, npix) float64.
    """
    npix = has_data.shape[1]
    coverage = np.repeat(correlate1d(np.ones(npix), squares, mode="constant", origin=origin)[None],
                         has_data.shape[0], axis=0)
    rows, columns = np.nonzero(~has_data)
    impulse = np.zeros(3 * squares.size)
    impulse[squares.size] = 1.0
    response = correlate1d(impulse, squares, mode="constant", origin=origin)
    lags = np.flatnonzero(response) - squares.size
    targets = columns[:, None] + lags
    inside = (targets >= 0) & (targets < npix)
    np.subtract.at(coverage, (np.broadcast_to(rows[:, None], targets.shape)[inside], targets[inside]),
                   np.broadcast_to(response[lags + squares.size], targets.shape)[inside])
    return coverage


def doublet_filter_snr_at(depth, weight, rows, columns, separation_pix, sigma_pix, ratio):
    """`doublet_matched_filter`'s S/N at given pixels only: first line on columns[k, i] of spectrum rows[k].

    Parameters
    ----------
    depth, weight : ndarray (n, npix), as for doublet_matched_filter
    rows : int (k,); columns : int (k, m)
    separation_pix, sigma_pix, ratio : the template

    Returns
    -------
    snr : float64 (k, m)
    """
    return template_snr_at(depth, weight, rows, columns, *doublet_template(separation_pix, sigma_pix, ratio))


def system_snr_at(depth, weight, rows, columns):
    """S/N of the absorber-system template (`system_template`) with its 2796 line on columns[k, i] of
    spectrum rows[k]; as `doublet_filter_snr_at`, float64 (k, m).

    Under noise alone it is a unit normal, as the doublet filter's S/N; on an
    absorber with FeII it adds the FeII lines' signal, by up to 17% in S/N
    at the template's own depths. FeII lines off the grid or on masked
    pixels add nothing (nor any noise).
    """
    return template_snr_at(depth, weight, rows, columns, *system_template())


def template_snr_at(depth, weight, rows, columns, offsets, template):
    """A matched filter's S/N with the template's origin on columns[k, i] of spectrum rows[k].

    Sums over the template's pixels directly (pixels off the grid count as
    no data), for when a few positions per spectrum are needed.

    Parameters
    ----------
    depth, weight : ndarray (n, npix), as for doublet_matched_filter
    rows : int (k,); columns : int (k, m)
    offsets, template : int (t,), (t,), as from `line_template`

    Returns
    -------
    snr : float64 (k, m); 0 where pixels with data hold less than
        MIN_TEMPLATE_COVERAGE of the template's sum of squares
    """
    return _template_at(depth, weight, rows, columns, offsets, template)[0]


def _template_at(depth, weight, rows, columns, offsets, template):
    """`template_snr_at`'s S/N and the template's amplitude (peak depth) there; (k, m) each."""
    pixels = columns[..., None] + offsets
    on_grid = (pixels >= 0) & (pixels < depth.shape[1])
    pixels = np.clip(pixels, 0, depth.shape[1] - 1)
    local_weight = np.where(on_grid, weight[rows[:, None, None], pixels], 0.0)
    numerator = np.sum(depth[rows[:, None, None], pixels] * local_weight * template, axis=2)
    denominator = np.sum(local_weight * template ** 2, axis=2)
    coverage = np.sum((local_weight > 0) * template ** 2, axis=2)
    return _filter_snr(numerator, denominator, coverage, template)


def _filter_snr(numerator, denominator, coverage, template):
    """S/N and amplitude of the template from its sums sum(t d w), sum(t^2 w), sum(t^2 [w > 0]);
    0 where the covered sum of squares is below MIN_TEMPLATE_COVERAGE of the template's."""
    uncovered = ~_covered(coverage, template) | ~(denominator > 0)
    safe = np.where(uncovered, 1.0, denominator)
    snr, amplitude = numerator / np.sqrt(safe), numerator / safe
    snr[uncovered] = 0.0
    amplitude[uncovered] = 0.0
    return snr, amplitude


def _line_terms(z_abs, sigma_kms, wave_lo, wave_hi, lines):
    """Per line of the doublet `lines` (rest A): (rest A, erf argument at the pixel's blue and red edges,
    line sigma * sqrt 2)."""
    for rest in lines:
        centre = rest * (1.0 + z_abs)
        scale = np.sqrt(2.0) * sigma_kms / SPEED_OF_LIGHT_KMS * centre
        yield rest, (wave_lo - centre) / scale, (wave_hi - centre) / scale, scale


def doublet_profile(z_abs, ew_2796_obs, ew_2803_obs, sigma_kms, wave_lo=_EDGE_LO, wave_hi=_EDGE_HI,
                    lines=MGII_DOUBLET):
    """Fractional absorption depth of a Gaussian doublet (`lines`, rest A: MgII unless given), averaged over each pixel.

    Each line is a Gaussian of sigma = sigma_kms / c * its observed
    wavelength, with area = its observed equivalent width (A), integrated
    over the pixel [wave_lo, wave_hi] and divided by the pixel width, so the
    sum of depth * pixel width is the equivalent width even for lines
    narrower than a pixel. Arguments broadcast (e.g. (k, 1) parameters
    against (k, m) pixel edges).
    """
    depth = 0.0
    for ew, (_, blue, red, _) in zip((ew_2796_obs, ew_2803_obs),
                                     _line_terms(z_abs, sigma_kms, wave_lo, wave_hi, lines)):
        depth = depth + ew * 0.5 * (erf(red) - erf(blue))
    return depth / (wave_hi - wave_lo)


def doublet_profile_gradient(z_abs, ew_2796_obs, ew_2803_obs, sigma_kms, wave_lo, wave_hi, lines=MGII_DOUBLET,
                             width_ratio=None):
    """`doublet_profile` and its derivatives by (z, EW_2796, EW_2803, sigma_kms[, width_ratio]); depth (k, m),
    gradient (k, m, 4), or (k, m, 5) with width_ratio.

    The blue line has sigma_kms, the red one width_ratio * sigma_kms (None:
    sigma_kms too). With a, b the erf arguments at a pixel's edges and s the
    line's sigma times sqrt 2: d erf(x) = 2 / sqrt(pi) exp(-x^2) dx, da/dz =
    -rest / s - a / (1 + z) and da/dsigma_line = -a / sigma_line (the same
    for b).
    """
    width = wave_hi - wave_lo
    depth = 0.0
    gradient = np.zeros(np.broadcast(z_abs, wave_lo).shape + (4 if width_ratio is None else 5,))
    red_sigma = sigma_kms if width_ratio is None else width_ratio * sigma_kms
    for k, (ew, line_sigma, rest) in enumerate(zip((ew_2796_obs, ew_2803_obs), (sigma_kms, red_sigma), lines)):
        (_, blue, red, scale), = _line_terms(z_abs, line_sigma, wave_lo, wave_hi, (rest,))
        area = 0.5 * (erf(red) - erf(blue)) / width
        density_red, density_blue = np.exp(-red ** 2) / np.sqrt(np.pi), np.exp(-blue ** 2) / np.sqrt(np.pi)
        depth = depth + ew * area
        gradient[..., 0] += ew / width * (density_red * (-rest / scale - red / (1.0 + z_abs))
                                          - density_blue * (-rest / scale - blue / (1.0 + z_abs)))
        gradient[..., 1 + k] = area
        by_line_sigma = ew / width * (density_blue * blue - density_red * red) / line_sigma
        if k == 1 and width_ratio is not None:
            gradient[..., 3] += by_line_sigma * width_ratio
            gradient[..., 4] = by_line_sigma * sigma_kms
        else:
            gradient[..., 3] += by_line_sigma
    return depth, gradient


@dataclass
class _FitRegions:
    """Pixels around k candidates, (k, m) each: flux, sqrt(ivar) (0 = ignore), continuum,
    wavelength, pixel edges; wave_ref (k, 1), the continuum slope's pivot."""

    flux: np.ndarray
    sqrt_ivar: np.ndarray
    continuum: np.ndarray
    wave: np.ndarray
    wave_lo: np.ndarray
    wave_hi: np.ndarray
    wave_ref: np.ndarray

    def subset(self, rows):
        """The regions of candidates `rows` (int array)."""
        return _FitRegions(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})

    def evaluate(self, params, lines):
        """Residuals (flux - model) * sqrt(ivar), (k, m), and their derivatives by params, (k, m, p), analytic.

        params (k, 6): z, the blue and red line's EW (observed A), sigma km/s,
        and the continuum correction c0 + c1 (wave - wave_ref) / wave_ref, of
        the doublet `lines` (rest A); (k, 7): the same with the red line's
        sigma over the blue one's after sigma.
        """
        n_line = params.shape[1] - 2
        z_abs, ew1, ew2, sigma = (params[:, j:j + 1] for j in range(4))
        width_ratio = params[:, 4:5] if n_line == 5 else None
        c0, c1 = params[:, n_line:n_line + 1], params[:, n_line + 1:]
        depth, gradient = doublet_profile_gradient(z_abs, ew1, ew2, sigma, self.wave_lo, self.wave_hi, lines,
                                                   width_ratio)
        slope = (self.wave - self.wave_ref) / self.wave_ref
        scale = self.continuum * (c0 + c1 * slope)
        residuals = (self.flux - scale * (1.0 - depth)) * self.sqrt_ivar
        jac = np.empty(depth.shape + (n_line + 2,))
        jac[..., :n_line] = (scale * self.sqrt_ivar)[..., None] * gradient
        jac[..., n_line] = -self.continuum * (1.0 - depth) * self.sqrt_ivar
        jac[..., n_line + 1] = jac[..., n_line] * slope
        return residuals, jac


def _fit_regions(flux, ivar, continuum, rows, first_pixel, npix):
    """The _FitRegions of pixels first_pixel[k] .. + npix - 1 of spectrum rows[k]; outside the grid ignored."""
    columns = np.asarray(first_pixel)[:, None] + np.arange(npix)
    on_grid = (columns >= 0) & (columns < MGII_NPIX)
    columns = np.clip(columns, 0, MGII_NPIX - 1)
    rows = np.asarray(rows)[:, None]
    cont = continuum[rows, columns].astype(np.float64)
    good = on_grid & (ivar[rows, columns] > 0) & (cont > 0)
    wave = WAVE[columns]
    return _FitRegions(
        flux=flux[rows, columns].astype(np.float64),
        sqrt_ivar=np.where(good, np.sqrt(np.where(good, ivar[rows, columns], 0.0)), 0.0),
        continuum=cont, wave=wave, wave_lo=_EDGE_LO[columns], wave_hi=_EDGE_HI[columns],
        wave_ref=wave[:, npix // 2:npix // 2 + 1],
    )


def _first_fit_pixel(z_abs, blue_line):
    """First pixel of the fit region of a doublet whose blue line (rest A) lies at z_abs (k,); int (k,)."""
    centre = (np.log10(blue_line * (1.0 + np.asarray(z_abs, np.float64))) - _LOGLAM[0]) / MGII_DLOGLAM
    return np.floor(centre).astype(np.int64) - FIT_HALF_WIDTH_PIX


def fit_doublets(flux, ivar, continuum, rows, z_guess, ew_guess, max_iterations, lines=MGII_DOUBLET,
                 first_pixel=None):
    """Batched least-squares fit of one doublet (MgII unless `lines` says) near each z_guess[k] in spectrum rows[k].

    Levenberg-Marquardt with Marquardt scaling and an analytic Jacobian, at
    most max_iterations steps, every candidate at once; a candidate leaves
    the iteration once a step lowers its chi^2 by less than CONVERGED_DCHI2
    or its damping passes MAX_DAMPING. z is bound to +-3 pixels of z_guess.

    Parameters
    ----------
    flux, ivar, continuum : ndarray (n, 3841), on the MgII grid
    rows : int (k,), spectrum of each candidate
    z_guess : float (k,), absorber redshift to start from
    ew_guess : float (k,), starting observed EW of the blue line, A
    max_iterations : int
    lines : (blue, red) rest A of the doublet
    first_pixel : int (k,), first pixel of each fit region (None: FIT_HALF_WIDTH_PIX blue of the
        blue line at z_guess); every region spans FIT_REGION_PIX pixels

    Returns
    -------
    dict of (k,) float64 arrays: Z_ABS, Z_ABS_ERR, EW_2796, EW_2796_ERR,
    EW_2803, EW_2803_ERR (rest A; of the blue and red line), SNR_2796,
    SNR_2803, SNR_DOUBLET ((EW_2796 + EW_2803) over its error), COV_EW
    (k, 2, 2) (rest A^2), SIGMA_KMS, WIDTH_RATIO (1: both lines have
    SIGMA_KMS), CONTINUUM_SCALE and CONTINUUM_SLOPE (c0, c1 of the continuum
    correction), CHI2 (over the region) and FITTED (bool, False where the
    region has fewer than MIN_FIT_PIXELS good pixels).
    """
    z_guess = np.asarray(z_guess, np.float64)
    if first_pixel is None:
        first_pixel = _first_fit_pixel(z_guess, lines[0])
    regions = _fit_regions(flux, ivar, continuum, rows, first_pixel, FIT_REGION_PIX)
    return _fit_in_regions(regions, z_guess, ew_guess, max_iterations, lines)


def _fit_in_regions(regions, z_guess, ew_guess, max_iterations, lines, sigma_guess=SIGMA_GUESS_KMS,
                    width_ratio=None):
    """`fit_doublets` on the pixels of its _FitRegions (k of them); arguments and result as there, and:

    sigma_guess : float or (k,), starting line sigma, km/s
    width_ratio : None, both lines of one sigma; or (low, high), the red line's sigma over the blue one's
        is free between these bounds (starting at high), and SIGMA_KMS is the blue line's. Where it ends
        on a bound, the errors are those with it fixed there.
    """
    k = z_guess.size
    dz = 3 * MGII_DLOGLAM * np.log(10) * (1.0 + z_guess)
    ones = np.ones(k)
    ratio = [] if width_ratio is None else [(width_ratio[0] * ones, width_ratio[1] * ones)]
    lower = np.stack([z_guess - dz, -20 * ones, -20 * ones, SIGMA_BOUNDS_KMS[0] * ones]
                     + [low for low, _ in ratio] + [0.5 * ones, -ones], 1)
    upper = np.stack([z_guess + dz, 60 * ones, 60 * ones, SIGMA_BOUNDS_KMS[1] * ones]
                     + [high for _, high in ratio] + [1.5 * ones, ones], 1)
    ew_guess = np.asarray(ew_guess, np.float64) * ones
    params = np.clip(np.stack([z_guess, ew_guess, 0.7 * ew_guess, np.asarray(sigma_guess, np.float64) * ones]
                              + [high for _, high in ratio] + [ones, 0 * ones], 1), lower, upper)
    n_param = params.shape[1]
    residuals, jac = regions.evaluate(params, lines)
    chi2 = np.sum(residuals ** 2, axis=1)
    damping = np.full(k, 1e-3)
    active = np.arange(k)
    for _ in range(max_iterations):
        jac_active = jac[active]
        normal = np.matmul(jac_active.transpose(0, 2, 1), jac_active)
        gradient = np.matmul(jac_active.transpose(0, 2, 1), residuals[active][..., None])[..., 0]
        scale = np.maximum(np.einsum("kii->ki", normal), 1e-12)
        step = np.linalg.solve(normal + damping[active, None, None] * scale[:, :, None] * np.eye(n_param),
                               -gradient[..., None])[..., 0]
        trial = np.clip(params[active] + step, lower[active], upper[active])
        trial_residuals, trial_jac = regions.subset(active).evaluate(trial, lines)
        trial_chi2 = np.sum(trial_residuals ** 2, axis=1)
        better = trial_chi2 < chi2[active]
        converged = better & (chi2[active] - trial_chi2 < CONVERGED_DCHI2)
        damping[active] = np.where(better, damping[active] / 3, damping[active] * 8)
        moved = active[better]
        params[moved], residuals[moved], chi2[moved] = trial[better], trial_residuals[better], trial_chi2[better]
        jac[moved] = trial_jac[better]
        active = active[~converged & (damping[active] <= MAX_DAMPING)]
        if active.size == 0:
            break
    normal = np.matmul(jac.transpose(0, 2, 1), jac)
    if width_ratio is not None:
        pinned = np.isclose(params[:, 4], lower[:, 4]) | np.isclose(params[:, 4], upper[:, 4])
        normal[pinned, 4, :] = normal[pinned, :, 4] = 0.0
        normal[pinned, 4, 4] = 1.0
    covariance = np.linalg.pinv(normal)
    errors = np.sqrt(np.clip(np.einsum("kii->ki", covariance), 0, None))
    to_rest = 1.0 / (1.0 + params[:, 0])
    ew1_err, ew2_err = errors[:, 1] * to_rest, errors[:, 2] * to_rest
    sum_err = np.sqrt(np.clip(covariance[:, 1, 1] + covariance[:, 2, 2] + 2 * covariance[:, 1, 2], 0, None)) * to_rest
    with np.errstate(divide="ignore", invalid="ignore"):
        snr1 = np.where(ew1_err > 0, params[:, 1] * to_rest / ew1_err, 0.0)
        snr2 = np.where(ew2_err > 0, params[:, 2] * to_rest / ew2_err, 0.0)
        snr_doublet = np.where(sum_err > 0, (params[:, 1] + params[:, 2]) * to_rest / sum_err, 0.0)
    return {
        "Z_ABS": params[:, 0], "Z_ABS_ERR": errors[:, 0],
        "EW_2796": params[:, 1] * to_rest, "EW_2796_ERR": ew1_err,
        "EW_2803": params[:, 2] * to_rest, "EW_2803_ERR": ew2_err,
        "SNR_2796": snr1, "SNR_2803": snr2, "SNR_DOUBLET": snr_doublet,
        "COV_EW": covariance[:, 1:3, 1:3] * to_rest[:, None, None] ** 2,
        "SIGMA_KMS": params[:, 3], "WIDTH_RATIO": params[:, 4] if width_ratio is not None else ones,
        "CONTINUUM_SCALE": params[:, -2], "CONTINUUM_SLOPE": params[:, -1], "CHI2": chi2,
        "FITTED": np.sum(regions.sqrt_ivar > 0, axis=1) >= MIN_FIT_PIXELS,
    }


def doublet_ew_at(flux, ivar, continuum, rows, z_abs, sigma_kms):
    """Rest EWs of an MgII doublet of known z_abs and line sigma in spectra rows: a linear least-squares fit.

    With the position and width fixed, the model continuum * (1 - EW_2796 a_2796 - EW_2803 a_2803) (a: each
    line's pixel-averaged profile per unit observed EW, `doublet_profile`) is linear in the two EWs, so the
    fit is exact and its errors are those of the pixels. It measures a doublet found in one spectrum of an
    object in the object's other spectra (forced photometry, no search). The continuum is taken as known;
    pass ivar with its error (`with_continuum_error`).

    Parameters
    ----------
    flux, ivar, continuum : ndarray (n, 3841), on the MgII grid
    rows : int (k,), spectrum of each measurement
    z_abs, sigma_kms : float (k,), the doublet's redshift and line sigma (km/s)

    Returns
    -------
    ew : (k, 2) rest A, EW_2796 and EW_2803 (NaN where fewer than MIN_FIT_PIXELS good pixels)
    covariance : (k, 2, 2) rest A^2
    """
    z_abs = np.asarray(z_abs, np.float64)
    regions = _fit_regions(flux, ivar, continuum, rows, _first_fit_pixel(z_abs, MGII_2796), FIT_REGION_PIX)
    sigma = np.asarray(sigma_kms, np.float64)[:, None]
    profiles = np.stack([doublet_profile(z_abs[:, None], 1.0, 0.0, sigma, regions.wave_lo, regions.wave_hi),
                         doublet_profile(z_abs[:, None], 0.0, 1.0, sigma, regions.wave_lo, regions.wave_hi)], axis=2)
    design = (regions.continuum * regions.sqrt_ivar)[..., None] * profiles
    data = (regions.continuum - regions.flux) * regions.sqrt_ivar
    covariance = np.linalg.pinv(np.matmul(design.transpose(0, 2, 1), design))
    ew = np.matmul(covariance, np.matmul(design.transpose(0, 2, 1), data[..., None]))[..., 0]
    to_rest = 1.0 / (1.0 + z_abs)
    fitted = np.sum(regions.sqrt_ivar > 0, axis=1) >= MIN_FIT_PIXELS
    ew = np.where(fitted[:, None], ew * to_rest[:, None], np.nan)
    return ew, covariance * to_rest[:, None, None] ** 2


def fit_doublet(flux, ivar, continuum, z_guess, ew_guess=1.0, max_iterations=DoubletCriteria.max_iterations):
    """`fit_doublets` for one spectrum (3841,) and one z_guess: dict of scalars, None when not fitted."""
    fits = fit_doublets(np.asarray(flux)[None], np.asarray(ivar)[None], np.asarray(continuum)[None],
                        [0], [z_guess], [ew_guess], max_iterations)
    if not fits["FITTED"][0]:
        return None
    return {name: value[0] for name, value in fits.items()}


def accepted_doublets(fits, criteria):
    """Which fits (dict of (k,) arrays from fit_doublets) are credible MgII doublets; bool (k,).

    SNR_DOUBLET >= min_snr_doublet, SNR_2796 >= min_snr_2796,
    SNR_2803 >= min_snr_2803, the line width in
    sigma_range_kms, and r_min <= EW_2796/EW_2803 <= r_max within
    ratio_tolerance sigma, tested linearly (EW_2796 - r_max EW_2803 <=
    t sigma and r_min EW_2803 - EW_2796 <= t sigma) so that a weak EW_2803
    gives no division by ~0.
    """
    ok = fits["FITTED"] & (fits["SNR_DOUBLET"] >= criteria.min_snr_doublet)
    ok &= (fits["SNR_2796"] >= criteria.min_snr_2796) & (fits["SNR_2803"] >= criteria.min_snr_2803)
    ok &= (fits["SIGMA_KMS"] >= criteria.sigma_range_kms[0]) & (fits["SIGMA_KMS"] <= criteria.sigma_range_kms[1])
    covariance = fits["COV_EW"]
    r_min, r_max = criteria.ratio_range
    for a, b in ((1.0, -r_max), (-1.0, r_min)):
        value = a * fits["EW_2796"] + b * fits["EW_2803"]
        variance = a * a * covariance[:, 0, 0] + b * b * covariance[:, 1, 1] + 2 * a * b * covariance[:, 0, 1]
        ok &= value <= criteria.ratio_tolerance * np.sqrt(np.clip(variance, 0, None))
    return ok


def accepted_blue_of_civ(fits, criteria):
    """Which fits (dict of (k,) arrays from fit_doublets) pass the further criteria between Lyman-alpha and
    CIV emission: SNR_2796 and SNR_2803 of at least criteria.lya_civ_min_snr and SIGMA_KMS of at most
    criteria.lya_civ_max_sigma_kms; bool (k,)."""
    min_2796, min_2803 = criteria.lya_civ_min_snr
    return ((fits["SNR_2796"] >= min_2796) & (fits["SNR_2803"] >= min_2803)
            & (fits["SIGMA_KMS"] <= criteria.lya_civ_max_sigma_kms))


def _lines_of(z_abs):
    """Observed wavelengths (A) of the lines of MgII absorbers at z_abs (m,): (m, 2 + len(COMPANION_LINES))."""
    rest = np.array((MGII_2796, MGII_2803) + COMPANION_LINES)
    return np.multiply.outer(1.0 + np.asarray(z_abs, np.float64), rest)


def _coincides(z_candidate, z_found, tolerance_kms):
    """True when the 2796 or 2803 line at z_candidate lies within tolerance_kms of a line of any z_found."""
    if len(z_found) == 0:
        return False
    candidate = _lines_of([z_candidate])[0, :2]
    others = _lines_of(z_found).ravel()
    return bool(np.any(np.abs(np.log(candidate[:, None] / others[None])) * SPEED_OF_LIGHT_KMS < tolerance_kms))


@dataclass
class Candidates:
    """The doublet finder's fitted candidates (`find_candidates`), k of them over n spectra.

    rows : int (k,), spectrum of each; fits : `fit_doublets`' dict of (k,) arrays; credible : bool (k,),
    which pass the criteria and the vetoes; lya_civ : bool (k,), blue of the CIV gap's red end;
    features : (number credible, nfeature) vetter input of the credible ones (None unless asked for);
    path : PATH_DTYPE (n,), the path searched.
    """

    rows: np.ndarray
    fits: dict
    credible: np.ndarray
    lya_civ: np.ndarray
    features: np.ndarray | None
    path: np.ndarray


def search_doublets(flux, ivar, wave_min, wave_max, continuum, criteria, gap=None, z_qso=None, vetter=None):
    """All MgII doublets with both lines inside [wave_min[i], wave_max[i]] (observed A) of each spectrum,
    and outside its gap, and the path searched.

    Pixels blue of wave_min (the Lyman-alpha forest, when the window starts
    there) are left out of the system template's FeII lines and of the
    vetoes. Every S/N and error counts the continuum's own error
    (`with_continuum_error`).
    A candidate is dropped when a CIV template explains its lines better
    (`_civ_better`; and, blue of the gap's red end, where CIV absorbers lie,
    a CIV doublet fit: `civ_fits_better`, and the stricter criteria of
    `accepted_blue_of_civ`) or a line of another ion's system sits on one
    of them (`metal_line_veto`). A vetter (`qsopipe.stages.mgii_vetter`)
    then judges each candidate that passed all of these. The absorbers
    reported are refitted, each line with its own width and without the
    lines of their neighbours (`refit_absorbers`).

    Parameters
    ----------
    flux, ivar, continuum : ndarray (n, 3841), on the MgII grid
    wave_min, wave_max : float (n,), search windows (qsopipe.stages.mgii.search_path)
    criteria : DoubletCriteria
    gap : (gap_min, gap_max) float (n,) each, observed A, where neither line may lie; None: no gap (and
        no CIV fit)
    z_qso : float (n,), emission redshifts: another ion's system of a veto lies at most PROXIMATE_KMS red
        of it (`system_z_max`); None: at any redshift
    vetter : qsopipe.stages.mgii_vetter.Vetter or None (the criteria alone decide)

    Returns
    -------
    absorbers : list of n numpy structured arrays (ABSORBER_DTYPE), one row per absorber, by Z_ABS
    path : structured array (n,) PATH_DTYPE; over the pixels where the doublet filter has data
        and both lines lie in the window (ZMIN = ZMAX = EW_LIMIT = -1 and DZ = 0 where there is none)
    """
    candidates = find_candidates(flux, ivar, wave_min, wave_max, continuum, criteria, gap, z_qso,
                                 with_features=vetter is not None)
    rows, fits, ok = candidates.rows, candidates.fits, candidates.credible.copy()
    if vetter is not None and ok.any():
        ok[ok] = vetter.accepts(candidates.features, candidates.lya_civ[ok])
    accepted = {}
    for index in np.flatnonzero(ok)[np.lexsort((-fits["SNR_2796"][ok], rows[ok]))]:
        found = accepted.setdefault(rows[index], [])
        if not _coincides(fits["Z_ABS"][index], [fits["Z_ABS"][i] for i in found], criteria.coincidence_kms):
            found.append(index)
    chosen = np.array([index for found in accepted.values() for index in found], np.int64)
    chosen = chosen[np.lexsort((fits["Z_ABS"][chosen], rows[chosen]))]
    refit = refit_absorbers(flux, ivar, continuum, rows[chosen],
                            {name: values[chosen] for name, values in fits.items()})
    table = np.zeros(chosen.size, ABSORBER_DTYPE)
    for name, _ in ABSORBER_DTYPE:
        table[name] = refit[name]
    stops = np.cumsum(np.bincount(rows[chosen], minlength=len(np.atleast_2d(flux))))
    return [table[start:stop] for start, stop in zip(np.concatenate([[0], stops[:-1]]), stops)], candidates.path


def refit_absorbers(flux, ivar, continuum, rows, fits):
    """The accepted absorbers' fits again, each line with its own width and without its neighbours' lines.

    The search's fit gives both lines one sigma, which the criteria judge.
    In a blend of saturated components the stronger 2796 line can be the
    broader (its optical depth is twice 2803's), and one sigma then moves EW
    from 2796 into 2803; the refit lets the red line's sigma be
    WIDTH_RATIO_RANGE times the blue one's (models/weights/mgii.md measures
    what this gains and costs). A fit's region (FIT_REGION_PIX pixels) can also hold a
    line of another absorber of the same spectrum (its MgII doublet or a
    companion line: COMPANION_LINES), which the model absorbs by lowering
    the continuum; the refit leaves out the pixels within
    NEIGHBOUR_MASK_SIGMA line sigmas (plus half a pixel) of those lines,
    except where they lie as close to one of its own two lines.

    Parameters
    ----------
    flux, ivar, continuum : ndarray (n, 3841), on the MgII grid (the fits add the continuum error to ivar,
        `with_continuum_error`, as the search does)
    rows : int (k,), spectrum of each absorber; fits : `fit_doublets`' dict of (k,) arrays, the accepted ones

    Returns
    -------
    dict of (k,) arrays as `fits`, from the refit (REFIT_ITERATIONS steps at most) where it had enough pixels
    (its z stays within 3 pixels of the first fit's, as in every fit); an absorber without a neighbour's
    line in its region, whose chi^2 a narrower 2803 line would not lower (`_narrower_2803_fits_better`),
    keeps its first fit, which the refit would return
    """
    flux, ivar = np.atleast_2d(flux), np.atleast_2d(ivar)
    rows = np.asarray(rows)
    if rows.size == 0:
        return fits
    z_abs, sigma = fits["Z_ABS"], fits["SIGMA_KMS"]
    first_pixel = _first_fit_pixel(z_abs, MGII_2796)
    lines = _lines_of(z_abs)
    half_width = NEIGHBOUR_MASK_SIGMA * sigma[:, None] / SPEED_OF_LIGHT_KMS * lines
    region_lo = WAVE[np.clip(first_pixel, 0, MGII_NPIX - 1)]
    region_hi = WAVE[np.clip(first_pixel + FIT_REGION_PIX - 1, 0, MGII_NPIX - 1)]
    fitted, other = _same_spectrum_pairs(rows)
    touched = ((lines[other] + half_width[other] > region_lo[fitted, None])
               & (lines[other] - half_width[other] < region_hi[fitted, None]))
    regions = _fit_regions(flux, ivar, continuum, rows, first_pixel, FIT_REGION_PIX)
    sqrt_ivar = np.sqrt(with_continuum_error(regions.sqrt_ivar ** 2, regions.continuum))
    beside = np.unique(fitted[touched.any(axis=1)])
    for index in beside:
        pixels = np.clip(first_pixel[index] + np.arange(FIT_REGION_PIX), 0, MGII_NPIX - 1)
        pair, line = np.nonzero(touched & (fitted == index)[:, None])
        mask = _near_lines(pixels, lines[other[pair], line], half_width[other[pair], line])
        mask &= ~_near_lines(pixels, lines[index, :2], half_width[index, :2])
        sqrt_ivar[index, mask] = 0.0
    regions = replace(regions, sqrt_ivar=sqrt_ivar)
    which = np.union1d(beside, np.flatnonzero(_narrower_2803_fits_better(regions, fits)))
    result = {name: values.copy() for name, values in fits.items()}
    if which.size == 0:
        return result
    refit = _fit_in_regions(regions.subset(which), z_abs[which], fits["EW_2796"][which] * (1 + z_abs[which]),
                            REFIT_ITERATIONS, MGII_DOUBLET, sigma[which], WIDTH_RATIO_RANGE)
    good = refit["FITTED"]
    for name in result:
        result[name][which[good]] = refit[name][good]
    return result


def _narrower_2803_fits_better(regions, fits):
    """Where a 2803 line narrower than 2796 would lower the chi^2 of the one-sigma fits (k,) in their regions:
    the chi^2 gradient by the width ratio, at 1, is positive; bool (k,)."""
    params = np.stack([fits["Z_ABS"], fits["EW_2796"] * (1 + fits["Z_ABS"]), fits["EW_2803"] * (1 + fits["Z_ABS"]),
                       fits["SIGMA_KMS"], np.ones(fits["Z_ABS"].size), fits["CONTINUUM_SCALE"],
                       fits["CONTINUUM_SLOPE"]], 1)
    residuals, jac = regions.evaluate(params, MGII_DOUBLET)
    return np.sum(residuals * jac[..., 4], axis=1) > 0


def _same_spectrum_pairs(rows):
    """Every ordered pair (i, j), i != j, of entries with rows[i] == rows[j]: two int arrays."""
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    starts = np.searchsorted(ordered, ordered, side="left")
    sizes = np.searchsorted(ordered, ordered, side="right") - starts
    first = np.repeat(np.arange(rows.size), sizes)
    second = np.repeat(starts, sizes) + np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    distinct = first != second
    return order[first[distinct]], order[second[distinct]]


def _near_lines(pixels, observed, half_width):
    """Which of `pixels` (int (m,)) lie within half_width plus half a pixel of any of the lines `observed`
    (A; half_width A, same shape); bool (m,)."""
    distance = np.abs(WAVE[pixels, None] - observed[None])
    return np.any(distance < half_width[None] + 0.5 * PIXEL_WIDTH[pixels, None], axis=1)


def find_candidates(flux, ivar, wave_min, wave_max, continuum, criteria, gap=None, z_qso=None, with_features=False):
    """`search_doublets`' candidates, fitted and judged by the criteria and vetoes (Candidates).

    Arguments as for `search_doublets`; with `with_features`, the credible
    candidates' vetter features are computed (`vetting_features`).
    """
    flux = np.atleast_2d(flux)
    pixel_ivar = np.atleast_2d(ivar)
    ivar = with_continuum_error(pixel_ivar, continuum)
    wave_min = np.asarray(wave_min, np.float64)
    positive = continuum > 0
    safe = np.where(positive, continuum, 1.0)
    depth = np.where(positive, 1.0 - flux / safe, 0.0)
    weight = np.where(positive & (ivar > 0), ivar * safe ** 2, 0.0)
    snr, amplitude, amplitude_error = doublet_matched_filter(depth, weight)
    weight = np.where(WAVE >= wave_min[:, None], weight, 0.0)
    inside = (WAVE >= wave_min[:, None]) & (WAVE * (MGII_2803 / MGII_2796) <= np.asarray(wave_max)[:, None])
    if gap is not None:
        gap_min, gap_max = (np.asarray(edge, np.float64)[:, None] for edge in gap)
        inside &= (WAVE * (MGII_2803 / MGII_2796) <= gap_min) | (WAVE >= gap_max)
    path = searched_path(inside & np.isfinite(amplitude_error), amplitude_error)
    snr = np.where(inside, snr, 0.0)
    rows, peaks = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for row in np.flatnonzero(snr.max(axis=1, initial=0.0) >= criteria.candidate_snr):
        found, _ = find_peaks(snr[row], height=criteria.candidate_snr, distance=MIN_PEAK_DISTANCE_PIX)
        rows.append(np.full(found.size, row))
        peaks.append(found)
    rows, peaks = np.concatenate(rows).astype(np.int64), np.concatenate(peaks).astype(np.int64)
    detected = system_snr_at(depth, weight, rows, peaks[:, None])[:, 0] >= criteria.detect_snr
    rows, peaks = rows[detected], peaks[detected]
    ew_guess = np.maximum(amplitude[rows, peaks], 0.05) * np.sqrt(2 * np.pi) * FILTER_SIGMA_PIX * PIXEL_WIDTH[peaks]
    first_pixel = peaks - FIT_HALF_WIDTH_PIX
    fits = fit_doublets(flux, ivar, continuum, rows, WAVE[peaks] / MGII_2796 - 1.0, ew_guess, criteria.max_iterations,
                        first_pixel=first_pixel)
    ok = accepted_doublets(fits, criteria) & ~_civ_better(snr, depth, weight, rows, peaks)
    blue = np.zeros(rows.size, bool) if gap is None else WAVE[peaks] < gap_max[rows, 0]
    ok &= ~blue | accepted_blue_of_civ(fits, criteria)
    test = np.flatnonzero(ok & blue)
    if test.size:
        civ = civ_fits(flux, ivar, continuum, rows[test], peaks[test], first_pixel[test], fits["EW_2796"][test],
                       criteria.max_iterations)
        ok[test] = ~civ_fits_better(civ, fits["CHI2"][test])
    z_max = np.full(rows.size, np.inf) if z_qso is None else system_z_max(np.asarray(z_qso, np.float64)[rows])
    ok[ok] = ~metal_line_veto(depth, weight, rows[ok], fits["Z_ABS"][ok], criteria.veto_snr, z_max[ok])
    features = None
    if with_features:
        test = np.flatnonzero(ok)
        features = vetting_features(flux, ivar, continuum, depth, weight, pixel_ivar, rows[test], peaks[test],
                                    first_pixel[test], {name: values[test] for name, values in fits.items()},
                                    snr[rows[test], peaks[test]], blue[test])
    return Candidates(rows, fits, ok, blue, features, path)


def civ_fits(flux, ivar, continuum, rows, peaks, first_pixel, ew_2796, max_iterations):
    """A CIV 1548/1550 doublet fitted over each MgII candidate's own pixels (`fit_doublets` with CIV_DOUBLET).

    rows, peaks, first_pixel : int (k,), each candidate's spectrum, 2796
    pixel and fit region (as given to its MgII fit); ew_2796 (rest A) :
    float (k,), from that fit. The CIV fit starts with its pair centred on
    the MgII pair (1548 at (11.1 - 7.2) / 2 pixels red of the 2796 pixel)
    and the MgII fit's EW; both fits have the same six free parameters over
    the same pixels, so the lower chi^2 is the better model.
    """
    offset = (DOUBLET_SEPARATION_PIX - CIV_SEPARATION_PIX) / 2
    z_civ = 10.0 ** (_LOGLAM[peaks] + offset * MGII_DLOGLAM) / CIV_1548 - 1.0
    return fit_doublets(flux, ivar, continuum, rows, z_civ, np.asarray(ew_2796) * (WAVE[peaks] / MGII_2796),
                        max_iterations, lines=CIV_DOUBLET, first_pixel=first_pixel)


def civ_fits_better(civ, chi2_mgii):
    """True where the CIV fit (`civ_fits`) beats the MgII fit's chi2_mgii (k,) with two positive lines; bool (k,).

    A broad CIV doublet, whose fitted MgII width can absorb the 4-pixel
    difference in separation, fails here.
    """
    return civ["FITTED"] & (civ["CHI2"] < chi2_mgii) & (civ["EW_2796"] > 0) & (civ["EW_2803"] > 0)


def vetting_features(flux, ivar, continuum, depth, weight, pixel_ivar, rows, peaks, first_pixel, fits, filter_snr,
                     lya_civ):
    """The vetter's input for k candidates (`qsopipe.stages.mgii_vetter.candidate_features`), (k, nfeature).

    flux, ivar (with the continuum error), continuum, depth, weight, pixel_ivar (the pixels' own, without
    the continuum error) : (n, 3841), as in `search_doublets`; rows, peaks, first_pixel : int (k,);
    fits : their MgII fits; filter_snr : (k,); lya_civ : bool (k,).
    """
    if rows.size == 0:
        return np.zeros((0, len(FEATURES)))
    civ = civ_fits(flux, ivar, continuum, rows, peaks, first_pixel, fits["EW_2796"], VETTER_CIV_ITERATIONS)
    civ_chi2 = np.where(civ["FITTED"], civ["CHI2"], np.inf)
    offsets, template = line_template(((0.0, 1.0),))
    columns = np.stack([peaks, np.round(peaks + DOUBLET_SEPARATION_PIX).astype(np.int64)], axis=1)
    line_snr = template_snr_at(depth, weight, rows, columns, offsets, template)
    near = np.clip(peaks[:, None] + np.arange(-CONTINUUM_SNR_HALF_WIDTH_PIX, CONTINUUM_SNR_HALF_WIDTH_PIX), 0,
                   depth.shape[1] - 1)
    local_snr = np.median(continuum[rows[:, None], near] * np.sqrt(np.clip(pixel_ivar[rows[:, None], near], 0, None)),
                          axis=1)
    return candidate_features(fits, filter_snr, civ_chi2, line_snr, local_snr, lya_civ)


def searched_path(usable, amplitude_error):
    """The redshift path of each spectrum's usable pixels and its median detection limit.

    Parameters
    ----------
    usable : bool (n, 3841), pixels where a 2796 line could have been found
    amplitude_error : float (n, 3841), the doublet filter's depth error there

    Returns
    -------
    structured array (n,) PATH_DTYPE: ZMIN, ZMAX of the first and last
    usable pixel, DZ the sum of the usable pixels' widths in absorber
    redshift, EW_LIMIT the median over them of EW_LIMIT_SIGMA times the
    filter's rest EW_2796 error (A); -1 (DZ 0) without a usable pixel.
    """
    z_pixel = WAVE / MGII_2796 - 1.0
    dz_pixel = (1.0 + z_pixel) * np.log(10.0) * MGII_DLOGLAM
    rest_ew_error = (np.sqrt(2 * np.pi) * FILTER_SIGMA_PIX * PIXEL_WIDTH / (1.0 + z_pixel)) * amplitude_error
    path = np.zeros(len(usable), PATH_DTYPE)
    path["ZMIN"] = path["ZMAX"] = path["EW_LIMIT"] = -1.0
    has = usable.any(axis=1)
    path["ZMIN"][has] = z_pixel[np.argmax(usable[has], axis=1)]
    path["ZMAX"][has] = z_pixel[usable.shape[1] - 1 - np.argmax(usable[has][:, ::-1], axis=1)]
    path["DZ"] = usable @ dz_pixel
    limits = np.sort(np.where(usable[has], EW_LIMIT_SIGMA * rest_ew_error[has], np.inf), axis=1)
    count = usable[has].sum(axis=1)
    rows = np.arange(count.size)
    path["EW_LIMIT"][has] = 0.5 * (limits[rows, (count - 1) // 2] + limits[rows, count // 2])
    return path


def system_z_max(z_qso):
    """Highest redshift of an absorber on sightlines at z_qso (array): PROXIMATE_KMS red of the quasar
    (associated absorbers in front of an outflow or infall, and the quasar's redshift error); same shape."""
    return (1.0 + np.asarray(z_qso, np.float64)) * (1.0 + PROXIMATE_KMS / SPEED_OF_LIGHT_KMS) - 1.0


def metal_line_veto(depth, weight, rows, z_abs, veto_snr, z_max):
    """True where a line of another ion's absorber at another redshift sits on a candidate's 2796 or 2803 line.

    Each candidate line is taken in turn as one line of a SiIV doublet
    (`_partner_veto`) and as a line of a CIV system (`_civ_system_veto`).
    A test whose template lines come within VETO_EXCLUSION_PIX +
    VETO_REACH_PIX of a line of the candidate's own system, or of another
    candidate's on the same spectrum, or that falls off the grid, tests
    nothing (`_civ_better` covers CIV on the doublet itself), nor does one
    whose system would lie beyond z_max, behind the quasar; pixels where
    weight is 0 (the forest) add nothing.

    Parameters
    ----------
    depth, weight : ndarray (n, npix), as for doublet_matched_filter
    rows : int (k,), spectrum of each candidate; z_abs : float (k,)
    veto_snr : float
    z_max : float (k,), the highest redshift of an absorber on each candidate's sightline (`system_z_max`)

    Returns
    -------
    bool (k,)
    """
    rows = np.asarray(rows, np.int64)
    z_abs = np.asarray(z_abs, np.float64)
    own = _system_lines_by_spectrum(rows, z_abs)
    single = line_template(((0.0, 1.0),))
    vetoed = np.zeros(z_abs.size, bool)
    for line in (MGII_2796, MGII_2803):
        observed = line * (1 + z_abs)
        _, line_depth = _line_filter_at(depth, weight, rows, _pixel(observed), single)
        for doublet in ION_DOUBLETS:
            vetoed |= _partner_veto(depth, weight, rows, observed, line_depth, doublet, own, veto_snr, z_max)
        for ion in CIV_SYSTEM_LINES:
            vetoed |= _civ_system_veto(depth, weight, rows, observed / ion - 1.0, line_depth, own, veto_snr, z_max)
    return vetoed


def _partner_veto(depth, weight, rows, observed, line_depth, doublet, own, veto_snr, z_max):
    """The candidate line at observed (A, (k,)) of depth line_depth (k,), taken as the first line of the
    doublet (line, partner) in rest A: True where the partner line is found and the system's CIV is not
    missing (`_civ_missing`); bool (k,).

    The partner is found when its single-line S/N reaches veto_snr and its
    depth is what the doublet asks, at least half the candidate line's when
    the partner is the weaker (redder) line, at least all of it when it is
    the stronger (within two sigma). own: as for `_test_at`.
    """
    ion, partner = doublet
    z_system = observed / ion - 1.0
    usable, snr, found_depth = _test_at(depth, weight, rows, _pixel(observed * partner / ion), (0.0,),
                                        line_template(((0.0, 1.0),)), own, z_system <= z_max)
    needed = (1.0 if partner < ion else 0.5) * line_depth[usable]
    error = found_depth / np.where(snr != 0, snr, np.inf)
    found = np.zeros(rows.size, bool)
    found[usable] = (snr >= veto_snr) & (found_depth + 2 * error >= needed)
    found[found] &= ~_civ_missing(depth, weight, rows[found], z_system[found], own[found], veto_snr)
    return found


def _civ_system_veto(depth, weight, rows, z_system, line_depth, own, veto_snr, z_max):
    """The candidate line of depth line_depth (k,) taken as a line of a CIV system at z_system (k,): True
    where the CIV doublet there reaches S/N veto_snr and its 1548 line is at least as deep as the candidate
    line (CIV is the system's strongest line), within two sigma; bool (k,). own: as for `_test_at`."""
    usable, snr, found_depth = _test_at(depth, weight, rows, _pixel(CIV_1548 * (1 + z_system)),
                                        (0.0, CIV_SEPARATION_PIX), _civ_template(), own, z_system <= z_max)
    error = found_depth / np.where(snr != 0, snr, np.inf)
    vetoed = np.zeros(rows.size, bool)
    vetoed[usable] = (snr >= veto_snr) & (found_depth + 2 * error >= line_depth[usable])
    return vetoed


def _civ_missing(depth, weight, rows, z_system, own, veto_snr):
    """True where the CIV doublet of a system at z_system (k,) could be seen but is not: its template on
    pixels with data (MIN_TEMPLATE_COVERAGE), clear of the lines in own (as for `_test_at`), and its S/N
    below veto_snr; bool (k,).

    A SiIV absorber shows CIV as strong or stronger (carbon is about ten
    times as abundant as silicon, and CIV is the dominant ion in the gas
    that holds SiIV), so a SiIV doublet without CIV is a chance pair of
    unrelated lines.
    """
    position = _pixel(CIV_1548 * (1 + z_system))
    usable, snr, _ = _test_at(depth, weight, rows, position, (0.0, CIV_SEPARATION_PIX), _civ_template(), own,
                              np.ones(rows.size, bool))
    missing = np.zeros(rows.size, bool)
    missing[usable] = _covered_at(weight, rows[usable], position[usable], _civ_template()) & (snr < veto_snr)
    return missing


def _covered_at(weight, rows, position, template):
    """Whether pixels with weight > 0 hold MIN_TEMPLATE_COVERAGE of the template's (offsets, weights) sum
    of squares with its origin at pixel round(position[k]) of spectrum rows[k]; bool (k,)."""
    offsets, weights = template
    pixels = np.round(position).astype(np.int64)[:, None] + offsets
    on_grid = (pixels >= 0) & (pixels < weight.shape[1])
    has_data = on_grid & (weight[rows[:, None], np.clip(pixels, 0, weight.shape[1] - 1)] > 0)
    return _covered(np.sum(has_data * weights ** 2, axis=1), weights)


def _civ_template():
    """The CIV 1548/1550 doublet template of the vetoes: (offsets, weights), as `doublet_template`."""
    return doublet_template(CIV_SEPARATION_PIX, FILTER_SIGMA_PIX, CIV_FILTER_RATIO)


def _system_lines_by_spectrum(rows, z_abs):
    """Pixels of the lines (`_lines_of`) of every candidate on each candidate's spectrum; (k, m), NaN-padded."""
    lines = _pixel(_lines_of(z_abs))
    _, first, count = np.unique(rows, return_index=True, return_counts=True)
    order = np.argsort(rows, kind="stable")
    width = int(count.max(initial=1)) * lines.shape[1]
    table = np.full((rows.size, width), np.nan)
    for start, size in zip(np.searchsorted(rows[order], rows[order][first]), count):
        members = order[start:start + size]
        table[members, :size * lines.shape[1]] = lines[members].ravel()
    return table


def _line_filter_at(depth, weight, rows, position, template):
    """Largest single-template S/N within VETO_REACH_PIX of position[k] on spectrum rows[k], and the
    template's depth there; (k,), (k,). Positions off the grid give 0."""
    offsets, weights = template
    centre = np.clip(np.round(position).astype(np.int64), VETO_REACH_PIX, depth.shape[1] - VETO_REACH_PIX - 1)
    columns = centre[:, None] + np.arange(-VETO_REACH_PIX, VETO_REACH_PIX + 1)
    snr, amplitude = _template_at(depth, weight, rows, columns, offsets, weights)
    best = np.argmax(snr, axis=1)
    return snr[np.arange(rows.size), best], amplitude[np.arange(rows.size), best]


def _test_at(depth, weight, rows, position, line_offsets, template, own, allowed):
    """One veto test: which candidates it applies to (bool (k,)), and there the S/N and depth (`_line_filter_at`).

    It applies where allowed (bool (k,)), the template's lines (line_offsets,
    pixels from position) stay more than VETO_EXCLUSION_PIX + VETO_REACH_PIX
    from every pixel in own (k, m; NaN = none) and the test is on the grid.
    """
    template_lines = position[:, None] + np.asarray(line_offsets)
    distance = np.nanmin(np.abs(template_lines[:, :, None] - own[:, None, :]), axis=(1, 2))
    usable = allowed & (distance > VETO_EXCLUSION_PIX + VETO_REACH_PIX)
    usable &= (position >= VETO_REACH_PIX) & (position < depth.shape[1] - VETO_REACH_PIX - 1)
    snr, found_depth = _line_filter_at(depth, weight, rows[usable], position[usable], template)
    return usable, snr, found_depth


def _pixel(wave):
    """Fractional MgII-grid pixel of observed wavelengths (A); same shape."""
    return (np.log10(wave) - _LOGLAM[0]) / MGII_DLOGLAM


def _civ_better(snr, depth, weight, rows, peaks):
    """True where a CIV 1548/1550 template anywhere over a candidate's two lines beats its MgII S/N; bool (k,).

    The CIV template is tried with its 1548 line from one CIV separation
    blue of the 2796 pixel to the 2803 pixel, so that either MgII line
    sitting on either CIV line is covered.
    """
    offsets = np.arange(-int(np.ceil(CIV_SEPARATION_PIX)) - 1, int(np.ceil(DOUBLET_SEPARATION_PIX)) + 2)
    columns = np.clip(peaks[:, None] + offsets, 0, snr.shape[1] - 1)
    civ_snr = doublet_filter_snr_at(depth, weight, rows, columns, CIV_SEPARATION_PIX, FILTER_SIGMA_PIX,
                                    CIV_FILTER_RATIO)
    return civ_snr.max(axis=1) > snr[rows, peaks]


def find_absorbers(flux, ivar, wave_min, wave_max, criteria, continuum=None):
    """`search_doublets` for one spectrum (3841,): a structured array (ABSORBER_DTYPE), by Z_ABS.

    The continuum is `running_continuum` when not given.
    """
    flux = np.asarray(flux, np.float64)[None]
    ivar = np.asarray(ivar, np.float64)[None]
    continuum = running_continuum(flux, ivar) if continuum is None else np.asarray(continuum)[None]
    absorbers, _ = search_doublets(flux, ivar, [wave_min], [wave_max], continuum, criteria)
    return absorbers[0]
