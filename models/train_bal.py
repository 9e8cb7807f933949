"""`qsopipe train bal`: train the CIV BAL classifier on simulated quasars.

Quasars of simulator runs (`--sim DIR`, repeatable: DIR/spectra/**/
spPlate-*.fits and DIR/truth.fits) at Z_VI >= MIN_Z, put on the MgII grid
by `qsopipe.stages.preprocess.mgii_input`, their CIV windows cut at Z_VI
with PAD pixels either side. Label 1 where BI_CIV > 0 and BAL_FLAG_VI = 1,
0 where BI_CIV = 0 and BAL_FLAG_VI = 0; quasars whose two labels disagree
are left out, as QuasarNET's BAL finder leaves them out (DESIGN.md).

Every epoch shifts each window by a redshift error drawn afresh (normal,
Z_JITTER_KMS, at most PAD pixels), the error of the redshift the stage cuts
at. The validation quasars (a fraction of the objects) get one fixed shift.

Outputs next to OUT (NAME.keras): NAME.keras, NAME.checkpoint.keras and
NAME.checkpoint.json after every epoch (`--resume` continues from them),
NAME.history.json and NAME.history.png.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from qsopipe.models.bal import WINDOW_NPIX, cut_windows, network_input, window_start
from qsopipe.models.simulated_runs import truth_matched_plates
from qsopipe.models.training_files import (fit_epoch, load_checkpoint, output_paths, plot_history, save_model,
                                           write_json)
from qsopipe.pipeline.constants import QUASAR_CLASSES, SPEED_OF_LIGHT_KMS
from qsopipe.pipeline.grids import MGII_DLOGLAM

log = logging.getLogger(__name__)

#: Quasars below this redshift have no BI velocities on the MgII grid.
MIN_Z = 1.6
#: Pixels cut beyond the window either side, the room for the redshift shifts.
PAD = 12
#: Redshift error (km/s, 1 sigma) of the shifts: about the QuasarNET NMAD.
Z_JITTER_KMS = 300.0
#: km/s per MgII-grid pixel.
PIXEL_KMS = SPEED_OF_LIGHT_KMS * np.log(10) * MGII_DLOGLAM


@dataclass
class Windows:
    """Padded CIV windows of labelled quasars.

    flux, ivar : float32 (n, WINDOW_NPIX + 2 PAD); label : int8 (n,); bi_civ (km/s), z_qso : float64 (n,);
    plate, mjd, fiberid : int32 (n,); thing_id : int64 (n,).
    """

    flux: np.ndarray
    ivar: np.ndarray
    label: np.ndarray
    bi_civ: np.ndarray
    z_qso: np.ndarray
    plate: np.ndarray
    mjd: np.ndarray
    fiberid: np.ndarray
    thing_id: np.ndarray


def read_sim_windows(sim_dir):
    """The labelled quasars of a simulator run, with padded CIV windows cut at Z_VI (Windows)."""
    from qsopipe.pipeline.sdss.catalogs import read_dr12q
    from qsopipe.stages.preprocess import clean_pixels, mgii_input

    sim_dir = Path(sim_dir)
    truth = read_dr12q(sim_dir / "truth.fits")
    parts = []
    for plate, row, in_truth in truth_matched_plates(sim_dir, truth):
        bal = truth["BI_CIV"][row] > 0
        agree = bal == (truth["BAL_FLAG_VI"][row] == 1)
        keep = (in_truth & np.isin(truth["CLASS_PERSON"][row], QUASAR_CLASSES) & (truth["Z_VI"][row] >= MIN_Z)
                & agree)
        flux, ivar, _ = clean_pixels(plate.flux[keep], plate.ivar[keep])
        flux, ivar = mgii_input(plate.loglam, flux, ivar)
        rows = row[keep]
        flux, ivar = cut_windows(flux, ivar, window_start(truth["Z_VI"][rows]) - PAD, WINDOW_NPIX + 2 * PAD)
        fibers = plate.fibers[keep]
        parts.append(dict(flux=flux, ivar=ivar, label=bal[keep].astype(np.int8),
                          bi_civ=truth["BI_CIV"][rows].astype(np.float64), z_qso=truth["Z_VI"][rows].astype(np.float64),
                          plate=fibers["PLATE"].astype(np.int32), mjd=fibers["MJD"].astype(np.int32),
                          fiberid=fibers["FIBERID"].astype(np.int32), thing_id=fibers["THING_ID"].astype(np.int64)))
    if not parts:
        raise click.ClickException(f"{sim_dir}: no spPlate files under spectra/")
    windows = Windows(**{name: np.concatenate([part[name] for part in parts]) for name in parts[0]})
    log.info("%s: %d quasars at z >= %.1f, %d BAL, from %d plates", sim_dir, len(windows.label), MIN_Z,
             int(windows.label.sum()), len(parts))
    return windows


def concatenate_windows(parts):
    """One Windows of several."""
    return Windows(**{name: np.concatenate([getattr(part, name) for part in parts])
                      for name in Windows.__dataclass_fields__})


def shifted_input(windows_flux, windows_ivar, rng):
    """Network input (see `qsopipe.models.bal.network_input`) of padded windows each shifted by a drawn
    redshift error; returns (x (n, INPUT_NPIX, 2), usable (n,))."""
    n = windows_flux.shape[0]
    shift = np.clip(np.rint(rng.normal(0.0, Z_JITTER_KMS / PIXEL_KMS, n)), -PAD, PAD).astype(np.int64)
    columns = (PAD + shift)[:, None] + np.arange(WINDOW_NPIX)[None, :]
    return network_input(np.take_along_axis(windows_flux, columns, axis=1),
                         np.take_along_axis(windows_ivar, columns, axis=1))


def train(model, windows, is_validation, paths, epochs, batch_size=256, seed=0, initial_epoch=0, history=None):
    """Fit one freshly shifted epoch at a time; checkpoint and record history after each.

    Returns the history, dict of lists (loss, accuracy, val_loss, val_accuracy).
    """
    validation = None
    if is_validation.any():
        x, usable = shifted_input(windows.flux[is_validation], windows.ivar[is_validation],
                                  np.random.default_rng(seed + 10**6))
        validation = (x[usable], windows.label[is_validation][usable].astype(np.float32))
    train_rows = np.flatnonzero(~is_validation)
    history = {key: list(values) for key, values in (history or {}).items()}
    for epoch in range(initial_epoch, epochs):
        rng = np.random.default_rng([seed, epoch])
        x, usable = shifted_input(windows.flux[train_rows], windows.ivar[train_rows], rng)
        y = windows.label[train_rows].astype(np.float32)
        fit_epoch(model, x[usable], y[usable], epoch, epochs, paths, history, batch_size, validation)
    return history


@click.command("bal")
@click.option("--sim", "sim_dirs", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Simulator output: DIR/spectra/ and DIR/truth.fits. Repeatable.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Trained model, NAME.keras.")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
@click.option("--learning-rate", default=1e-3, show_default=True, type=float)
@click.option("--validation-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--resume", is_flag=True, help="Continue from NAME.checkpoint.keras and its state file.")
def command(sim_dirs, out, epochs, batch_size, learning_rate, validation_fraction, seed, resume):
    """Train the CIV BAL CNN (Adam, binary cross-entropy) on simulator runs' quasars."""
    if not out.endswith(".keras"):
        raise click.BadParameter("the output name must end in .keras", param_hint="--out")
    paths = output_paths(out)
    paths["model"].parent.mkdir(parents=True, exist_ok=True)

    from qsopipe.models import quasarnet
    quasarnet.configure_threads()
    import keras

    from qsopipe.models.bal import build_model
    from qsopipe.models.train_quasarnet import object_ids, split_by_object

    windows = concatenate_windows([read_sim_windows(sim_dir) for sim_dir in sim_dirs])
    is_validation = split_by_object(object_ids(windows.thing_id, windows.plate, windows.mjd, windows.fiberid),
                                    validation_fraction, seed)
    keras.utils.set_random_seed(seed)
    if resume:
        model, initial_epoch, history = load_checkpoint(paths)
        log.info("resuming from %s after epoch %d", paths["checkpoint"], initial_epoch)
    else:
        model = build_model(learning_rate, seed)
        initial_epoch, history = 0, {}
    history = train(model, windows, is_validation, paths, epochs, batch_size, seed, initial_epoch, history)
    save_model(model, paths["model"])
    write_json(paths["history"], history)
    plot_history(history, paths["plot"])
    click.echo(f"wrote {paths['model']}, {paths['history']}, {paths['plot']}")
