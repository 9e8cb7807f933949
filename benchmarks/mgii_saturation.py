"""EWs of saturated, multi-component MgII doublets: the finder's refit against its one-sigma fit.

Usage: python benchmarks/mgii_saturation.py --sim SIM_DIR --out DIR [--absorbers 1500] [--seed 1] [--no-feii]
           [--vetter VETTER.json|none]

The simulator's absorbers are Gaussians of one width. A real strong
absorber is a blend of saturated components: each line is exp(-tau(v)),
and 2796 has twice 2803's optical depth (f lambda ratio FLAMBDA_RATIO), so
its weak components and wings weigh more and it is the broader line. The
script injects such systems into the CNN windows of a simulator run's
quasar sightlines that carry no absorber of their own, one per sightline:
- 1 + Poisson(COMPONENTS_MEAN) components (strong systems in
  high-resolution spectra have about 10: Churchill et al. 2020), with
  velocities normal of a sigma uniform in SPREAD_KMS;
- central optical depths log-uniform in TAU_RANGE and Doppler b uniform
  in B_RANGE_KMS;
- FeII 2600, 2586, 2382, 2374 and 2344 in every component, their optical
  depths 2796's times their f lambda ratio (FEII_F_LAMBDA) times a column
  ratio N(FeII) / N(MgII) per system, log-uniform in FEII_COLUMN_RATIO
  (0 with --no-feii);
- the simulated spectrograph's line-spread function (`wavedisp`), averaged
  over the grid's pixels and multiplied into the observed flux.

The stage's whole-path finder (configured criteria and vetter unless
--vetter says otherwise, `measure_absorbers`) then searches them. DIR/mgii_saturation.json gives,
per true EW_2796 bin:
- the fraction found within |dz| < MATCH_DZ, of those at doublet S/N >= 5
  (`ew_noise`, as the hold-out counts, but for a Gaussian line of each
  system's own width: `effective_fwhm`);
- the median fitted / true EW_2796 and EW_2803 of all found, for the
  stage's values (the refit, `refit_absorbers`) and for the search's
  one-sigma fit, fitted again from the found z (`fit_doublets`).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from qsopipe.models.train_mgii import ew_noise, read_sim_sightlines
from qsopipe.pipeline.config import defaults
from qsopipe.pipeline.constants import (FEII_2344, FEII_2374, FEII_2382, FEII_2586, FEII_2600, MGII_2796, MGII_2803,
                                        SPEED_OF_LIGHT_KMS)
from qsopipe.pipeline.grids import MGII_DLOGLAM
from qsopipe.stages.mgii import doublet_finder, grid_wavelength, measure_absorbers, search_window
from qsopipe.stages.mgii_fit import fit_doublets, running_continuum, with_continuum_error
from qsopipe.stages.simulate.resolution import wavedisp

#: Oscillator strength times wavelength of MgII 2796 over 2803 (0.6155 x 2796.35 / 0.3058 x 2803.53).
FLAMBDA_RATIO = 2.008
#: Components per system beyond the first (Poisson mean), their velocity spread (km/s, uniform range of the
#: sigma), central 2796 optical depth (log-uniform range) and Doppler b (km/s, uniform range).
COMPONENTS_MEAN, SPREAD_KMS, TAU_RANGE, B_RANGE_KMS = 8.0, (20.0, 200.0), (0.03, 10.0), (3.0, 15.0)
#: FeII lines (rest A) and their f lambda over MgII 2796's (f: 0.239, 0.0717, 0.320, 0.0313, 0.114; 0.6155).
FEII_F_LAMBDA = ((FEII_2600, 0.361), (FEII_2586, 0.108), (FEII_2382, 0.443), (FEII_2374, 0.043),
                 (FEII_2344, 0.155))
#: Range (log-uniform) of a system's N(FeII) / N(MgII): depleted to about solar Fe / Mg.
FEII_COLUMN_RATIO = (0.05, 1.0)
#: |z_fit - z_injected| within which an injected absorber counts as found.
MATCH_DZ = 0.002
#: Doublet S/N from which the found fraction is counted.
MIN_SNR = 5.0
#: True EW_2796 bin edges of the table, rest A.
EW_BINS = (0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 6.0)
#: Velocity grid of the profiles, km/s: half width and step.
PROFILE_HALF_WIDTH_KMS, PROFILE_STEP_KMS = 900.0, 2.0
VELOCITY = np.arange(-PROFILE_HALF_WIDTH_KMS, PROFILE_HALF_WIDTH_KMS + PROFILE_STEP_KMS, PROFILE_STEP_KMS)


def draw_systems(n, rng):
    """The 2796 optical depth tau(v) of n systems on VELOCITY, (n, nv): sums of Gaussian components."""
    tau = np.zeros((n, VELOCITY.size))
    for row in range(n):
        count = 1 + rng.poisson(COMPONENTS_MEAN)
        centres = rng.normal(0.0, rng.uniform(*SPREAD_KMS), count)
        centres -= centres.mean()
        depth = 10.0 ** rng.uniform(*np.log10(TAU_RANGE), count)
        b_kms = rng.uniform(*B_RANGE_KMS, count)
        tau[row] = np.sum(depth[:, None] * np.exp(-((VELOCITY[None] - centres[:, None]) / b_kms[:, None]) ** 2), 0)
    return tau


def rest_ew(tau, rest_wave):
    """Rest EW (A) of lines of optical depth tau (n, nv) on VELOCITY: the integral of 1 - exp(-tau)."""
    return np.sum(1.0 - np.exp(-tau), axis=1) * PROFILE_STEP_KMS / SPEED_OF_LIGHT_KMS * rest_wave


def effective_fwhm(tau_2796, z_abs):
    """Rest FWHM (A) of the Gaussian of the same second moment as each system's observed 2796 line: its
    absorbed fraction's velocity variance plus the line-spread function's, (n,)."""
    absorbed = 1.0 - np.exp(-tau_2796)
    mean = np.sum(absorbed * VELOCITY, axis=1) / np.sum(absorbed, axis=1)
    variance = np.sum(absorbed * (VELOCITY[None] - mean[:, None]) ** 2, axis=1) / np.sum(absorbed, axis=1)
    lsf_kms = wavedisp(np.log10(MGII_2796 * (1 + z_abs))) * MGII_DLOGLAM * np.log(10) * SPEED_OF_LIGHT_KMS
    return np.sqrt(8 * np.log(2) * (variance + lsf_kms ** 2)) / SPEED_OF_LIGHT_KMS * MGII_2796


def inject(flux, z_abs, tau_2796, feii_ratio):
    """flux (n, 3841) times the systems' transmission on the MgII grid: each line's exp(-tau) convolved with
    the line-spread function at its wavelength and interpolated to the pixel centres (the profiles are
    smooth on the pixel scale); feii_ratio (n,), N(FeII) / N(MgII) of each system."""
    wave = grid_wavelength()
    transmission = np.ones(flux.shape)
    lines = [(MGII_2796, tau_2796), (MGII_2803, tau_2796 / FLAMBDA_RATIO)]
    lines += [(rest, tau_2796 * (f_lambda * feii_ratio)[:, None]) for rest, f_lambda in FEII_F_LAMBDA]
    for rest, tau in lines:
        centre = rest * (1 + z_abs)
        lsf_kms = wavedisp(np.log10(centre)) * MGII_DLOGLAM * np.log(10) * SPEED_OF_LIGHT_KMS
        for row in range(z_abs.size):
            kernel = np.exp(-0.5 * (VELOCITY / lsf_kms[row]) ** 2)
            line = np.convolve(np.exp(-tau[row]) - 1.0, kernel / kernel.sum(), mode="same") + 1.0
            observed = centre[row] * (1 + VELOCITY / SPEED_OF_LIGHT_KMS)
            near = np.abs(wave - centre[row]) < PROFILE_HALF_WIDTH_KMS / SPEED_OF_LIGHT_KMS * centre[row]
            transmission[row, near] *= np.interp(wave[near], observed, line)
    return flux * transmission


def summary(true_2796, true_2803, counted, found, ew_2796, ew_2803):
    """Per true EW_2796 bin: count, the fraction found of those `counted`, the median true EW ratio, and the
    median fitted / true EW_2796 and EW_2803 of all found."""
    edges = np.asarray(EW_BINS)
    which = np.digitize(true_2796, edges) - 1
    rows = []
    for b in range(edges.size - 1):
        here, got = which == b, (which == b) & found
        rows.append({"ew_min": float(edges[b]), "ew_max": float(edges[b + 1]), "count": int(here.sum()),
                     "counted": int((here & counted).sum()),
                     "found_of_counted": float(np.mean(found[here & counted])) if np.any(here & counted) else None,
                     "true_ratio": float(np.median(true_2796[here] / true_2803[here])) if here.any() else None,
                     "ew_2796_ratio": float(np.median(ew_2796[got] / true_2796[got])) if got.any() else None,
                     "ew_2803_ratio": float(np.median(ew_2803[got] / true_2803[got])) if got.any() else None})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", required=True, help="simulator run (spectra/ and truth.fits)")
    parser.add_argument("--out", required=True, help="directory for mgii_saturation.json")
    parser.add_argument("--absorbers", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-feii", action="store_true", help="inject the MgII doublets alone")
    parser.add_argument("--vetter", help="candidate vetter .json, or 'none' [default: pipeline/config.yaml's]")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    sightlines = read_sim_sightlines(args.sim)
    wave_min, wave_max, on_grid = search_window(sightlines.z_qso)
    wave = grid_wavelength()
    low = np.maximum(wave_min, wave[0] + 20) / MGII_2796 - 1
    high = np.minimum(wave_max, wave[-1] - 20) / MGII_2803 - 1
    clean = on_grid & (high > low + 0.05) & ~np.isin(np.arange(len(sightlines)), sightlines.absorbers["row"])
    rows = rng.choice(np.flatnonzero(clean), size=min(args.absorbers, int(clean.sum())), replace=False)
    z_abs = rng.uniform(low[rows], high[rows])
    tau = draw_systems(rows.size, rng)
    true_2796, true_2803 = rest_ew(tau, MGII_2796), rest_ew(tau / FLAMBDA_RATIO, MGII_2803)
    feii_ratio = 0.0 if args.no_feii else 10.0 ** rng.uniform(*np.log10(FEII_COLUMN_RATIO), rows.size)
    flux = inject(sightlines.flux[rows].astype(np.float64), z_abs, tau, np.broadcast_to(feii_ratio, rows.shape))
    ivar = sightlines.ivar[rows]
    noise = ew_noise(sightlines.flux[rows], ivar, np.arange(rows.size), z_abs, fwhm=effective_fwhm(tau, z_abs))
    counted = (true_2796 + true_2803) / (np.sqrt(2) * noise) >= MIN_SNR

    criteria, vetter = doublet_finder({**defaults(), "mgii_vetter": args.vetter})
    found, _ = measure_absorbers(flux, ivar, sightlines.z_qso[rows], criteria, vetter)
    nearest = [f[np.argmin(np.abs(f["Z_ABS"] - z))] if len(f) else None for f, z in zip(found, z_abs)]
    matched = np.array([n is not None and abs(n["Z_ABS"] - z) < MATCH_DZ for n, z in zip(nearest, z_abs)])
    refit_2796 = np.array([n["EW_2796"] if m else np.nan for n, m in zip(nearest, matched)])
    refit_2803 = np.array([n["EW_2803"] if m else np.nan for n, m in zip(nearest, matched)])
    z_found = np.array([n["Z_ABS"] if m else z for n, m, z in zip(nearest, matched, z_abs)])
    continuum = running_continuum(flux, ivar)
    one_sigma = fit_doublets(flux, with_continuum_error(ivar, continuum), continuum, np.arange(rows.size), z_found,
                             np.where(matched, np.maximum(refit_2796, 0.1), 1.0) * (1 + z_found),
                             criteria.max_iterations)
    result = {"sim": str(args.sim), "absorbers": int(rows.size), "seed": args.seed, "feii": not args.no_feii,
              "vetter": args.vetter,
              "median_fwhm_rest_A": float(np.median(effective_fwhm(tau, z_abs))),
              "found_of_counted": float(matched[counted].mean()),
              "refit": summary(true_2796, true_2803, counted, matched, refit_2796, refit_2803),
              "one_sigma_fit": summary(true_2796, true_2803, counted, matched, one_sigma["EW_2796"],
                                       one_sigma["EW_2803"])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mgii_saturation.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
