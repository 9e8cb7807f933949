"""The files a training run writes beside its model, shared by both trainers."""

import json
import os
from pathlib import Path

from qsopipe.pipeline.atomic import atomic_path


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


def save_model(model, path):
    """Save a Keras model to `path` (NAME.keras) through a temporary .keras name and a rename."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial.keras")
    model.save(partial)
    os.replace(partial, path)
