"""QuasarNET models side by side on real spectra labelled by the SDSS pipeline.

    qsopipe preprocess ../shared/data/sdss/dr16_spec_lite_picca ../shared/data/sdss/spec_full_pyqsofit --out REAL
    python benchmarks/quasarnet_real.py --shards REAL --model models/weights/quasarnet.keras \
        --model PUBLISHED.keras [--json OUT.json]

PUBLISHED.keras is the published Keras-2 weights imported by `qsopipe
import-weights ../shared/data/weights/quasarnet_legacy_keras2_4layer.h5`.
Labels are each spectrum's own pipeline answer (the spec file's HDU2, i.e.
its spAll row: CLASS, Z, ZWARNING), kept where ZWARNING = 0. Every model
runs through the same decision rule (`pipeline/config.yaml`'s c_th, n_th and
c_th_single, or --c-th and --c-th-single).
Per class (quasars split at z 0.8 and 2.1): the number, the number called
quasars and, for quasars, the number with |dv| < 6000 km/s; per model, the
fibers it gets wrong.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from qsopipe.pipeline.config import load_config
from qsopipe.pipeline.parquet_io import list_column
from qsopipe.stages.evaluate import DV_MAX, velocity_offset
from qsopipe.stages.quasarnet import classify_spectra, make_forward

QUASAR_Z_EDGES = (0.0, 0.8, 2.1, 7.0)
LABEL_COLUMNS = ("PLATE", "MJD", "FIBERID", "CLASS_PIPE", "Z_PIPE", "ZWARNING_PIPE", "PREP_FLAG")


def read_labelled(shard_dir):
    """QN inputs (n, 443) and label columns of the fibers with ZWARNING_PIPE = 0, from every shard."""
    tables = [pq.read_table(path) for path in sorted(Path(shard_dir).rglob("plate-*.parquet"))]
    x = np.concatenate([list_column(table, "QN_FLUX") for table in tables])
    labels = {name: np.concatenate([table.column(name).to_numpy(zero_copy_only=False) for table in tables])
              for name in LABEL_COLUMNS}
    keep = labels["ZWARNING_PIPE"] == 0
    labels["CLASS_PIPE"] = np.char.strip(labels["CLASS_PIPE"].astype(str))
    return x[keep], {name: values[keep] for name, values in labels.items()}


def label_groups(labels):
    """Boolean masks per label group: QSO by redshift bin, STAR, GALAXY."""
    is_qso = labels["CLASS_PIPE"] == "QSO"
    groups = {}
    for low, high in zip(QUASAR_Z_EDGES[:-1], QUASAR_Z_EDGES[1:]):
        groups[f"QSO {low:g}<=z<{high:g}"] = is_qso & (labels["Z_PIPE"] >= low) & (labels["Z_PIPE"] < high)
    for name in ("STAR", "GALAXY"):
        groups[name] = labels["CLASS_PIPE"] == name
    return groups


def score(columns, labels):
    """Per group: n, called quasar, right (quasars: called quasar with |dv| < DV_MAX; others: not called)."""
    is_qso = columns["IS_QSO_QN"] == 1
    right_z = np.abs(velocity_offset(columns["Z_QN"], labels["Z_PIPE"])) < DV_MAX
    result = {}
    for name, members in label_groups(labels).items():
        right = (is_qso & right_z) if name.startswith("QSO") else ~is_qso
        result[name] = {"n": int(members.sum()), "called_qso": int((members & is_qso).sum()),
                        "right": int((members & right).sum())}
    wrong = np.flatnonzero(np.where(labels["CLASS_PIPE"] == "QSO", ~(is_qso & right_z),
                                    is_qso & (labels["CLASS_PIPE"] != "QSO")))
    result["wrong"] = [f"{labels['PLATE'][i]}-{labels['MJD'][i]}-{labels['FIBERID'][i]:04d} "
                       f"{labels['CLASS_PIPE'][i]} z {labels['Z_PIPE'][i]:.3f}: "
                       f"{'QSO' if is_qso[i] else 'not QSO'} Z_QN {columns['Z_QN'][i]:.3f}" for i in wrong]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True, help="preprocess shards of the real spectra")
    parser.add_argument("--model", action="append", required=True, help="QuasarNET .keras file; repeatable")
    parser.add_argument("--c-th", type=float, help="line-confidence threshold [default: pipeline/config.yaml's]")
    parser.add_argument("--c-th-single", type=float,
                        help="confidence a one-line quasar needs [default: pipeline/config.yaml's]")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    config = load_config(None, {})
    c_th = config["c_th"] if args.c_th is None else args.c_th
    c_th_single = config["c_th_single"] if args.c_th_single is None else args.c_th_single
    x, labels = read_labelled(args.shards)
    figures = {}
    for model in args.model:
        columns = classify_spectra(x, labels["PREP_FLAG"], make_forward(model), c_th, config["n_th"],
                                   config["bal_th"], c_th_single)
        figures[model] = score(columns, labels)
    for model, result in figures.items():
        print(model)
        for name, row in result.items():
            if name != "wrong":
                print(f"  {name:16s} n {row['n']:3d}  called quasar {row['called_qso']:3d}  right {row['right']:3d}")
        for line in result["wrong"]:
            print(f"  wrong: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
