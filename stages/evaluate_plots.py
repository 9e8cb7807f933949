"""Figures of an evaluation (matplotlib Agg, no pyplot state), drawn from the metrics dict.

Like Busca & Balland (2018): purity/completeness vs c_th for n_th = 1 and 2
(their Fig. 3), the velocity-offset histogram, BAL recognition vs threshold,
purity/completeness per redshift bin; plus MgII absorber completeness vs EW.
Each function takes the JSON-ready dict of `qsopipe.stages.evaluate.evaluate`
and a PNG path.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _values(sequence):
    """A list with None (JSON null) as NaN, as a float array."""
    return np.array([np.nan if v is None else v for v in sequence], dtype=float)


def _save(figure, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_threshold_curves(metrics, path):
    """Purity and completeness vs c_th, one panel per n_th (1, 2); the catalog's c_th dashed."""
    curves = metrics["threshold_curves"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, len(curves), sharey=True)
    for ax, (name, curve) in zip(np.atleast_1d(axes), curves.items()):
        ax.plot(curve["c_th"], _values(curve["purity"]), label="purity")
        ax.plot(curve["c_th"], _values(curve["completeness"]), label="completeness")
        if metrics.get("c_th") is not None:
            ax.axvline(metrics["c_th"], color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(name.replace("n_th_", "n_th = "))
        ax.set_xlabel("c_th")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("fraction")
    np.atleast_1d(axes)[0].legend(loc="lower left")
    return _save(figure, path)


def plot_velocity_histogram(metrics, path):
    """Histogram of dv = c (Z_QN - Z_VI)/(1 + Z_VI) for truth quasars classified quasar, |dv| < 6000 km/s."""
    dv = metrics["dv"]
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    ax.stairs(dv["counts"], dv["edges"], fill=True, alpha=0.6)
    ax.set_xlabel("dv [km/s]")
    ax.set_ylabel("quasars")
    median, spread = dv.get("median"), dv.get("nmad")
    if median is not None and spread is not None:
        ax.set_title(f"median {median:.0f} km/s, NMAD {spread:.0f} km/s, N = {dv['n']}")
    return _save(figure, path)


def plot_bal(metrics, path):
    """BAL quasars recognised and non-BAL quasars rejected vs the threshold on BAL_PROB (solid) and on
    C_BAL_CIV (dotted, where scored); the catalog's BALP_TH dashed."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    for key, style, label in (("bal", "-", "BAL_PROB"), ("bal_qn", ":", "C_BAL_CIV")):
        bal = metrics.get(key)
        if bal is None:
            continue
        ax.plot(bal["bal_th"], _values(bal["recognised_vs_bal_th"]), style, color="C0",
                label=f"{label}: BAL recognised (N = {bal['n_bal']})")
        ax.plot(bal["bal_th"], _values(bal["rejected_vs_bal_th"]), style, color="C1",
                label=f"{label}: non-BAL rejected (N = {bal['n_non_bal']})")
    if metrics.get("bal_prob_th") is not None:
        ax.axvline(metrics["bal_prob_th"], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("threshold")
    ax.set_ylabel("fraction")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower center", fontsize="small")
    return _save(figure, path)


def plot_redshift_bins(metrics, path):
    """Completeness per truth-redshift bin and purity per Z_QN bin."""
    bins = metrics["redshift_bins"]
    edges = np.asarray(bins["edges"], dtype=float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    ax.step(centres, _values(bins["completeness"]), where="mid", marker="o", label="completeness (Z_VI bins)")
    ax.step(centres, _values(bins["purity"]), where="mid", marker="s", label="purity (Z_QN bins)")
    ax.set_xlabel("redshift")
    ax.set_ylabel("fraction")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(figure, path)


def plot_mgii_recovery(metrics, path):
    """Fraction of truth MgII absorbers recovered per rest EW_2796 bin."""
    recovery = metrics["mgii"]["absorbers"]
    edges = np.asarray(recovery["ew_edges"], dtype=float)
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    ax.stairs(_values(recovery["completeness"]), edges)
    ax.set_xlabel("rest EW(2796) [Angstrom]")
    ax.set_ylabel("fraction recovered")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def make_plots(metrics, directory):
    """Every figure whose data the metrics hold, as PNGs in `directory`; returns their paths."""
    directory = Path(directory)
    plots = [
        (plot_threshold_curves, "purity_completeness_vs_cth.png", True),
        (plot_velocity_histogram, "dv_histogram.png", metrics["dv"]["n"] > 0),
        (plot_bal, "bal_vs_threshold.png", metrics.get("bal") is not None or metrics.get("bal_qn") is not None),
        (plot_redshift_bins, "redshift_bins.png", True),
        (plot_mgii_recovery, "mgii_completeness_vs_ew.png", metrics.get("mgii") is not None),
    ]
    return [plot(metrics, directory / name) for plot, name, available in plots if available]
