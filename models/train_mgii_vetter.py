"""`qsopipe train mgii-vetter`: the MgII candidate vetter (`qsopipe.stages.mgii_vetter`) from simulated runs.

The doublet finder runs with the vetter's pool criteria (`POOL_CRITERIA`)
over the whole path of every searchable quasar sightline of each run
(`qsopipe.stages.mgii.measure_candidates`); each credible candidate is
labelled real when a truth absorber of any strength lies within
|dz| < MATCH_DZ on its sightline. A multilayer perceptron (HIDDEN units,
ReLU, sigmoid output) learns P(real) from the standardised features with
binary cross-entropy; it is written as JSON with the region thresholds
given, which are chosen on a tuning simulation (models/weights/mgii_vetter.md).
The pool is wider than the finder's own criteria, which the vetter judges
in the stage, so that it sees enough false candidates.
"""

import logging
from dataclasses import asdict, replace

import click
import numpy as np

from qsopipe.stages.mgii_fit import DoubletCriteria
from qsopipe.stages.mgii_vetter import FEATURES, Vetter, save_vetter

log = logging.getLogger(__name__)

#: The candidates the vetter learns from, wider than the finder's criteria: doublet-filter peaks at S/N 3.5,
#: fitted at system S/N 4.2, both lines at 1.5 and 1.0 sigma at least (everywhere), any doublet ratio, the CNN
#: window's width bound everywhere; the CIV fit and the vetoes still apply.
POOL_CRITERIA = replace(DoubletCriteria(), candidate_snr=3.5, detect_snr=4.2, min_snr_doublet=0.0, min_snr_2796=1.5,
                        min_snr_2803=1.0, ratio_tolerance=1e9, lya_civ_min_snr=(1.5, 1.0),
                        lya_civ_max_sigma_kms=DoubletCriteria().sigma_range_kms[1])
#: A candidate within this |z_fit - z_true| of a truth absorber (any strength) of its sightline is real.
MATCH_DZ = 0.005
#: Hidden layer widths of the perceptron.
HIDDEN = (32, 32)
#: Sightlines per finder call.
CHUNK = 500


def labelled_candidates(sim_dir, pool=POOL_CRITERIA):
    """(features (k, len(FEATURES)), real bool (k,)) of the pool's credible candidates on a run's sightlines."""
    from qsopipe.models.train_mgii import read_sim_sightlines
    from qsopipe.stages.mgii import measure_candidates

    sightlines = read_sim_sightlines(sim_dir)
    truth = sightlines.absorbers
    features, real = [], []
    for start in range(0, len(sightlines.z_qso), CHUNK):
        chunk = slice(start, start + CHUNK)
        found = measure_candidates(sightlines.flux[chunk], sightlines.ivar[chunk], sightlines.z_qso[chunk], pool)
        rows = found.rows[found.credible] + start
        z_fit = found.fits["Z_ABS"][found.credible]
        features.append(found.features)
        real.append(np.array([np.any(np.abs(truth["z_abs"][truth["row"] == row] - z) < MATCH_DZ)
                              for row, z in zip(rows, z_fit)], bool))
    features, real = np.concatenate(features), np.concatenate(real)
    log.info("%s: %d sightlines, %d candidates, %d real", sim_dir, len(sightlines.z_qso), len(real), real.sum())
    return features, real


def build_network(n_features, hidden=HIDDEN):
    """The perceptron: Dense(ReLU) layers of `hidden` units and a Dense(1, sigmoid) output."""
    import keras

    layers = [keras.Input((n_features,))] + [keras.layers.Dense(units, activation="relu") for units in hidden]
    return keras.Sequential(layers + [keras.layers.Dense(1, activation="sigmoid")])


def to_vetter(network, mean, scale, thresholds):
    """A numpy `Vetter` with the trained network's weights."""
    layers = tuple((np.asarray(layer.kernel, np.float64), np.asarray(layer.bias, np.float64))
                   for layer in network.layers)
    return Vetter(layers, mean, scale, dict(thresholds))


@click.command("mgii-vetter")
@click.option("--sim", "sim_dirs", required=True, multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Simulator output (spectra/, truth.fits); repeatable.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Vetter file, NAME.json.")
@click.option("--window-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="P(real) an absorber in the CNN window needs.")
@click.option("--lya-civ-threshold", default=0.9, show_default=True, type=click.FloatRange(0, 1),
              help="P(real) an absorber between Lyman-alpha and CIV needs.")
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
@click.option("--validation-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--seed", default=0, show_default=True, type=int)
def command(sim_dirs, out, window_threshold, lya_civ_threshold, epochs, batch_size, validation_fraction, seed):
    """Train the MgII candidate vetter on the doublet finder's candidates in simulated runs."""
    import keras

    from qsopipe.models.quasarnet import configure_threads

    configure_threads()
    parts = [labelled_candidates(sim_dir) for sim_dir in sim_dirs]
    features = np.concatenate([part[0] for part in parts])
    real = np.concatenate([part[1] for part in parts]).astype(np.float32)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    keras.utils.set_random_seed(seed)
    network = build_network(len(FEATURES))
    network.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    order = np.random.default_rng(seed).permutation(len(real))
    history = network.fit((features[order] - mean) / scale, real[order], epochs=epochs, batch_size=batch_size,
                          validation_split=validation_fraction, verbose=0).history
    vetter = to_vetter(network, mean, scale, {"CNN_WINDOW": window_threshold, "LYA_CIV": lya_civ_threshold})
    provenance = {"sims": list(sim_dirs), "pool": asdict(POOL_CRITERIA), "candidates": int(len(real)),
                  "real": int(real.sum()), "epochs": epochs,
                  "seed": seed, "final": {key: float(values[-1]) for key, values in history.items()}}
    save_vetter(out, vetter, provenance)
    click.echo(f"wrote {out}: {len(real)} candidates ({int(real.sum())} real), "
               + ", ".join(f"{key} {values[-1]:.4f}" for key, values in history.items()))
