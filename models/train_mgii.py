"""`qsopipe train mgii`: train the MgII absorber CNN on simulated quasar sightlines.

Sightlines: the quasars of a simulator run (`--sim DIR`: DIR/spectra/**/
spPlate-*.fits, DIR/truth.fits with CLASS_PERSON in (3, 30) and the
MGII_ABSORBERS HDU), put on the MgII grid by
`qsopipe.stages.preprocess.mgii_input`, redshift Z_VI; only those that
`qsopipe.stages.mgii.prepare_input` can search (and with clean pixels) are kept.

Labels (Zhao et al. 2019): a sightline is positive when it holds a strong
absorber: both lines in the CNN window, rest EW_2796 >= 0.3 A and
EW_2796 >= 3 sigma, sigma being the noise of a 1.7 A FWHM line at that
place (`ew_noise`). Every epoch is drawn afresh and balanced: half
positives (the real ones, then doublets injected into absorber-free
sightlines, EWs from the DR12 catalog sample, FWHM from N(1.7, 0.7) A, with
their FeII lines), half negatives (absorber-free sightlines); half of each
half also gets confusers (CIV doublets, FeII systems without MgII, single
lines) so the network learns the doublet, not any dip. The validation
sightlines (a fraction of the objects) get one fixed draw.

Outputs next to OUT (NAME.keras): NAME.keras, NAME.checkpoint.keras and
NAME.checkpoint.json after every epoch (`--resume` continues from them),
NAME.history.json and NAME.history.png.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from qsopipe.models.simulated_runs import truth_matched_plates
from qsopipe.models.training_files import (fit_epoch, load_checkpoint, output_paths, plot_history, save_model,
                                           write_json)
from qsopipe.pipeline.constants import (
    FEII_2344, FEII_2374, FEII_2382, FEII_2586, FEII_2600, FWHM_PER_SIGMA, MGII_2796, MGII_2803, QUASAR_CLASSES,
)
from qsopipe.pipeline.grids import MGII_DLOGLAM, MGII_LOGLAM_MIN, MGII_NPIX, mgii_loglam
from qsopipe.pipeline.ids import match_rows, target_id
from qsopipe.stages.mgii import prepare_input, search_window

log = logging.getLogger(__name__)

#: Zhao et al. (2019) positives: rest EW_2796 at least this (A) and this many sigma.
STRONG_EW = 0.3
STRONG_SIGMA = 3.0
#: Line FWHM (rest A) assumed when the noise of a truth absorber is estimated.
NOMINAL_FWHM = 1.7
#: Continuum for `ew_noise`: median over this many pixels either side of the line.
NOISE_HALF_WINDOW = 40
#: FeII lines of a confusing FeII system without MgII: rest A and EW relative to the strongest.
FEII_CONFUSER_LINES = ((FEII_2600, 1.0), (FEII_2586, 0.7), (FEII_2382, 0.9), (FEII_2374, 0.4), (FEII_2344, 0.6))
#: Fraction of the sightlines of each class that get confusers.
CONFUSER_FRACTION = 0.5


@dataclass
class Sightlines:
    """Quasar sightlines on the MgII grid and their truth absorbers.

    flux, ivar : float32 (n, 3841); z_qso : float64 (n,); plate, mjd, fiberid : int32 (n,);
    thing_id : int64 (n,); absorbers : dict of (m,) arrays 'row' (sightline), 'z_abs',
    'ew_2796', 'ew_2803' (rest A).
    """

    flux: np.ndarray
    ivar: np.ndarray
    z_qso: np.ndarray
    plate: np.ndarray
    mjd: np.ndarray
    fiberid: np.ndarray
    thing_id: np.ndarray
    absorbers: dict

    def __len__(self):
        return len(self.z_qso)

    def subset(self, rows):
        """The sightlines `rows` (bool mask or indices), absorbers renumbered."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        new_index = np.full(len(self), -1)
        new_index[rows] = np.arange(rows.size)
        keep = new_index[self.absorbers["row"]] >= 0
        absorbers = {key: value[keep] for key, value in self.absorbers.items()}
        absorbers["row"] = new_index[absorbers["row"]]
        arrays = {name: getattr(self, name)[rows] for name in
                  ("flux", "ivar", "z_qso", "plate", "mjd", "fiberid", "thing_id")}
        return Sightlines(**arrays, absorbers=absorbers)


def read_sim_sightlines(sim_dir):
    """Quasar sightlines of a simulator run that the MgII stage can search (Sightlines)."""
    import fitsio

    from qsopipe.pipeline.sdss.catalogs import read_dr12q
    from qsopipe.stages.preprocess import clean_pixels, mgii_input

    sim_dir = Path(sim_dir)
    truth = read_dr12q(sim_dir / "truth.fits")
    truth_absorbers = fitsio.read(sim_dir / "truth.fits", ext="MGII_ABSORBERS")
    parts = []
    for plate, row, in_truth in truth_matched_plates(sim_dir, truth):
        quasar = in_truth & np.isin(truth["CLASS_PERSON"][row], QUASAR_CLASSES)
        flux, ivar, flag = clean_pixels(plate.flux[quasar], plate.ivar[quasar])
        flux, ivar = mgii_input(plate.loglam, flux, ivar)
        z_qso = truth["Z_VI"][row[quasar]]
        _, cnn_ready = prepare_input(flux, ivar, z_qso)
        keep = cnn_ready & (flag == 0)
        fibers = plate.fibers[quasar][keep]
        parts.append(dict(flux=flux[keep], ivar=ivar[keep], z_qso=z_qso[keep].astype(np.float64),
                          plate=fibers["PLATE"].astype(np.int32), mjd=fibers["MJD"].astype(np.int32),
                          fiberid=fibers["FIBERID"].astype(np.int32), thing_id=fibers["THING_ID"].astype(np.int64)))
    if not parts:
        raise click.ClickException(f"{sim_dir}: no spPlate files under spectra/")
    arrays = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    owner, found = match_rows(target_id(truth_absorbers["PLATE"], truth_absorbers["MJD"], truth_absorbers["FIBERID"]),
                              target_id(arrays["plate"], arrays["mjd"], arrays["fiberid"]))
    absorbers = {"row": owner[found],
                 "z_abs": truth_absorbers["Z_ABS"][found].astype(np.float64),
                 "ew_2796": truth_absorbers["EW_2796"][found].astype(np.float64),
                 "ew_2803": truth_absorbers["EW_2803"][found].astype(np.float64)}
    log.info("%d searchable quasar sightlines with %d truth absorbers from %d plates",
             len(arrays["z_qso"]), found.sum(), len(parts))
    return Sightlines(**arrays, absorbers=absorbers)


def ew_noise(flux, ivar, rows, z_abs, fwhm=NOMINAL_FWHM):
    """1-sigma noise of a rest EW_2796 measured with a Gaussian of rest FWHM `fwhm` at z_abs.

    sigma_obs = 1 / sqrt(sum_i g_i^2 ivar_i c^2), g the unit-area line profile
    (per A) on the pixels and c the local continuum (median of the pixels
    with ivar > 0 within NOISE_HALF_WINDOW); divided by (1 + z_abs).

    Parameters
    ----------
    flux, ivar : (n, 3841) ; rows, z_abs : (m,) ; fwhm : float or (m,), rest A

    Returns
    -------
    sigma : float64 (m,), rest A; inf where the line falls on no good pixel.
    """
    rows = np.asarray(rows, np.int64)
    z_abs = np.asarray(z_abs, np.float64)
    centre = (np.log10(MGII_2796 * (1 + z_abs)) - MGII_LOGLAM_MIN) / MGII_DLOGLAM
    columns = np.rint(centre).astype(np.int64)[:, None] + np.arange(-NOISE_HALF_WINDOW, NOISE_HALF_WINDOW + 1)
    on_grid = (columns >= 0) & (columns < MGII_NPIX)
    columns = np.clip(columns, 0, MGII_NPIX - 1)
    local_flux = flux[rows[:, None], columns].astype(np.float64)
    local_ivar = np.where(on_grid, ivar[rows[:, None], columns], 0.0)
    good = local_ivar > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        continuum = np.nanmedian(np.where(good, local_flux, np.nan), axis=1)
    sigma_pix = np.asarray(fwhm) / FWHM_PER_SIGMA / MGII_2796 / (np.log(10) * MGII_DLOGLAM)
    wave = 10.0 ** (MGII_LOGLAM_MIN + MGII_DLOGLAM * columns)
    width = wave * np.log(10) * MGII_DLOGLAM
    profile = np.exp(-0.5 * ((columns - centre[:, None]) / np.reshape(sigma_pix, (-1, 1))) ** 2)
    profile /= np.sqrt(2 * np.pi) * np.reshape(sigma_pix, (-1, 1)) * width
    information = np.sum(profile ** 2 * local_ivar, axis=1) * np.nan_to_num(continuum) ** 2
    with np.errstate(divide="ignore"):
        return np.where(information > 0, 1.0 / np.sqrt(information), np.inf) / (1 + z_abs)


def in_search_window(z_qso, z_abs):
    """True where both lines of an absorber at z_abs lie in the CNN window of z_qso. bool (m,)."""
    wave_min, wave_max, _ = search_window(z_qso)
    return (MGII_2796 * (1 + z_abs) >= wave_min) & (MGII_2803 * (1 + z_abs) <= wave_max)


def strong_absorbers(sightlines):
    """Which truth absorbers are strong (in the window, EW_2796 >= 0.3 A and >= 3 sigma). bool (m,)."""
    found = sightlines.absorbers
    if found["row"].size == 0:
        return np.zeros(0, bool)
    noise = ew_noise(sightlines.flux, sightlines.ivar, found["row"], found["z_abs"])
    return (in_search_window(sightlines.z_qso[found["row"]], found["z_abs"])
            & (found["ew_2796"] >= STRONG_EW) & (found["ew_2796"] >= STRONG_SIGMA * noise))


def sightline_labels(sightlines):
    """Labels and clean rows of the sightlines.

    Returns label int8 (n,), 1 where a strong absorber is present, and clean
    bool (n,), True where no truth absorber lies in the CNN window (only
    clean sightlines serve as negatives or take injections; label-0 sightlines
    with a weak absorber are left out of training).
    """
    found = sightlines.absorbers
    label = np.zeros(len(sightlines), np.int8)
    label[found["row"][strong_absorbers(sightlines)]] = 1
    clean = np.ones(len(sightlines), bool)
    clean[found["row"][in_search_window(sightlines.z_qso[found["row"]], found["z_abs"])]] = False
    return label, clean


def draw_window_redshifts(z_qso, rng):
    """Uniform absorber redshifts with both lines inside each sightline's CNN window. (n,)"""
    wave_min, wave_max, _ = search_window(z_qso)
    z_min = wave_min / MGII_2796 - 1
    z_max = np.minimum(wave_max, 10 ** (MGII_LOGLAM_MIN + MGII_DLOGLAM * (MGII_NPIX - 1))) / MGII_2803 - 1
    z_min = np.maximum(z_min, 10 ** MGII_LOGLAM_MIN / MGII_2796 - 1)
    return z_min + rng.random(np.size(z_qso)) * np.clip(z_max - z_min, 0, None)


def inject_strong_doublets(flux, ivar, z_qso, rng):
    """Inject one strong doublet (with FeII) into each row of flux, in place; returns 1 where it is >= 3 sigma.

    EWs from the DR12 sample with EW_2796 >= 0.3 A, FWHM from N(1.7, 0.7) A,
    z uniform in the CNN window. int8 (n,)
    """
    from qsopipe.stages.simulate.absorbers import draw_fwhm, draw_mgii_ew, inject_feii, inject_mgii_doublet

    n = len(z_qso)
    if n == 0:
        return np.zeros(0, np.int8)
    loglam = mgii_loglam()
    rows = np.arange(n)
    z_abs = draw_window_redshifts(z_qso, rng)
    ew_2796, ew_2803 = draw_mgii_ew(n, rng, min_ew_2796=STRONG_EW)
    fwhm = draw_fwhm(n, rng)
    detectable = ew_2796 >= STRONG_SIGMA * ew_noise(flux, ivar, rows, z_abs, fwhm)
    inject_mgii_doublet(loglam, flux, z_abs, ew_2796, ew_2803, fwhm, rows=rows)
    inject_feii(loglam, flux, {"row": rows, "z_abs": z_abs, "ew_2796": ew_2796, "fwhm": fwhm})
    return detectable.astype(np.int8)


def inject_confusers(flux, z_qso, rng):
    """Inject non-MgII lines into each row of flux, in place: the simulator's confusers (CIV systems
    with SiIV, SiII and AlII, SiIV doublets, single lines) and one FeII system without MgII at a random redshift."""
    from qsopipe.stages.simulate.absorbers import absorb_rest_lines, draw_confusers, draw_fwhm
    from qsopipe.stages.simulate.absorbers import inject_confusers as inject_simulated_confusers

    n = len(z_qso)
    if n == 0:
        return flux
    loglam = mgii_loglam()
    inject_simulated_confusers(loglam, flux, draw_confusers(z_qso, rng))
    z_feii = rng.uniform(3900.0 / FEII_2344, 9100.0 / FEII_2600, n) - 1
    ew = 10 ** rng.normal(-0.2, 0.3, n)
    fwhm = draw_fwhm(n, rng)
    rows = np.arange(n)
    for rest, ratio in FEII_CONFUSER_LINES:
        absorb_rest_lines(loglam, flux, rows, rest, z_feii, ratio * ew, fwhm)
    return flux


def draw_epoch(sightlines, label, clean, size, rng):
    """A balanced, freshly injected sample of `size` spectra from the sightlines.

    Returns (x float32 (size, 3841) CNN inputs, y float32 (size,) labels).
    Positives: the labelled ones, topped up with injections into clean
    sightlines (an injection too weak to be a strong absorber is dropped, not
    labelled 0: the same doublet must not be a positive on one spectrum and a
    negative on a noisier one); negatives: clean sightlines;
    CONFUSER_FRACTION of both get confusers. Slightly fewer than `size`
    spectra come back when injections are dropped.
    """
    half = size // 2
    real = np.flatnonzero(label == 1)
    clean_rows = np.flatnonzero(clean)
    if clean_rows.size == 0:
        raise click.ClickException("no absorber-free sightline to inject into or to use as a negative")
    real = rng.permutation(real)[:half]
    injected = rng.choice(clean_rows, half - real.size)
    negatives = rng.choice(clean_rows, size - half)
    rows = np.concatenate([real, injected, negatives])
    flux = sightlines.flux[rows].copy()
    ivar = sightlines.ivar[rows]
    z_qso = sightlines.z_qso[rows]
    y = np.concatenate([np.ones(real.size, np.int8), np.zeros(size - real.size, np.int8)])
    new = slice(real.size, real.size + injected.size)
    y[new] = inject_strong_doublets(flux[new], ivar[new], z_qso[new], rng)
    confused = np.flatnonzero(rng.random(size) < CONFUSER_FRACTION)
    flux[confused] = inject_confusers(flux[confused], z_qso[confused], rng)
    x, _ = prepare_input(flux, ivar, z_qso)
    detectable = np.ones(size, bool)
    detectable[new] = y[new] == 1
    order = rng.permutation(np.flatnonzero(detectable))
    return x[order], y[order].astype(np.float32)


def train(model, sightlines, is_validation, paths, epochs, samples_per_epoch, batch_size=256, seed=0,
          initial_epoch=0, history=None):
    """Fit the CNN one freshly drawn epoch at a time; checkpoint and record history after each.

    Returns the history, dict of lists (loss, accuracy, val_loss, val_accuracy).
    """
    label, clean = sightline_labels(sightlines)
    train_rows = np.flatnonzero(~is_validation)
    validation = None
    if is_validation.any():
        val = sightlines.subset(is_validation)
        val_label, val_clean = sightline_labels(val)
        validation = draw_epoch(val, val_label, val_clean, max(2 * len(val), 64), np.random.default_rng(seed + 10**6))
        validation = (validation[0][..., None], validation[1])
    part = sightlines.subset(train_rows)
    history = {key: list(values) for key, values in (history or {}).items()}
    for epoch in range(initial_epoch, epochs):
        x, y = draw_epoch(part, label[train_rows], clean[train_rows], samples_per_epoch,
                          np.random.default_rng([seed, epoch]))
        fit_epoch(model, x[..., None], y, epoch, epochs, paths, history, batch_size, validation)
    return history


@click.command("mgii")
@click.option("--sim", "sim_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Simulator output: DIR/spectra/ and DIR/truth.fits (with MGII_ABSORBERS).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Trained model, NAME.keras.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option("--samples-per-epoch", type=click.IntRange(2), default=None, show_default="2 x training sightlines",
              help="Spectra drawn per epoch, half positives.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
@click.option("--learning-rate", default=1e-3, show_default=True, type=float)
@click.option("--validation-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--resume", is_flag=True, help="Continue from NAME.checkpoint.keras and its state file.")
def command(sim_dir, out, epochs, samples_per_epoch, batch_size, learning_rate, validation_fraction, seed, resume):
    """Train the MgII absorber CNN (Adam, binary cross-entropy) on a simulator run's quasars."""
    if not out.endswith(".keras"):
        raise click.BadParameter("the output name must end in .keras", param_hint="--out")
    paths = output_paths(out)
    paths["model"].parent.mkdir(parents=True, exist_ok=True)

    from qsopipe.models import quasarnet
    quasarnet.configure_threads()
    import keras

    from qsopipe.models.mgii import build_model
    from qsopipe.models.train_quasarnet import object_ids, split_by_object

    sightlines = read_sim_sightlines(sim_dir)
    label, _ = sightline_labels(sightlines)
    log.info("%d sightlines, %d with a strong absorber", len(sightlines), int(label.sum()))
    is_validation = split_by_object(object_ids(sightlines.thing_id, sightlines.plate, sightlines.mjd,
                                               sightlines.fiberid), validation_fraction, seed)
    keras.utils.set_random_seed(seed)
    if resume:
        model, initial_epoch, history = load_checkpoint(paths)
        log.info("resuming from %s after epoch %d", paths["checkpoint"], initial_epoch)
    else:
        model = build_model(learning_rate)
        initial_epoch, history = 0, {}
    size = samples_per_epoch or 2 * int((~is_validation).sum())
    history = train(model, sightlines, is_validation, paths, epochs, size, batch_size, seed, initial_epoch, history)
    save_model(model, paths["model"])
    write_json(paths["history"], history)
    plot_history(history, paths["plot"])
    click.echo(f"wrote {paths['model']}, {paths['history']}, {paths['plot']}")
