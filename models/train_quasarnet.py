"""`qsopipe train quasarnet`: train QuasarNET on labelled spectra.

Inputs: the simulator's output (`--sim DIR`: DIR/spectra/**/spPlate-*.fits
and DIR/truth.fits), real spectra (`--spectra DIR`, spec or spPlate files),
or `qsopipe preprocess` shards (`--shards DIR`), the last two with one or
more DR12Q-superset truth tables (`--truth`, concatenated). Spectra are
preprocessed with `qsopipe.stages.preprocess.quasarnet_input` (shards hold
its output) and joined to the truth on (PLATE, MJD, FIBERID).

Training set: fibers with PREP_FLAG == 0 that are in the truth table with
Z_CONF_PERSON >= 3, plus sky fibers (CLASS_PERSON 0) with usable data, which
teach the network that noise is not a quasar (a catalog keeps every fiber,
sky fibers included); every other fiber is dropped. CLASS_PERSON 3 and 30
are quasars, anything else a non-quasar (targets and weights: `qsopipe.models.boxes.training_targets`).
Validation: a fraction of the *objects* (THING_ID; a fiber without one is
its own object), so repeat spectra of one object never straddle the split.

Outputs next to OUT (OUT = NAME.keras): NAME.keras (the trained model),
NAME.checkpoint.keras and NAME.checkpoint.json (after every epoch; `--resume`
continues from them), NAME.history.json and NAME.history.png. `--init MODEL`
starts a new run from MODEL's weights instead of a new network.

TensorFlow is imported only inside the command, after the thread counts
are set from the environment (see `qsopipe.models.quasarnet.configure_threads`).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from qsopipe.models.boxes import training_targets
from qsopipe.models.training_files import load_checkpoint, output_paths, save_model, write_json
from qsopipe.pipeline.constants import CLASS_PERSON, Z_CONF_CONFIDENT
from qsopipe.pipeline.discovery import discover
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.ids import match_rows, target_id

log = logging.getLogger(__name__)

#: Fiber id columns that training needs from a plate or a shard.
ID_COLUMNS = ("PLATE", "MJD", "FIBERID", "THING_ID")


@dataclass
class LabelledSpectra:
    """QuasarNET inputs joined to their truth, one row per fiber; arrays of shape (n,) unless stated.

    x : float32 (n, 443) QuasarNET input; prep_flag : int32 PrepFlag bits.
    plate, mjd, fiberid : int32; thing_id : int64 (-1 if none).
    class_person, z_conf_person, bal_flag_vi : int (-1 where the fiber is not in the truth);
    z_vi : float64; bi_civ : float64 (km/s).
    """

    x: np.ndarray
    prep_flag: np.ndarray
    plate: np.ndarray
    mjd: np.ndarray
    fiberid: np.ndarray
    thing_id: np.ndarray
    class_person: np.ndarray
    z_vi: np.ndarray
    z_conf_person: np.ndarray
    bal_flag_vi: np.ndarray
    bi_civ: np.ndarray

    def subset(self, rows):
        return LabelledSpectra(**{name: value[rows] for name, value in vars(self).items()})


def read_truth(truth_paths):
    """One DR12Q-superset truth table (dict of columns) from one or more files, concatenated."""
    from qsopipe.pipeline.sdss.catalogs import read_dr12q

    tables = [read_dr12q(path) for path in truth_paths]
    return {name: np.concatenate([table[name] for table in tables]) for name in tables[0]}


def read_labelled_spectra(spectra_dirs, truth_paths):
    """Read, preprocess and label every plate under `spectra_dirs` (LabelledSpectra)."""
    from qsopipe.stages.preprocess import quasarnet_input

    plates, rejects = discover(spectra_dirs)
    for reject in rejects:
        log.warning("skipped %s: %s", reject.path, reject.reason)
    if not plates:
        raise InputError(", ".join(map(str, spectra_dirs)), "no spPlate or spec files found")
    xs, flags, fibers = [], [], []
    for plate_input in plates:
        try:
            plate = plate_input.read()
        except InputError as error:
            log.warning("skipped plate %s: %s", plate_input.name, error)
            continue
        x, flag = quasarnet_input(plate.loglam, plate.flux, plate.ivar, plate.and_mask)
        xs.append(x)
        flags.append(flag)
        fibers.append({name: plate.fibers[name] for name in ID_COLUMNS})
    return label_spectra(xs, flags, fibers, read_truth(truth_paths))


def read_labelled_shards(shard_dirs, truth_paths):
    """Label the QN_FLUX of every preprocess shard under `shard_dirs` (LabelledSpectra).

    Shards are `qsopipe preprocess` output (plate-*.parquet, searched recursively),
    so training skips the read and rebin of the plates.
    """
    import pyarrow.parquet as pq

    from qsopipe.pipeline.parquet_io import list_column

    files = sorted(path for directory in shard_dirs for path in Path(directory).rglob("plate-*.parquet"))
    if not files:
        raise InputError(", ".join(map(str, shard_dirs)), "no plate-*.parquet shards found")
    xs, flags, fibers = [], [], []
    for path in files:
        shard = pq.read_table(path, columns=["QN_FLUX", "PREP_FLAG", *ID_COLUMNS])
        xs.append(list_column(shard, "QN_FLUX"))
        flags.append(shard.column("PREP_FLAG").to_numpy())
        fibers.append({name: shard.column(name).to_numpy() for name in ID_COLUMNS})
    return label_spectra(xs, flags, fibers, read_truth(truth_paths))


def label_spectra(xs, flags, fibers, truth):
    """Join per-plate QuasarNET inputs to a truth table on (PLATE, MJD, FIBERID) (LabelledSpectra).

    xs : list of float32 (nfiber, 443); flags : list of PREP_FLAG (nfiber,);
    fibers : list of dicts of ID_COLUMNS arrays (nfiber,); truth : `read_truth` output.
    """
    fibers = {name: np.concatenate([part[name] for part in fibers]) for name in ID_COLUMNS}
    row, known = match_rows(target_id(fibers["PLATE"], fibers["MJD"], fibers["FIBERID"]),
                            target_id(truth["PLATE"], truth["MJD"], truth["FIBERID"]))
    log.info("%d fibers read from %d plates, %d of them in the truth table", len(row), len(xs), known.sum())

    def from_truth(name, missing):
        values = truth[name][row]
        return np.where(known, values, np.asarray(missing, values.dtype))

    thing_id = np.where(fibers["THING_ID"] >= 0, fibers["THING_ID"], from_truth("THING_ID", -1))
    return LabelledSpectra(
        x=np.concatenate(xs), prep_flag=np.concatenate(flags).astype(np.int32),
        plate=fibers["PLATE"].astype(np.int32), mjd=fibers["MJD"].astype(np.int32),
        fiberid=fibers["FIBERID"].astype(np.int32), thing_id=thing_id.astype(np.int64),
        class_person=from_truth("CLASS_PERSON", -1), z_vi=from_truth("Z_VI", np.nan),
        z_conf_person=from_truth("Z_CONF_PERSON", -1), bal_flag_vi=from_truth("BAL_FLAG_VI", -1),
        bi_civ=from_truth("BI_CIV", np.nan))


def training_rows(prep_flag, class_person, z_conf_person):
    """Fibers fit for training: clean input, in the truth, confident redshift or a sky fiber. bool (n,)."""
    class_person = np.asarray(class_person)
    confident = (class_person > 0) & (np.asarray(z_conf_person) >= Z_CONF_CONFIDENT)
    return (np.asarray(prep_flag) == 0) & (confident | (class_person == CLASS_PERSON["UNKNOWN"]))


def object_ids(thing_id, plate, mjd, fiberid):
    """One id per object: THING_ID when >= 0, else -(TARGETID + 1), so each such fiber is alone. int64 (n,)."""
    thing_id = np.asarray(thing_id, np.int64)
    return np.where(thing_id >= 0, thing_id, -target_id(plate, mjd, fiberid) - 1)


def split_by_object(ids, fraction=0.1, seed=0):
    """Validation mask: a random `fraction` of the distinct ids, with all their rows. bool (n,)."""
    unique = np.unique(ids)
    nval = int(round(fraction * len(unique)))
    if fraction > 0 and len(unique) > 1:
        nval = min(max(nval, 1), len(unique) - 1)
    chosen = np.random.default_rng(seed).permutation(unique)[:nval]
    return np.isin(ids, chosen)


def fit_quasarnet(model, train, validation, paths, epochs, batch_size=256, initial_epoch=0, history=None):
    """Fit a compiled QuasarNET; checkpoint after every epoch. Returns the history (dict of lists).

    train, validation : (x (n, 443), targets list of 7 (n, 26), weights list of 7 (n,)).
    paths : `output_paths(...)`; history : the history so far when resuming.
    """
    import keras

    history = {key: list(values) for key, values in (history or {}).items()}

    class SaveState(keras.callbacks.Callback):
        """After each epoch, record the epoch count and the history so far next to the checkpoint."""

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                history.setdefault(key, []).append(float(value))
            write_json(paths["state"], {"epoch": epoch + 1, "history": history})

    x_train, t_train, w_train = train
    fit_kwargs = {}
    if validation is not None and len(validation[0]):
        x_val, t_val, w_val = validation
        fit_kwargs["validation_data"] = (x_val[..., None], t_val, w_val)
    model.fit(x_train[..., None], t_train, sample_weight=w_train, batch_size=batch_size, epochs=epochs,
              initial_epoch=initial_epoch, shuffle=True, verbose=2,
              callbacks=[keras.callbacks.ModelCheckpoint(str(paths["checkpoint"])), SaveState()],
              **fit_kwargs)
    return history


def plot_history(history, path):
    """Loss and mean box accuracy over the finders, per epoch, training and validation (PNG)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for prefix, style in (("", "-"), ("val_", "--")):
        label = "validation" if prefix else "training"
        if f"{prefix}loss" in history:
            loss_axes.plot(np.arange(1, len(history[f"{prefix}loss"]) + 1), history[f"{prefix}loss"],
                           style, label=label)
        accuracy = [values for key, values in history.items()
                    if key.endswith("box_accuracy") and key.startswith(prefix) and
                    (prefix or not key.startswith("val_"))]
        if accuracy:
            mean = np.mean(np.array(accuracy), axis=0)
            accuracy_axes.plot(np.arange(1, len(mean) + 1), mean, style, label=label)
    loss_axes.set(xlabel="epoch", ylabel="loss (sum over finders)", yscale="log")
    accuracy_axes.set(xlabel="epoch", ylabel="box accuracy (mean over finders)")
    for axes in (loss_axes, accuracy_axes):
        axes.legend()
    figure.savefig(path, dpi=100)


@click.command("quasarnet")
@click.option("--sim", "sim_dir", type=click.Path(exists=True, file_okay=False),
              help="Simulator output: DIR/spectra/ and DIR/truth.fits.")
@click.option("--spectra", "spectra_dirs", multiple=True, type=click.Path(exists=True),
              help="Real spectra (spec or spPlate files, searched recursively); repeatable.")
@click.option("--shards", "shard_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Preprocess shards (plate-*.parquet, searched recursively); repeatable.")
@click.option("--truth", "truth_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="DR12Q-superset truth table for --spectra or --shards; repeatable (concatenated).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Trained model, NAME.keras.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
@click.option("--learning-rate", default=1e-3, show_default=True, type=float)
@click.option("--validation-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--conv-layers", default=4, show_default=True, type=click.IntRange(1))
@click.option("--filters", default=100, show_default=True, type=click.IntRange(1))
@click.option("--dense-units", default=100, show_default=True, type=click.IntRange(1))
@click.option("--padding", default="valid", show_default=True, type=click.Choice(["valid", "same"]))
@click.option("--dropout", default=0.0, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--init", "init_path", type=click.Path(exists=True, dir_okay=False),
              help="Start from this QuasarNET's weights (fine-tuning) instead of a new network.")
@click.option("--resume", is_flag=True, help="Continue from NAME.checkpoint.keras and its state file.")
def command(sim_dir, spectra_dirs, shard_dirs, truth_paths, out, epochs, batch_size, learning_rate,
            validation_fraction, conv_layers, filters, dense_units, padding, dropout, seed, init_path, resume):
    """Train QuasarNET (Adam with AMSGrad) and write OUT plus checkpoints, history JSON and plot."""
    if [bool(sim_dir), bool(spectra_dirs), bool(shard_dirs)].count(True) != 1 or \
            bool(sim_dir) == bool(truth_paths):
        raise click.UsageError("give either --sim DIR, or --spectra DIR or --shards DIR together with --truth FILE")
    if init_path and resume:
        raise click.UsageError("--init starts a new run and --resume continues one: give one of them")
    if not out.endswith(".keras"):
        raise click.BadParameter("the output name must end in .keras", param_hint="--out")
    if sim_dir:
        spectra_dirs, truth_paths = [Path(sim_dir) / "spectra"], [Path(sim_dir) / "truth.fits"]
    paths = output_paths(out)
    paths["model"].parent.mkdir(parents=True, exist_ok=True)

    from qsopipe.models import quasarnet
    threads = quasarnet.configure_threads()
    import keras
    import tensorflow as tf
    log.info("TensorFlow %s sees GPUs %s; intra-op threads %s", tf.__version__,
             [d.name for d in tf.config.list_physical_devices("GPU")] or "none (CPU)", threads or "default")

    try:
        if shard_dirs:
            data = read_labelled_shards(shard_dirs, truth_paths)
        else:
            data = read_labelled_spectra(spectra_dirs, truth_paths)
    except InputError as error:
        raise click.ClickException(str(error)) from error
    keep = training_rows(data.prep_flag, data.class_person, data.z_conf_person)
    log.info("training on %d of %d fibers (dropped: PREP_FLAG != 0, not in truth, "
             "Z_CONF_PERSON < %d)", keep.sum(), len(keep), Z_CONF_CONFIDENT)
    if not keep.any():
        raise click.ClickException("no fiber is fit for training")
    data = data.subset(keep)
    is_validation = split_by_object(object_ids(data.thing_id, data.plate, data.mjd, data.fiberid),
                                    validation_fraction, seed)

    def arrays(rows):
        part = data.subset(rows)
        targets, weights = training_targets(part.class_person, part.z_vi, part.bal_flag_vi, part.bi_civ)
        return part.x, targets, weights

    keras.utils.set_random_seed(seed)
    if resume:
        model, initial_epoch, history = load_checkpoint(paths)
        log.info("resuming from %s after epoch %d", paths["checkpoint"], initial_epoch)
    else:
        if init_path:
            model = keras.models.load_model(init_path, compile=False)
            log.info("starting from the weights of %s", init_path)
        else:
            model = quasarnet.build_quasarnet(nconv=conv_layers, filters=filters, dense_units=dense_units,
                                              padding=padding, dropout=dropout)
        quasarnet.compile_quasarnet(model, learning_rate)
        initial_epoch, history = 0, {}
    history = fit_quasarnet(model, arrays(~is_validation), arrays(is_validation), paths, epochs,
                            batch_size, initial_epoch, history)
    save_model(model, paths["model"])
    write_json(paths["history"], history)
    plot_history(history, paths["plot"])
    click.echo(f"wrote {paths['model']}, {paths['history']}, {paths['plot']}")
