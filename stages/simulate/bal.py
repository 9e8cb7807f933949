"""Broad absorption line (BAL) troughs and the balnicity index BI_CIV.

A BAL quasar carries 1-3 troughs in outflow velocity (km/s, positive = blueward
of the line) on CIV 1549, and the same troughs, shallower, on SiIV 1398, NV 1240
and Lya; LoBALs also absorb AlIII 1857 and MgII 2799. Trough profiles are
smooth-edged boxes in velocity. BI (Weymann et al. 1991) is computed from the
CIV trough transmission on a velocity grid.
"""

import numpy as np

from qsopipe.pipeline.constants import ALIII_EMISSION, CIV_EMISSION, LYA, MGII_EMISSION, NV, SPEED_OF_LIGHT_KMS

#: (ion rest wavelength A, depth relative to CIV, needs LoBAL); SiIV at 1398 A.
BAL_IONS = ((CIV_EMISSION, 1.0, False), (1398.0, 0.7, False), (NV, 0.8, False), (LYA, 0.5, False),
            (ALIII_EMISSION, 0.6, True), (MGII_EMISSION, 0.7, True))
#: Fraction of quasars with z > BAL_MIN_Z that carry troughs.
BAL_FRACTION = 0.11
BAL_MIN_Z = 1.6
LOBAL_FRACTION = 0.1
EDGE_KMS = 300.0
#: Velocity grid for the BI integral, km/s.
BI_VELOCITY = np.arange(0.0, 30001.0, 50.0)


def draw_troughs(n, rng, max_troughs=3):
    """Trough parameters for n BAL quasars.

    Returns dict: 'v_center', 'width', 'depth' (n, max_troughs) with width 0
    for absent troughs (km/s, km/s, 0-1) and 'lobal' (n,) bool. About one in
    six quasars gets only shallow or narrow troughs (mini-BALs, BI near 0).
    """
    count = rng.integers(1, max_troughs + 1, n)
    present = np.arange(max_troughs)[None, :] < count[:, None]
    v_center = rng.uniform(3000.0, 22000.0, (n, max_troughs))
    width = np.where(present, 10 ** rng.uniform(np.log10(1500.0), np.log10(12000.0), (n, max_troughs)), 0.0)
    depth = rng.uniform(0.3, 0.95, (n, max_troughs))
    mini = rng.random(n) < 0.17
    width[mini] = np.minimum(width[mini], rng.uniform(800.0, 2500.0, (mini.sum(), max_troughs)))
    depth[mini] *= 0.5
    return {"v_center": v_center, "width": width, "depth": depth, "lobal": rng.random(n) < LOBAL_FRACTION}


def trough_transmission(velocity, troughs):
    """Transmission (n, nv) of the troughs at outflow velocities `velocity` (nv,) km/s."""
    velocity = np.asarray(velocity, np.float64)
    return _transmission_rows(np.broadcast_to(velocity, (troughs["width"].shape[0], velocity.size)), troughs)


def balnicity_index(velocity, normalised_flux):
    """BI (km/s) of continuum-normalised flux (n, nv) on outflow velocities (nv,), Weymann et al. 1991.

    BI = integral over 3000-25000 km/s of (1 - f/0.9) C dv, where C = 1 only once
    f < 0.9 has held continuously for 2000 km/s.
    """
    velocity = np.asarray(velocity, np.float64)
    step = velocity[1] - velocity[0]
    deficit = 1.0 - normalised_flux / 0.9
    below = (deficit > 0) & (velocity >= 3000.0) & (velocity <= 25000.0)
    run = np.zeros(below.shape)
    for j in range(velocity.size):
        run[:, j] = np.where(below[:, j], (run[:, j - 1] if j else 0.0) + step, 0.0)
    counted = below & (run > 2000.0)
    return (deficit * counted).sum(axis=1) * step


def apply_troughs(flux, loglam, z_qso, troughs):
    """Multiply BAL troughs into quasar spectra in place.

    flux : (n, npix) spectra of the n BAL quasars; loglam : (npix,); z_qso : (n,).
    The trough transmission is tabulated on BI_VELOCITY and looked up per pixel.
    """
    wave = 10.0 ** loglam
    step = BI_VELOCITY[1] - BI_VELOCITY[0]
    for rest, scale, needs_lobal in BAL_IONS:
        rows = np.flatnonzero(troughs["lobal"]) if needs_lobal else np.arange(z_qso.size)
        if rows.size == 0:
            continue
        sub = {key: value[rows] for key, value in troughs.items()}
        sub["depth"] = np.clip(sub["depth"] * scale, 0.0, 0.98)
        table = np.concatenate([trough_transmission(BI_VELOCITY, sub), np.ones((rows.size, 1))], axis=1).astype(np.float32)
        ratio = (wave[None, :] / (rest * (1.0 + z_qso[rows]))[:, None]) ** 2
        velocity = SPEED_OF_LIGHT_KMS * (1.0 - ratio) / (1.0 + ratio)
        index = np.rint(velocity / step).astype(np.int64)
        index = np.where((index < 0) | (index >= BI_VELOCITY.size), BI_VELOCITY.size, index)
        flux[rows] *= np.take_along_axis(table, index, axis=1)
    return flux


def _transmission_rows(velocity, troughs):
    """Transmission (n, m) at per-row velocities (n, m)."""
    v = velocity[:, None, :]
    centre, half = troughs["v_center"][..., None], 0.5 * troughs["width"][..., None]
    inside = 0.5 * (np.tanh((v - centre + half) / EDGE_KMS) - np.tanh((v - centre - half) / EDGE_KMS))
    inside = np.where(troughs["width"][..., None] > 0, inside, 0.0)
    return np.prod(1.0 - troughs["depth"][..., None] * inside, axis=1)


def visual_flag(bi, has_troughs, rng):
    """BAL_FLAG_VI: BI > 0, with human disagreement near the margin.

    A BAL with small BI is missed with probability 0.3 exp(-BI / 400 km/s);
    a trough-bearing quasar with BI = 0 (mini-BAL) is flagged with probability 0.25.
    """
    bi = np.asarray(bi)
    miss = rng.random(bi.size) < 0.3 * np.exp(-bi / 400.0)
    spurious = rng.random(bi.size) < 0.25
    return np.where(bi > 0, ~miss, has_troughs & spurious).astype(np.int16)
