"""benchmarks/mgii_real_claims.py's repeat test: a doublet measured again in another spectrum of its object."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from qsopipe.pipeline.constants import FWHM_PER_SIGMA, MGII_2796, SPEED_OF_LIGHT_KMS
from qsopipe.stages.mgii_fit import WAVE, doublet_profile

REPO = Path(__file__).resolve().parents[1]
Z_ABS, SIGMA_KMS = 1.3, 1.7 / FWHM_PER_SIGMA / MGII_2796 * SPEED_OF_LIGHT_KMS


def _claims_module():
    spec = importlib.util.spec_from_file_location("mgii_real_claims", REPO / "benchmarks" / "mgii_real_claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sightline(ew_2796, snr, seed):
    """A flat spectrum with an MgII doublet (rest EW_2796, EW_2803 = 0.7 of it) at Z_ABS, S/N per pixel snr."""
    continuum = np.full(WAVE.size, 5.0)
    depth = doublet_profile(Z_ABS, ew_2796 * (1 + Z_ABS), 0.7 * ew_2796 * (1 + Z_ABS), SIGMA_KMS)
    noise = np.random.default_rng(seed).normal(size=WAVE.size) * 5.0 / snr
    return {"flux": continuum * (1 - depth) + noise, "ivar": np.full(WAVE.size, (snr / 5.0) ** 2),
            "continuum": continuum}


@pytest.mark.parametrize("other_ew, other_snr, verdict", [
    (1.0, 10.0, "confirmed"), (0.0, 10.0, "contradicted"), (0.0, 1.5, "inconclusive"),
])
def test_another_spectrum_confirms_contradicts_or_cannot_tell(other_ew, other_snr, verdict):
    claims = _claims_module()
    own = claims.measure_at(_sightline(1.0, 10.0, seed=1), Z_ABS, SIGMA_KMS)
    assert own["DOUBLET"] == pytest.approx(1.7, abs=4 * own["DOUBLET_ERR"])
    other = claims.measure_at(_sightline(other_ew, other_snr, seed=2), Z_ABS, SIGMA_KMS)
    assert claims.repeat_verdict(own, [other])[0] == verdict


def test_noise_alone_rarely_confirms():
    claims = _claims_module()
    verdicts = [claims.repeat_verdict({"DOUBLET": 1.0, "DOUBLET_ERR": 0.2},
                                      [claims.measure_at(_sightline(0.0, 3.0, seed), Z_ABS, SIGMA_KMS)])[0]
                for seed in range(200)]
    assert verdicts.count("confirmed") <= 3
