"""chi2 of an eigenspectra + polynomial fit at a window of whole-pixel shifts, for many spectra at once.

Model of spectrum r at shift j (observed pixel i, rest pixel i - j):
    m(i) = sum_a c_a T_a(i - j) + sum_p c_p P_p(x_i),
T the template's eigenspectra, P_p Legendre polynomials in the observed pixel
(x from -1 to 1 over the grid). The normal equations need, at every shift,
sums over pixels of w T_a T_b, w P_p T_a and w f T_a: correlations of the
spectra's weighted products with the templates' products, i.e. one matrix
product per kernel family for a block of spectra (`window_correlations`);
the w P_p P_q and w f P_p sums do not depend on the shift. The small systems
are then solved batched. The correlations and the pixel sums are float32
(relative error ~1e-7 of each sum; the fit's redshifts move by < 10 km/s
against float64 on all but 7 of 3,837 simulated quasars, by < 100 km/s on
all, and no ZWARNING changes); the sum of w f^2, from which the fit's part
is subtracted, and the normal equations are float64.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.polynomial import legendre

#: Most spectra placed in one matrix product.
CHUNK_ROWS = 32
#: Largest spread of start offsets (pixels) within one matrix product: keeps the placed block narrow.
MAX_SPREAD = 1024
#: Ridge added to the unit-diagonal (Jacobi-scaled) normal matrix; keeps degenerate systems solvable.
RIDGE = 1e-10


def legendre_basis(npix, npoly):
    """Legendre polynomials P_0..P_{npoly-1} at x = -1..1 over npix pixels: float64 (npoly, npix)."""
    x = np.linspace(-1.0, 1.0, npix)
    return np.stack([legendre.legval(x, np.eye(npoly)[p]) for p in range(npoly)])


def window_correlations(signals, starts, kernels, nlag, spans=None):
    """Correlations of every signal with every kernel at nlag consecutive offsets.

    X[r, g, d] = sum_i signals[r, i] * kernels[g, i - starts[r] - d], with
    kernels zero outside [0, nk). The kernels' shifted copies are laid out
    once (`_toeplitz`, rows u = i - starts[r]); rows are sorted by start and
    cut into blocks of close starts, each placed on a common axis (cut to
    the pixels where some signal of the block is not 0) and multiplied once
    by its slice of that matrix.

    Parameters
    ----------
    signals : float (nrow, npix)
    starts : int (nrow,), kernel index of signal pixel 0 at offset d = 0, negated
    kernels : float (ng, nk)
    nlag : int
    spans : optional (lo, hi) int (nrow,) each, pixels outside [lo, hi) of a signal being 0 [default:
        from the signals, `used_spans`]

    Returns
    -------
    float64 (nrow, ng, nlag), from float32 products
    """
    nrow, npix = signals.shape
    out = np.empty((nrow, kernels.shape[0], nlag))
    if nrow == 0:
        return out
    first_u = -int(starts.max())
    toeplitz = _toeplitz(kernels, nlag, first_u, npix - int(starts.min()) - first_u)
    lo_pix, hi_pix = used_spans(signals) if spans is None else spans
    order = np.argsort(starts, kind="stable")
    for rows in _blocks(starts[order], order):
        last = int(starts[rows].max())
        offsets = last - starts[rows]
        lo, hi = int(np.min(offsets + lo_pix[rows])), int(np.max(offsets + hi_pix[rows]))
        placed = np.zeros((len(rows), max(hi - lo, 0)), np.float32)
        for k, row in enumerate(rows):
            begin, end = lo_pix[row], hi_pix[row]
            placed[k, offsets[k] + begin - lo:offsets[k] + end - lo] = signals[row, begin:end]
        first = -last - first_u + lo
        out[rows] = (placed @ toeplitz[first:first + hi - lo]).reshape(len(rows), -1, nlag)
    return out


def used_spans(signals):
    """(lo, hi) int (nrow,) each: the first pixel and one past the last where a signal is not 0 (0, 0 if none)."""
    used = signals != 0
    some = used.any(axis=1)
    return np.where(some, used.argmax(axis=1), 0), np.where(some, signals.shape[1] - used[:, ::-1].argmax(axis=1), 0)


def _blocks(sorted_starts, order):
    """Index arrays of rows (in `order`) with at most CHUNK_ROWS rows and MAX_SPREAD spread of starts."""
    first = 0
    for k in range(1, len(order) + 1):
        if k == len(order) or k - first == CHUNK_ROWS or sorted_starts[k] - sorted_starts[first] > MAX_SPREAD:
            yield order[first:k]
            first = k


def _toeplitz(kernels, nlag, first_u, length):
    """float32 T[u - first_u, g * nlag + d] = kernels[g, u - d] (0 outside [0, nk)), `length` rows u from first_u."""
    ng, nk = kernels.shape
    segment = np.zeros((ng, length + nlag - 1), np.float32)
    lo, hi = max(first_u - (nlag - 1), 0), min(first_u + length, nk)
    if hi > lo:
        segment[:, lo - first_u + nlag - 1:hi - first_u + nlag - 1] = kernels[:, lo:hi]
    shifted = sliding_window_view(segment, nlag, axis=1)[:, :, ::-1]
    return np.ascontiguousarray(shifted.transpose(1, 0, 2)).reshape(length, ng * nlag)


def product_kernels(basis):
    """Pairwise products T_a T_b (a <= b) of the eigenspectra: ((npair, nrest), list of (a, b))."""
    pairs = [(a, b) for a in range(basis.shape[0]) for b in range(a, basis.shape[0])]
    return np.stack([basis[a] * basis[b] for a, b in pairs]), pairs


def scan_chi2(flux, weight, starts, nlag, basis, npoly, products=None):
    """chi2 and coefficients of the template + polynomial fit at nlag consecutive shifts per spectrum.

    At offset d, spectrum r is compared with the template whose pixel
    index is i - starts[r] - d at observed pixel i (for a template with
    first rest pixel kmin at shift j: starts = j0 + kmin, j = j0 + d).

    Parameters
    ----------
    flux : float (nrow, npix), flux (any units)
    weight : float (nrow, npix), inverse variance, 0 on pixels left out
    starts : int (nrow,)
    nlag : int
    basis : float64 (nbasis, nk), eigenspectra, zero outside [0, nk)
    npoly : int, polynomial terms (>= 1)
    products : optional `product_kernels(basis)` computed once

    Returns
    -------
    chi2 : float64 (nrow, nlag), nan where the system could not be solved
    coeff : float64 (nrow, nlag, nbasis + npoly), template coefficients first
    """
    nbasis = basis.shape[0]
    kernels_tt, pairs = product_kernels(basis) if products is None else products
    flux, weight = np.asarray(flux, np.float32), np.asarray(weight, np.float32)
    poly = legendre_basis(flux.shape[1], npoly).astype(np.float32)
    weighted_flux = weight * flux
    spans = used_spans(weight)
    with_weight = window_correlations(weight, starts, np.concatenate([kernels_tt, basis]), nlag, spans)
    signals = np.concatenate([weight[:, None, :] * poly[None, 1:], weighted_flux[:, None, :]], axis=1)
    nsignal = signals.shape[1]
    with_basis = window_correlations(signals.reshape(-1, flux.shape[1]), np.repeat(starts, nsignal), basis, nlag,
                                     [np.repeat(span, nsignal) for span in spans]).reshape(len(flux), nsignal,
                                                                                             nbasis, nlag)
    nrow, size = len(flux), nbasis + npoly
    matrix = np.empty((nrow, nlag, size, size))
    for k, (a, b) in enumerate(pairs):
        matrix[:, :, a, b] = matrix[:, :, b, a] = with_weight[:, k]
    cross = np.concatenate([with_weight[:, None, len(pairs):], with_basis[:, :-1]], axis=1)
    matrix[:, :, :nbasis, nbasis:] = cross.transpose(0, 3, 2, 1)
    matrix[:, :, nbasis:, :nbasis] = cross.transpose(0, 3, 1, 2)
    matrix[:, :, nbasis:, nbasis:] = (weight @ (poly[:, None] * poly[None]).reshape(npoly * npoly, -1).T).reshape(
        nrow, 1, npoly, npoly)
    rhs = np.empty((nrow, nlag, size))
    rhs[:, :, :nbasis] = with_basis[:, -1].transpose(0, 2, 1)
    rhs[:, :, nbasis:] = (weighted_flux @ poly.T)[:, None]
    coeff = solve_normal_equations(matrix, rhs)
    chi2 = np.einsum("ri,ri->r", weighted_flux, flux, dtype=np.float64)[:, None] - np.einsum("rdk,rdk->rd", rhs, coeff)
    return chi2, coeff


def solve_normal_equations(matrix, rhs):
    """Solutions of stacked symmetric systems (..., n, n) x = (..., n), Jacobi-scaled with a tiny ridge.

    Rows whose matrix has a zero diagonal entry get that coefficient 0;
    nan in, nan out (never an exception).
    """
    diagonal = np.diagonal(matrix, axis1=-2, axis2=-1)
    scale = 1.0 / np.sqrt(np.where(diagonal > 0, diagonal, 1.0))
    scaled = matrix * scale[..., :, None] * scale[..., None, :]
    scaled += RIDGE * np.eye(matrix.shape[-1])
    finite = np.isfinite(np.einsum("...ij->...", scaled) + np.einsum("...i->...", rhs))
    solution = np.full(rhs.shape, np.nan)
    solution[finite] = np.linalg.solve(scaled[finite], (rhs * scale)[finite][..., None])[..., 0]
    return solution * scale
