"""Side-by-side plots of real BOSS and simulated spectra, and S/N histograms.

Writes docs/sim_vs_real_quasars.png (real and simulated quasars at matched
redshifts), docs/sim_vs_real_snr.png (per-pixel S/N of quasars) and
docs/sim_vs_real_zoo.png (simulated stars, galaxies, a BAL quasar and a sky fiber; no real counterpart).
Run: .venv/bin/python docs/make_sim_plots.py [SHARED_DATA]
"""

import glob
import sys
from pathlib import Path

import fitsio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.ndimage import uniform_filter1d  # noqa: E402

from qsopipe.pipeline.constants import (  # noqa: E402
    CIII_EMISSION, CIV_EMISSION, HALPHA, HBETA, LYA, MGII_EMISSION,
)
from qsopipe.stages.simulate.grid import plate_loglam  # noqa: E402
from qsopipe.stages.simulate.spectra import simulate_objects  # noqa: E402

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
MATCH_Z = (0.58, 0.87, 1.28, 2.25, 2.70, 3.30)
LINES = {"Lya": LYA, "CIV": CIV_EMISSION, "CIII]": CIII_EMISSION, "MgII": MGII_EMISSION, "Hb": HBETA, "Ha": HALPHA}


def real_quasars(sdss_dir):
    """(z, loglam, flux, ivar, median S/N) of the real DR16 quasar spec-lite files."""
    spectra = []
    for path in sorted(glob.glob(str(Path(sdss_dir) / "dr16_spec_lite_picca" / "*" / "spec-*.fits"))):
        meta = fitsio.read(path, 2, columns=["CLASS", "Z"])[0]
        if meta["CLASS"].strip() != "QSO":
            continue
        coadd = fitsio.read(path, 1)
        good = coadd["IVAR"] > 0
        snr = np.median(coadd["FLUX"][good] * np.sqrt(coadd["IVAR"][good]))
        spectra.append((float(meta["Z"]), coadd["LOGLAM"], coadd["FLUX"], coadd["IVAR"], snr))
    return spectra


def main(shared=REPO.parent / "shared" / "data"):
    real = real_quasars(Path(shared) / "sdss")
    loglam = plate_loglam()
    rng = np.random.default_rng(7)
    real_sorted = [min(real, key=lambda s: abs(s[0] - z)) for z in MATCH_Z]
    sim = simulate_objects(loglam, ["QSO"] * len(MATCH_Z), rng, z=[s[0] for s in real_sorted],
                           mag=np.full(len(MATCH_Z), 20.6))
    fig, axes = plt.subplots(len(MATCH_Z), 2, figsize=(14, 2.3 * len(MATCH_Z)), sharex=True)
    for k, (z, rl, rf, riv, snr) in enumerate(real_sorted):
        _panel(axes[k, 0], rl, rf, riv, z, f"real DR16 z={z:.2f} (S/N {snr:.1f})")
        good = sim.ivar[k] > 0
        sim_snr = np.median(sim.flux[k][good] * np.sqrt(sim.ivar[k][good]))
        _panel(axes[k, 1], loglam, sim.flux[k], sim.ivar[k], z, f"simulated z={z:.2f} (S/N {sim_snr:.1f})")
    axes[-1, 0].set_xlabel("observed wavelength (A)")
    axes[-1, 1].set_xlabel("observed wavelength (A)")
    fig.tight_layout()
    fig.savefig(DOCS / "sim_vs_real_quasars.png", dpi=80)

    plate = simulate_objects(loglam, ["QSO"] * 600, np.random.default_rng(11))
    sim_snr = [np.median(f[i > 0] * np.sqrt(i[i > 0])) for f, i in zip(plate.flux, plate.ivar)]
    real_pix = np.concatenate([(s[2] * np.sqrt(s[3]))[s[3] > 0] for s in real])
    sim_pix = (plate.flux * np.sqrt(plate.ivar))[plate.ivar > 0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    bins = np.linspace(-0.5, 2.0, 26)
    axes[0].hist(np.log10(np.clip([s[4] for s in real], 0.35, None)), bins, density=True, alpha=0.5, label=f"real DR16 ({len(real)})")
    axes[0].hist(np.log10(np.clip(sim_snr, 0.35, None)), bins, density=True, alpha=0.5, label="simulated (600)")
    axes[0].set_xlabel("log10 median S/N per pixel (per quasar)")
    axes[0].legend()
    bins = np.linspace(-5, 25, 61)
    axes[1].hist(real_pix, bins, density=True, histtype="step", label="real DR16")
    axes[1].hist(sim_pix, bins, density=True, histtype="step", label="simulated")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("per-pixel S/N, quasars")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(DOCS / "sim_vs_real_snr.png", dpi=80)

    kinds = ["STAR"] * 6 + ["GALAXY", "BLGALAXY", "QSO", "SKY"]
    zoo = simulate_objects(loglam, kinds, np.random.default_rng(5), mag=[19.5] * 9 + [np.nan],
                           z=[np.nan] * 8 + [2.4, np.nan])
    zoo_bal = simulate_objects(loglam, ["QSO"] * 40, np.random.default_rng(3), z=np.full(40, 2.4), mag=np.full(40, 19.5))
    bal_row = int(np.argmax(zoo_bal.truth["BI_CIV"]))
    fig, axes = plt.subplots(5, 2, figsize=(14, 11), sharex=True)
    for k, ax in enumerate(axes.T.ravel()):
        if kinds[k] == "QSO":
            f, iv, t = zoo_bal.flux[bal_row], zoo_bal.ivar[bal_row], zoo_bal.truth[bal_row]
        else:
            f, iv, t = zoo.flux[k], zoo.ivar[k], zoo.truth[k]
        label = f"{t['KIND']} {t['SUBTYPE']} z={t['Z_VI']:.3f}" + (f" BI={t['BI_CIV']:.0f}" if t["BI_CIV"] else "")
        _panel(ax, loglam, f, iv, t["Z_VI"] if t["KIND"] in ("QSO",) else None, label)
    fig.tight_layout()
    fig.savefig(DOCS / "sim_vs_real_zoo.png", dpi=80)


def _panel(ax, loglam, flux, ivar, z, title):
    wave = 10.0 ** loglam
    good = ivar > 0
    smooth = uniform_filter1d(np.where(good, flux, 0.0), 5) / np.maximum(uniform_filter1d(good.astype(float), 5), 1e-3)
    ax.plot(wave, smooth, lw=0.5, color="k")
    top = np.percentile(smooth[good], 99.5) if good.any() else 1.0
    ax.set_ylim(min(-0.1 * top, np.percentile(smooth[good], 0.5) if good.any() else 0), 1.15 * top)
    if z is not None and z > 0:
        for name, rest in LINES.items():
            if wave[0] < rest * (1 + z) < wave[-1]:
                ax.axvline(rest * (1 + z), color="r", lw=0.5, alpha=0.5)
                ax.text(rest * (1 + z), 1.05 * top, name, fontsize=7, color="r")
    ax.set_title(title, fontsize=9)


if __name__ == "__main__":
    main(*sys.argv[1:])
