"""The files a training run writes beside its model, shared by the trainers."""

import json
import logging
import os
from pathlib import Path

import numpy as np

from qsopipe.pipeline.atomic import atomic_path

log = logging.getLogger(__name__)


def output_paths(out):
    """Paths of the trained model and its companions, from OUT (NAME.keras)."""
    out = Path(out)
    stem = out.with_suffix("")
    return {"model": out, "checkpoint": Path(f"{stem}.checkpoint.keras"),
            "state": Path(f"{stem}.checkpoint.json"), "history": Path(f"{stem}.history.json"),
            "plot": Path(f"{stem}.history.png")}


def write_json(path, payload):
    """Write `payload` as JSON to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(payload, handle, indent=1)


def load_checkpoint(paths):
    """(model, epochs done, history so far) of an interrupted run, from its checkpoint and state file."""
    import click
    import keras

    if not (paths["checkpoint"].exists() and paths["state"].exists()):
        raise click.ClickException(f"--resume: no checkpoint {paths['checkpoint']} with {paths['state']}")
    state = json.loads(paths["state"].read_text())
    return keras.models.load_model(paths["checkpoint"]), state["epoch"], state["history"]


def fit_epoch(model, x, y, epoch, epochs, paths, history, batch_size, validation=None):
    """Fit `model` on (x, y) for epoch `epoch` (from 0) of `epochs`; extend `history` (dict of lists) in
    place, save the checkpoint and the state file that `load_checkpoint` reads, and log the epoch's figures."""
    result = model.fit(x, y, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch,
                       validation_data=validation, shuffle=True, verbose=2)
    for key, values in result.history.items():
        history.setdefault(key, []).extend(float(value) for value in values)
    model.save(paths["checkpoint"])
    write_json(paths["state"], {"epoch": epoch + 1, "history": history})
    log.info("epoch %d/%d: %s", epoch + 1, epochs, {key: values[-1] for key, values in history.items()})


def save_model(model, path):
    """Save a Keras model to `path` (NAME.keras) through a temporary .keras name and a rename."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial.keras")
    model.save(partial)
    os.replace(partial, path)


def plot_history(history, path):
    """Loss and accuracy per epoch, training and validation (PNG)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(f"{prefix}{metric}")
            if values:
                axes.plot(np.arange(1, len(values) + 1), values, style, label="validation" if prefix else "training")
        axes.set(xlabel="epoch", ylabel="binary cross-entropy" if metric == "loss" else metric)
        axes.legend()
    figure.savefig(path, dpi=100)
