"""Side-by-side plots of real BOSS and simulated spectra, and S/N histograms.

Writes docs/sim_vs_real_quasars.png (real and simulated quasars at matched
redshifts), docs/sim_vs_real_snr.png (per-pixel S/N of quasars),
docs/sim_vs_real_zoo.png (simulated stars, galaxies, a BAL quasar and a sky
fiber; no real counterpart) and docs/sim_vs_real_stars.png (the one real star
at hand beside simulated stars of matched colour, boxcar colours of simulated
stars and of real and simulated quasars, stellar feature indices by subtype);
prints the stellar colour and feature tables quoted in docs/simulation.md.
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
    CAII_K, CIII_EMISSION, CIV_EMISSION, HALPHA, HBETA, HDELTA, LYA, MGI_B, MGII_EMISSION,
)
from qsopipe.stages.simulate.grid import plate_loglam  # noqa: E402
from qsopipe.stages.simulate.noise import observe  # noqa: E402
from qsopipe.stages.simulate.photometry import AB_ZERO, band_weights  # noqa: E402
from qsopipe.stages.simulate.spectra import simulate_objects  # noqa: E402
from qsopipe.stages.simulate.stars import STAR_TYPE_NAMES  # noqa: E402

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
MATCH_Z = (0.58, 0.87, 1.28, 2.25, 2.70, 3.30)
LINES = {"Lya": LYA, "CIV": CIV_EMISSION, "CIII]": CIII_EMISSION, "MgII": MGII_EMISSION, "Hb": HBETA, "Ha": HALPHA}
#: Stellar feature indices: (line window, continuum windows), vacuum A; flux in the line over the continuum mean.
#: TiO5 is Reid et al. (1995)'s (shifted to vacuum); the others are narrow core depths.
STAR_INDICES = {"Hdelta": ((HDELTA - 3, HDELTA + 3), ((4030, 4060), (4150, 4180))),
                "CaII K": ((CAII_K - 4, CAII_K + 4), ((3900, 3915), (4010, 4030))),
                "Mg b": ((MGI_B - 8, MGI_B + 8), ((5130, 5150), (5200, 5220))),
                "TiO5": ((7128, 7137), ((7044, 7048),))}
#: Colours plotted (indices into ugriz).
COLOUR_PAIRS = (((0, 1), (1, 2)), ((1, 2), (2, 3)))


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
    stars_vs_real(Path(shared) / "sdss", real)


def real_stars(sdss_dir):
    """(meta row, loglam, flux, ivar) of the real spec-lite files the pipeline classed STAR."""
    found = []
    for path in sorted(glob.glob(str(Path(sdss_dir) / "dr16_spec_lite_picca" / "*" / "spec-*.fits"))):
        meta = fitsio.read(path, 2)[0]
        if meta["CLASS"].strip() == "STAR":
            coadd = fitsio.read(path, 1)
            found.append((meta, coadd["LOGLAM"].astype(np.float64), coadd["FLUX"], coadd["IVAR"]))
    return found


def boxcar_magnitudes(loglam, flux, ivar=None):
    """Boxcar ugriz AB magnitudes (n, 5) as photometry.magnitudes, over the pixels with ivar > 0 when given."""
    flux = np.atleast_2d(flux)
    good = np.ones(flux.shape, bool) if ivar is None else np.atleast_2d(ivar) > 0
    weights, pivots = band_weights(loglam)
    inside = (weights > 0).astype(np.float64)
    mean = (np.where(good, flux, 0.0) @ inside) / np.maximum(good.astype(np.float64) @ inside, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, -2.5 * np.log10(mean * pivots**2 / AB_ZERO), np.nan)


def star_indices(loglam, flux, ivar=None):
    """{name: (value (n,), error (n,))} of STAR_INDICES for spectra flux (n, npix) on loglam (npix,).

    Means over the pixels with ivar > 0; errors propagated from ivar (zero without it).
    """
    wave = 10.0 ** loglam
    flux = np.atleast_2d(flux)
    ivar = np.ones(flux.shape) * np.inf if ivar is None else np.atleast_2d(ivar)

    def mean(lo, hi):
        inside = (wave >= lo) & (wave < hi) & (ivar > 0)
        count = inside.sum(axis=1)
        return ((np.where(inside, flux, 0.0)).sum(axis=1) / count,
                np.sqrt(np.where(inside, 1.0 / np.where(ivar > 0, ivar, 1.0), 0.0).sum(axis=1)) / count)

    result = {}
    for name, (line, continuum) in STAR_INDICES.items():
        level, level_error = mean(*line)
        windows = [mean(*window) for window in continuum]
        cont = np.mean([w[0] for w in windows], axis=0)
        cont_error = np.sqrt(np.sum([w[1] ** 2 for w in windows], axis=0)) / len(windows)
        value = level / cont
        result[name] = (value, np.abs(value) * np.hypot(level_error / level, cont_error / cont))
    return result


def _quartiles(values):
    values = values[np.isfinite(values)]
    return f"{np.median(values):5.2f} ({np.percentile(values, 10):5.2f}, {np.percentile(values, 90):5.2f})"


def print_star_tables(subtype, mags, indices, quasar_mags):
    """The tables of docs/simulation.md: boxcar colours and feature indices, median (10%, 90%), per subtype."""
    print("| subtype | share | u-g | g-r | r-i | i-z |")
    print("|---|---|---|---|---|---|")
    rows = [(name, subtype == name, mags) for name in STAR_TYPE_NAMES]
    rows += [(label, np.ones(len(m), bool), m) for label, m in quasar_mags.items()]
    for name, chosen, m in rows:
        share = f"{chosen.mean():.3f}" if m is mags else "-"
        colours = " | ".join(_quartiles(m[chosen, k] - m[chosen, k + 1]) for k in range(4))
        print(f"| {name} | {share} | {colours} |")
    print("\n| subtype | " + " | ".join(STAR_INDICES) + " |")
    print("|---|" + "---|" * len(STAR_INDICES))
    for name in STAR_TYPE_NAMES:
        print(f"| {name} | " + " | ".join(_quartiles(v[0][subtype == name]) for v in indices.values()) + " |")


def print_real_ebv(sdss_dir):
    """E(B-V) of the real spec-lite sightlines per plate: SFD A_r / 2.285 (the coefficient behind spAll EXTINCTION)."""
    paths = sorted(glob.glob(str(Path(sdss_dir) / "dr16_spec_lite_picca" / "*" / "spec-*.fits")))
    rows = np.array([(m["PLATE"], m["EXTINCTION"][2] / 2.285) for m in (fitsio.read(p, 2)[0] for p in paths)])
    for plate in np.unique(rows[:, 0]):
        ebv = rows[rows[:, 0] == plate, 1]
        print(f"real E(B-V), plate {int(plate)}: {ebv.size} sightlines, {ebv.min():.3f}-{ebv.max():.3f}")


def stars_vs_real(sdss_dir, real_quasars_list):
    """docs/sim_vs_real_stars.png (the first real star, the one at hand, and the statistics) and the printed tables."""
    loglam = plate_loglam()
    sim = simulate_objects(loglam, ["STAR"] * 4000, np.random.default_rng(21), with_noise=False)
    subtype, mags = sim.truth["SUBTYPE"], sim.truth["MAG"].astype(np.float64)
    indices = star_indices(loglam, sim.flux_true)
    quasars = simulate_objects(loglam, ["QSO"] * 1500, np.random.default_rng(22), with_noise=False)
    z = quasars.truth["Z_VI"]
    matched = [s for s in real_quasars_list if 2.2 < s[0] < 3.5]
    quasar_mags = {"QSO sim 2.2<z<3.5": quasars.truth["MAG"][(z > 2.2) & (z < 3.5)].astype(np.float64),
                   f"QSO real 2.2<z<3.5 ({len(matched)})": np.array([boxcar_magnitudes(*q[1:4])[0] for q in matched])}
    print_star_tables(subtype, mags, indices, quasar_mags)
    print_real_ebv(sdss_dir)
    stars = real_stars(sdss_dir)
    fig = plt.figure(figsize=(14, 13))
    grid = fig.add_gridspec(4, 2)
    meta, rl, rf, riv = stars[0]
    real_mags = boxcar_magnitudes(rl, rf, riv)[0]
    title = (f"real {meta['PLATE']}-{meta['MJD']}-{meta['FIBERID']}: pipeline {meta['CLASS'].strip()} "
             f"{meta['SUBCLASS'].strip()}, ELODIE {meta['ELODIE_SPTYPE'].strip()}; boxcar g-r "
             f"{real_mags[1] - real_mags[2]:.2f}, r-i {real_mags[2] - real_mags[3]:.2f}")
    _panel(fig.add_subplot(grid[0, :]), rl, rf, riv, None, title)
    colour = mags[:, 1:3] - mags[:, 2:4]
    distance = np.hypot(*(colour - (real_mags[1:3] - real_mags[2:4])).T)
    rng = np.random.default_rng(23)
    for k, name in enumerate(("F", "CV")):
        row = np.flatnonzero(subtype == name)[np.argmin(distance[subtype == name])]
        flux = sim.flux_true[row:row + 1] * np.float32(10 ** (-0.4 * (real_mags[2] - mags[row, 2])))
        observed = observe(loglam, flux, rng)
        _panel(fig.add_subplot(grid[1, k]), loglam, observed["flux"][0], observed["ivar"][0], None,
               f"simulated {name} of the nearest g-r, r-i ({colour[row, 0]:.2f}, {colour[row, 1]:.2f}), same r")
    for k, pairs in enumerate(COLOUR_PAIRS):
        _colour_panel(fig.add_subplot(grid[2, k]), pairs, subtype, mags, quasar_mags, real_mags, legend=k == 1)
    _index_panel(fig.add_subplot(grid[3, :]), subtype, indices, star_indices(rl, rf, riv))
    fig.tight_layout()
    fig.savefig(DOCS / "sim_vs_real_stars.png", dpi=80)


def _colour_panel(ax, pairs, subtype, mags, quasar_mags, real_mags, legend):
    """Colour-colour scatter: simulated stars by subtype, quasars, the real star (red)."""
    (a, b), (c, d) = pairs
    for name in STAR_TYPE_NAMES:
        chosen = subtype == name
        ax.scatter(mags[chosen, a] - mags[chosen, b], mags[chosen, c] - mags[chosen, d], s=3, label=name)
    for label, m in quasar_mags.items():
        ax.scatter(m[:, a] - m[:, b], m[:, c] - m[:, d], s=8, marker="x", color="k" if "real" in label else "0.6",
                   label=label)
    ax.scatter(real_mags[a] - real_mags[b], real_mags[c] - real_mags[d], s=150, marker="*", color="r")
    names = "ugriz"
    ax.set_xlabel(f"{names[a]}-{names[b]} (boxcar)")
    ax.set_ylabel(f"{names[c]}-{names[d]} (boxcar)")
    ax.set_xlim(-0.8, 3.0)
    ax.set_ylim(-0.8, 2.5)
    ax.set_title("boxcar colours; red star: the real star", fontsize=9)
    if legend:
        ax.legend(fontsize=6, markerscale=2, ncol=2, loc="upper left")


def _index_panel(ax, subtype, indices, real):
    """Box plots of the noiseless feature indices per subtype, and the real star's with its error."""
    width = len(STAR_TYPE_NAMES) + 3
    labels = list(STAR_TYPE_NAMES) + ["real"]
    for k, (index, (values, _)) in enumerate(indices.items()):
        positions = k * width + np.arange(len(labels))
        ax.boxplot([values[subtype == name] for name in STAR_TYPE_NAMES], positions=positions[:-1], widths=0.7,
                   whis=(10, 90), showfliers=False)
        ax.errorbar(positions[-1], real[index][0][0], yerr=real[index][1][0], fmt="r*", ms=10)
        ax.text(positions[0], 2.25, index, fontsize=9)
    ax.set_xticks([k * width + i for k in range(len(indices)) for i in range(len(labels))])
    ax.set_xticklabels(labels * len(indices), fontsize=6, rotation=90)
    ax.set_ylim(0.0, 2.4)
    ax.set_ylabel("line / continuum")
    ax.set_title("feature indices: simulated (noiseless, 10-90% whiskers) and the real star (1 sigma)", fontsize=9)


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
