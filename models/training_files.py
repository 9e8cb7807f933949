"""The files a training run writes beside its model, shared by both trainers."""

import json
from pathlib import Path

from qsopipe.atomic import atomic_path


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
