"""The MgII candidate vetter: a small network that tells MgII absorbers from the doublet finder's false candidates.

The doublet finder (`qsopipe.stages.mgii_fit.search_doublets`) proposes
the candidates that pass its criteria and vetoes; the vetter then gives,
per candidate, the probability that it is a real absorber, from the
numbers the finder has measured on it (`FEATURES`). A candidate is an
absorber where that probability exceeds the vetter's threshold for its
region (CNN window, or Lyman-alpha to CIV): the vetter only removes
candidates, it never adds one the criteria reject. It learns from a wider
pool of candidates than the criteria let through (looser thresholds, more
false candidates to learn from). The network is a multilayer
perceptron evaluated with numpy; it is trained on simulated candidates
labelled by the simulator's truth (`qsopipe.models.train_mgii_vetter`,
models/weights/mgii_vetter.md).
"""

import functools
import json
from dataclasses import dataclass

import numpy as np

from qsopipe.pipeline.atomic import atomic_path

#: The doublet-ratio range (EW_2796 / EW_2803: optically thick to thin) of RATIO_PULL.
RATIO_RANGE = (1.0, 2.0)

#: What the vetter sees of a candidate, in column order (`candidate_features`).
FEATURES = (
    "SNR_2796", "SNR_2803",        # the fit's rest EW over its error, each line
    "SNR_DOUBLET",                 # the fit's EW_2796 + EW_2803 over its error
    "RATIO_PULL",                  # the larger of the doublet-ratio test's two values over their sigma, within +-10
    "LOG_SIGMA_KMS",               # ln of the fitted line sigma (km/s)
    "LOG_EW_2796",                 # ln of the fitted rest EW_2796 (A), from 0.05
    "LOG_CHI2",                    # ln of the fit's chi^2 (53 pixels, 6 parameters), from 1
    "CIV_DCHI2",                   # sign(d) ln(1 + |d|), d = chi^2 of a CIV doublet fit minus the MgII fit's
    "FILTER_SNR",                  # the MgII doublet matched filter's S/N at the candidate
    "LINE_SNR_2796", "LINE_SNR_2803",  # a single line's matched-filter S/N at either line's position
    "LOG_CONTINUUM_SNR",           # ln of the continuum S/N per pixel (median over +-40 pixels), 0.3-100
    "LYA_CIV",                     # 1 between Lyman-alpha and CIV emission, else 0
)


@dataclass(frozen=True)
class Vetter:
    """A trained vetter.

    layers : list of (weights (m_in, m_out), bias (m_out,)); ReLU between layers, a sigmoid after the last.
    mean, scale : (len(FEATURES),), the training set's feature mean and spread: inputs are standardised.
    thresholds : {"CNN_WINDOW": t, "LYA_CIV": t}, the probability a candidate must exceed in each region.
    """

    layers: tuple
    mean: np.ndarray
    scale: np.ndarray
    thresholds: dict

    def probability(self, features):
        """P(real absorber) of candidates; features (k, len(FEATURES)) -> (k,)."""
        values = (np.asarray(features, np.float64) - self.mean) / self.scale
        for k, (weights, bias) in enumerate(self.layers):
            values = values @ weights + bias
            if k < len(self.layers) - 1:
                values = np.maximum(values, 0.0)
        return 1.0 / (1.0 + np.exp(-values[:, 0]))

    def accepts(self, features, lya_civ):
        """Whether each candidate is an absorber; features (k, len(FEATURES)), lya_civ bool (k,) -> bool (k,)."""
        threshold = np.where(lya_civ, self.thresholds["LYA_CIV"], self.thresholds["CNN_WINDOW"])
        return self.probability(features) > threshold


def candidate_features(fits, filter_snr, civ_chi2, line_snr, continuum_snr, lya_civ):
    """The vetter's input (k, len(FEATURES)) for k candidates.

    fits : fit_doublets' result for them (MgII); filter_snr : (k,), the doublet matched filter's S/N at
    each; civ_chi2 : (k,), chi^2 of a CIV doublet fitted over the same pixels
    (inf where that fit failed); line_snr : (k, 2), single-line S/N at 2796 and 2803; continuum_snr : (k,);
    lya_civ : bool (k,).
    """
    dchi2 = np.nan_to_num(civ_chi2 - fits["CHI2"], posinf=1e6, neginf=-1e6)
    return np.stack([
        fits["SNR_2796"], fits["SNR_2803"], fits["SNR_DOUBLET"],
        np.clip(ratio_pull(fits), -10.0, 10.0),
        np.log(np.clip(fits["SIGMA_KMS"], 5.0, 600.0)),
        np.log(np.clip(fits["EW_2796"], 0.05, None)),
        np.log(np.clip(fits["CHI2"], 1.0, None)),
        np.sign(dchi2) * np.log1p(np.abs(dchi2)),
        filter_snr,
        line_snr[:, 0], line_snr[:, 1],
        np.log(np.clip(continuum_snr, 0.3, 100.0)),
        np.asarray(lya_civ, np.float64),
    ], axis=1)


def ratio_pull(fits):
    """The larger of EW_2796 - r_max EW_2803 and r_min EW_2803 - EW_2796 over its sigma (from COV_EW;
    RATIO_RANGE); at most t where `accepted_doublets`' ratio test passes at tolerance t. (k,)."""
    r_min, r_max = RATIO_RANGE
    covariance = fits["COV_EW"]
    pulls = []
    for a, b in ((1.0, -r_max), (-1.0, r_min)):
        value = a * fits["EW_2796"] + b * fits["EW_2803"]
        variance = a * a * covariance[:, 0, 0] + b * b * covariance[:, 1, 1] + 2 * a * b * covariance[:, 0, 1]
        pulls.append(value / np.sqrt(np.clip(variance, 1e-12, None)))
    return np.maximum(*pulls)


def save_vetter(path, vetter, provenance):
    """Write a vetter as JSON (weights as nested lists), with a provenance dict (training data, figures),
    through a temporary file and a rename."""
    document = {"features": list(FEATURES), "thresholds": vetter.thresholds,
                "mean": vetter.mean.tolist(), "scale": vetter.scale.tolist(),
                "layers": [{"weights": w.tolist(), "bias": b.tolist()} for w, b in vetter.layers],
                "provenance": provenance}
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(document, handle)
        handle.write("\n")


@functools.lru_cache(maxsize=None)
def load_vetter(path):
    """Read a vetter written by `save_vetter` (once per process and path); ValueError if its features are
    not FEATURES."""
    with open(path) as handle:
        document = json.load(handle)
    if tuple(document["features"]) != FEATURES:
        raise ValueError(f"{path}: vetter features {document['features']} are not this version's {list(FEATURES)}")
    layers = tuple((np.asarray(layer["weights"], np.float64), np.asarray(layer["bias"], np.float64))
                   for layer in document["layers"])
    return Vetter(layers, np.asarray(document["mean"], np.float64), np.asarray(document["scale"], np.float64),
                  {key: float(value) for key, value in document["thresholds"].items()})
