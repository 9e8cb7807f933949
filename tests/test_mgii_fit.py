"""MgII doublet localisation and fit on hand-made spectra."""

import numpy as np
import pytest

from qsopipe.models.train_mgii import FEII_CONFUSER_LINES
from qsopipe.pipeline.constants import (
    CIII_EMISSION, CIV_1548, CIV_1550, FWHM_PER_SIGMA, MGII_2796, MGII_2803, MGII_SYSTEM_FEII_LINES, SIII_1526,
    SIIV_1394, SIIV_1403, SPEED_OF_LIGHT_KMS,
)
from qsopipe.stages.mgii_fit import (
    CIV_FILTER_RATIO, CIV_SEPARATION_PIX, DOUBLET_SEPARATION_PIX, FILTER_RATIO, FILTER_SIGMA_PIX,
    FIT_HALF_WIDTH_PIX, PIXEL_WIDTH, WAVE, DoubletCriteria, accepted_doublets, bridge_masked_pixels, civ_fits,
    civ_fits_better, doublet_ew_at, doublet_filter_snr_at, doublet_matched_filter, doublet_profile, find_absorbers,
    fit_doublet, fit_doublets, refit_absorbers, running_continuum, search_doublets, system_snr_at,
    with_continuum_error,
)

CRITERIA = DoubletCriteria()


def _single_lines(lines, fwhm_rest=1.7):
    """Depth of Gaussian lines [(rest A, z, rest EW A)] on the grid, (3841,)."""
    depth = np.zeros(WAVE.size)
    for rest, z, ew in lines:
        centre, sigma = rest * (1 + z), fwhm_rest / FWHM_PER_SIGMA * (1 + z)
        depth += ew * (1 + z) / (np.sqrt(2 * np.pi) * sigma) * np.exp(-0.5 * ((WAVE - centre) / sigma) ** 2)
    return depth


def _spectrum(absorbers, snr=50.0, seed=0, fwhm_rest=1.7, other_lines=()):
    """Power law with a broad emission bump, Gaussian doublets (z_abs, rest EW_2796, rest EW_2803), noise.

    fwhm_rest is the line FWHM in the absorber's rest frame, Angstrom;
    other_lines are further absorption lines [(rest A, z, rest EW A)].
    """
    continuum = 10.0 * (WAVE / 5000.0) ** -1.5 * (1 + 0.4 * np.exp(-0.5 * ((WAVE - CIII_EMISSION * 3.1) / 40.0) ** 2))
    sigma_kms = fwhm_rest / FWHM_PER_SIGMA / MGII_2796 * SPEED_OF_LIGHT_KMS
    depth = sum(doublet_profile(z, ew1 * (1 + z), ew2 * (1 + z), sigma_kms) for z, ew1, ew2 in absorbers)
    depth = depth + _single_lines(other_lines, fwhm_rest)
    ivar = (snr / continuum) ** 2
    noise = np.random.default_rng(seed).normal(size=WAVE.size) / np.sqrt(ivar)
    return continuum * (1 - depth) + noise, ivar, continuum


def test_the_continuum_error_adds_to_the_noise_in_quadrature():
    """Noise 0.5 on a continuum of 20 with a 2% continuum error: sqrt(0.25 + 0.16); masked pixels stay masked."""
    ivar = with_continuum_error(np.array([[4.0, 0.0]]), np.array([[20.0, 20.0]]), 0.02)
    assert ivar[0, 0] == pytest.approx(1 / 0.41) and ivar[0, 1] == 0.0


def test_profile_area_is_the_equivalent_width():
    for sigma_kms in (15.0, 80.0, 200.0):
        depth = doublet_profile(1.3, 2.0, 1.0, sigma_kms)
        assert np.sum(depth * PIXEL_WIDTH) == pytest.approx(3.0, rel=1e-6)


def test_doublet_separation_on_grid():
    assert DOUBLET_SEPARATION_PIX == pytest.approx(np.log10(MGII_2803 / MGII_2796) / 1e-4)
    assert 11.0 < DOUBLET_SEPARATION_PIX < 11.3


def test_bridge_equals_numpy_interp_row_by_row():
    """Masked runs inside, at either end, a lone good pixel, a row without any good pixel, and no mask."""
    rng = np.random.default_rng(5)
    flux = rng.normal(size=(7, 300))
    ivar = (rng.random((7, 300)) > 0.3).astype(np.float64)
    ivar[1, :40] = 0
    ivar[2, -25:] = 0
    ivar[3] = 0
    ivar[4] = 0
    ivar[4, 150] = 2.0
    ivar[5] = 1.0
    ivar[6, 100:200] = 0
    expected = flux.copy()
    pixels = np.arange(300)
    for row in range(7):
        good = ivar[row] > 0
        if good.any():
            expected[row, ~good] = np.interp(pixels[~good], pixels[good], flux[row, good])
    np.testing.assert_allclose(bridge_masked_pixels(flux, ivar), expected, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(bridge_masked_pixels(flux, ivar)[3], flux[3])


def test_running_continuum_ignores_absorbers_and_masked_pixels():
    flux, ivar, continuum = _spectrum([(1.4, 2.0, 1.5)], snr=100)
    ivar[1000:1010] = 0
    flux[1000:1010] = -50
    fitted = running_continuum(flux[None], ivar[None])[0]
    line = np.argmin(np.abs(WAVE - MGII_2796 * 2.4))
    assert fitted[line] == pytest.approx(continuum[line], rel=0.02)
    assert fitted[1005] == pytest.approx(continuum[1005], rel=0.02)


def test_matched_filter_peaks_on_the_2796_pixel():
    flux, ivar, continuum = _spectrum([(1.4, 1.0, 0.7)], snr=30)
    snr, amplitude, _ = doublet_matched_filter((1 - flux / continuum)[None], (ivar * continuum ** 2)[None])
    assert abs(np.argmax(snr[0]) - np.argmin(np.abs(WAVE - MGII_2796 * 2.4))) <= 1
    assert snr[0].max() > 20 and amplitude[0, np.argmax(snr[0])] > 0


def test_filter_at_given_pixels_equals_the_whole_filter_at_edges_and_masks():
    flux, ivar, continuum = _spectrum([(1.4, 1.0, 0.7)], snr=30)
    ivar[2000:2006] = 0
    depth, weight = np.stack([1 - flux / continuum] * 2), np.stack([ivar * continuum ** 2] * 2)
    weight[1, :30] = 0
    whole, _, _ = doublet_matched_filter(depth, weight, CIV_SEPARATION_PIX, FILTER_SIGMA_PIX, CIV_FILTER_RATIO)
    columns = np.array([[0, 3, 25, 1995, 2003, 2398, 3835, 3840]] * 2)
    at = doublet_filter_snr_at(depth, weight, np.array([0, 1]), columns, CIV_SEPARATION_PIX, FILTER_SIGMA_PIX,
                               CIV_FILTER_RATIO)
    np.testing.assert_allclose(at, np.take_along_axis(whole, columns, axis=1), rtol=1e-12, atol=1e-12)
    assert at[1, 0] == 0 and at[0, 5] != 0


def _pixel_of_2796(z_abs):
    return int(np.argmin(np.abs(WAVE - MGII_2796 * (1 + z_abs))))


def test_system_snr_is_unit_normal_on_noise_and_adds_the_feii_lines():
    rng = np.random.default_rng(12)
    depth, weight = rng.normal(size=(400, WAVE.size)), np.ones((400, WAVE.size))
    columns = np.tile(np.arange(1000, 3800, 140), (400, 1))
    assert np.std(system_snr_at(depth, weight, np.arange(400), columns)) == pytest.approx(1.0, abs=0.03)

    z_abs = 1.6
    feii = [(rest, z_abs, ratio * 0.8) for rest, ratio in MGII_SYSTEM_FEII_LINES]
    for other_lines, gain in (((), (0.80, 0.90)), (feii, (1.10, 1.35))):
        flux, ivar, continuum = _spectrum([(z_abs, 0.8, 0.56)], snr=8, seed=13, other_lines=other_lines)
        depth, weight = (1 - flux / continuum)[None], (ivar * continuum ** 2)[None]
        column = np.array([[_pixel_of_2796(z_abs)]])
        doublet = doublet_filter_snr_at(depth, weight, np.array([0]), column, DOUBLET_SEPARATION_PIX,
                                        FILTER_SIGMA_PIX, FILTER_RATIO)[0, 0]
        ratio = system_snr_at(depth, weight, np.array([0]), column)[0, 0] / doublet
        assert gain[0] < ratio < gain[1], (other_lines, ratio)


def test_system_snr_is_the_doublet_filter_where_the_feii_lines_are_off_the_grid():
    flux, ivar, continuum = _spectrum([(0.42, 1.0, 0.7)], snr=20, seed=14)
    depth, weight = (1 - flux / continuum)[None], (ivar * continuum ** 2)[None]
    column = np.array([[_pixel_of_2796(0.42)]])
    doublet = doublet_filter_snr_at(depth, weight, np.array([0]), column, DOUBLET_SEPARATION_PIX, FILTER_SIGMA_PIX,
                                    FILTER_RATIO)
    np.testing.assert_allclose(system_snr_at(depth, weight, np.array([0]), column), doublet, rtol=1e-12)


def test_feii_lines_find_a_doublet_too_faint_for_the_doublet_alone():
    z_abs = 1.6
    feii = [(rest, z_abs, ratio * 0.55) for rest, ratio in MGII_SYSTEM_FEII_LINES]
    found = [len(find_absorbers(*_spectrum([(z_abs, 0.55, 0.4)], snr=9, seed=seed, other_lines=lines)[:2],
                                1565 * 3.0, 2770 * 3.0, CRITERIA)) for lines in ((), feii) for seed in range(20, 40)]
    assert sum(found[20:]) >= sum(found[:20]) + 5, found


@pytest.mark.parametrize("z_abs, ew_2796, ew_2803, fwhm_rest", [
    (1.25, 1.2, 0.8, 1.7), (1.65, 0.6, 0.5, 2.5), (2.05, 2.5, 2.2, 1.0),
])
def test_fit_recovers_redshift_and_equivalent_widths(z_abs, ew_2796, ew_2803, fwhm_rest):
    flux, ivar, continuum = _spectrum([(z_abs, ew_2796, ew_2803)], snr=200, seed=3, fwhm_rest=fwhm_rest)
    fitted = running_continuum(flux[None], ivar[None])[0]
    fit = fit_doublet(flux, ivar, fitted, z_abs + 3e-4, ew_guess=1.0)
    assert fit["Z_ABS"] == pytest.approx(z_abs, abs=1e-4)
    assert fit["EW_2796"] == pytest.approx(ew_2796, rel=0.04)
    assert fit["EW_2803"] == pytest.approx(ew_2803, rel=0.05)
    assert 0 < fit["EW_2796_ERR"] < 0.02 and 0 < fit["Z_ABS_ERR"] < 3e-5
    assert fit["SNR_2796"] == pytest.approx(fit["EW_2796"] / fit["EW_2796_ERR"])
    assert accepted_doublets({name: np.array([value]) for name, value in fit.items()}, CRITERIA)[0]


def test_fit_errors_match_the_scatter():
    z_abs, ew = 1.5, 0.8
    pulls = []
    for seed in range(30):
        flux, ivar, continuum = _spectrum([(z_abs, ew, ew / 1.5)], snr=15, seed=seed)
        fit = fit_doublet(flux, ivar, continuum, z_abs, ew_guess=2.0)
        pulls.append((fit["EW_2796"] - ew) / fit["EW_2796_ERR"])
    assert 0.6 < np.std(pulls) < 1.5 and abs(np.mean(pulls)) < 0.6


def test_doublet_ew_at_a_known_position_is_unbiased_with_errors_that_match_the_scatter():
    z_abs, ew_2796, ew_2803, fwhm_rest = 1.4, 0.9, 0.6, 1.7
    sigma_kms = fwhm_rest / FWHM_PER_SIGMA / MGII_2796 * SPEED_OF_LIGHT_KMS
    spectra = [_spectrum([(z_abs, ew_2796, ew_2803)], snr=12, seed=seed, fwhm_rest=fwhm_rest) for seed in range(40)]
    flux, ivar, continuum = (np.array(part) for part in zip(*spectra))
    ew, covariance = doublet_ew_at(flux, ivar, continuum, np.arange(40), np.full(40, z_abs), np.full(40, sigma_kms))
    errors = np.sqrt(np.einsum("kii->ki", covariance))
    pulls = (ew - [ew_2796, ew_2803]) / errors
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.5) and np.all((0.7 < pulls.std(axis=0)) & (pulls.std(axis=0) < 1.4))
    assert np.all(errors < 0.2)
    empty, _ = doublet_ew_at(flux[:1], np.zeros_like(ivar[:1]), continuum[:1], [0], [z_abs], [sigma_kms])
    assert np.all(np.isnan(empty))


def test_two_absorbers_on_one_sightline_are_both_found():
    truth = [(1.3, 0.9, 0.6), (1.72, 0.5, 0.35)]
    flux, ivar, _ = _spectrum(truth, snr=40, seed=5)
    found = find_absorbers(flux, ivar, 1565 * 3.0, 2770 * 3.0, CRITERIA)
    assert len(found) == 2
    np.testing.assert_allclose(found["Z_ABS"], [1.3, 1.72], atol=1e-4)
    assert np.all(np.abs(found["EW_2796"] - [0.9, 0.5]) < 3 * found["EW_2796_ERR"])
    assert np.all(found["SNR_2796"] > 5)


def test_a_neighbour_in_the_fit_region_no_longer_pulls_the_ews_low():
    truth = np.array([(1.5768, 1.2, 1.0), (1.5923, 1.075, 0.72)])
    found, alone = [], []
    for seed in range(6):
        flux, ivar, _ = _spectrum(truth, snr=30, seed=seed)
        continuum = running_continuum(flux[None], ivar[None])
        absorbers = search_doublets(flux[None], ivar[None], [3800.0], [9000.0], continuum, CRITERIA)[0][0]
        assert np.allclose(absorbers["Z_ABS"], truth[:, 0], atol=3e-4)
        found.append(np.stack([absorbers["EW_2796"], absorbers["EW_2803"]], axis=1))
        fits = fit_doublets(flux[None], with_continuum_error(ivar[None], continuum), continuum, [0, 0],
                            absorbers["Z_ABS"], absorbers["EW_2796"] * (1 + absorbers["Z_ABS"]),
                            CRITERIA.max_iterations)
        alone.append(np.stack([fits["EW_2796"], fits["EW_2803"]], axis=1))
    ratio_found, ratio_alone = np.mean(found, axis=0) / truth[:, 1:], np.mean(alone, axis=0) / truth[:, 1:]
    assert np.all(np.abs(ratio_found - 1) < 0.06), ratio_found
    assert np.all(ratio_alone < 0.93), ratio_alone


def test_the_refit_gives_a_broader_2796_line_its_own_width():
    z_abs, ew_2796, ew_2803 = 1.4, 2.0, 1.6
    sigma_2796, sigma_2803 = 120.0, 80.0
    shared, refitted = [], []
    for seed in range(8):
        continuum = 10.0 * (WAVE / 5000.0) ** -1.5
        depth = (doublet_profile(z_abs, ew_2796 * (1 + z_abs), 0.0, sigma_2796)
                 + doublet_profile(z_abs, 0.0, ew_2803 * (1 + z_abs), sigma_2803))
        ivar = (40.0 / continuum) ** 2
        flux = continuum * (1 - depth) + np.random.default_rng(seed).normal(size=WAVE.size) / np.sqrt(ivar)
        fitted = running_continuum(flux[None], ivar[None])
        fits = fit_doublets(flux[None], with_continuum_error(ivar[None], fitted), fitted, [0], [z_abs], [2.0],
                            CRITERIA.max_iterations)
        again = refit_absorbers(flux[None], ivar[None], fitted, np.array([0]), fits)
        shared.append([fits["EW_2796"][0], fits["EW_2803"][0]])
        refitted.append([again["EW_2796"][0], again["EW_2803"][0], again["WIDTH_RATIO"][0]])
    shared, refitted = np.mean(shared, axis=0), np.mean(refitted, axis=0)
    assert shared[0] < 0.95 * ew_2796 and shared[1] > 1.05 * ew_2803, shared
    assert abs(refitted[0] / ew_2796 - 1) < 0.04 and abs(refitted[1] / ew_2803 - 1) < 0.04, refitted
    assert refitted[2] == pytest.approx(sigma_2803 / sigma_2796, abs=0.08)


def test_absorbers_outside_the_window_or_single_lines_are_not_reported():
    flux, ivar, continuum = _spectrum([(1.3, 1.0, 0.7)], snr=40, seed=6)
    assert len(find_absorbers(flux, ivar, 2796 * 2.5, 2800 * 3.0, CRITERIA)) == 0
    single = 1 - 0.6 * np.exp(-0.5 * ((WAVE - 6000.0) / 1.5) ** 2)
    flux, ivar, continuum = _spectrum([], snr=40, seed=7)
    found = find_absorbers(flux * single, ivar, 1565 * 3.0, 2770 * 3.0, CRITERIA)
    assert len(found) == 0


def test_pure_noise_gives_few_false_absorbers():
    false = sum(len(find_absorbers(*_spectrum([], snr=10, seed=seed)[:2], 1565 * 3.0, 2770 * 3.0, CRITERIA))
                for seed in range(20))
    assert false <= 1


@pytest.mark.parametrize("lines", [
    [(CIV_1548, 3.2, 1.2), (CIV_1550, 3.2, 0.75)],
    [(CIV_1548, 3.05, 0.9), (CIV_1550, 3.05, 0.9)],
    [(rest, 1.4, ratio) for rest, ratio in FEII_CONFUSER_LINES],
])
def test_civ_doublet_or_feii_lines_without_mgii_give_no_absorber(lines):
    flux, ivar, _ = _spectrum([], snr=30, seed=8, other_lines=lines)
    assert len(find_absorbers(flux, ivar, 1565 * 4.3, 2770 * 4.3, CRITERIA)) == 0


def test_feii_and_civ_of_a_found_absorber_are_not_new_absorbers():
    z_abs = 1.62
    lines = [(rest, z_abs, 0.6 * 1.5) for rest, _ in MGII_SYSTEM_FEII_LINES]
    lines += [(CIV_1548, z_abs, 1.5), (CIV_1550, z_abs, 1.0)]
    flux, ivar, _ = _spectrum([(z_abs, 2.0, 1.6)], snr=30, seed=9, other_lines=lines)
    found = find_absorbers(flux, ivar, 1565 * 3.9, 2770 * 3.9, CRITERIA)
    np.testing.assert_allclose(found["Z_ABS"], [z_abs], atol=2e-4)


def test_fit_width_outside_the_accepted_range_is_rejected():
    flux, ivar, continuum = _spectrum([(1.4, 1.5, 1.0)], snr=60, seed=10, fwhm_rest=12.0)
    fits = fit_doublets(flux[None], ivar[None], continuum[None], [0], [1.4], [1.0], CRITERIA.max_iterations)
    assert fits["SIGMA_KMS"][0] > CRITERIA.sigma_range_kms[1]
    assert not accepted_doublets(fits, CRITERIA)[0]


def _line_pair_at(first_rest, z_first):
    """An MgII-like pair: a line at first_rest (1 + z_first) and one a doublet separation redder, as
    [(rest A, z, rest EW A)] of an MgII doublet that is not one (both lines as single lines)."""
    z_fake = first_rest * (1 + z_first) / MGII_2796 - 1
    return z_fake, [(MGII_2796, z_fake, 0.8), (MGII_2803, z_fake, 0.6)]


def _veto_case(system, z_system=2.3):
    """An MgII-like pair whose 2796 line is SiII 1526 of a CIV system at z_system ("civ"), or SiIV 1394 of a
    SiIV doublet whose CIV falls on masked pixels ("siiv"), or of one whose CIV is missing ("siiv_no_civ");
    returns (z_fake, flux, ivar) of a spectrum that has the pair and the system's other lines."""
    z_fake, pair = _line_pair_at(SIII_1526 if system == "civ" else SIIV_1394, z_system)
    lines = ([(CIV_1548, z_system, 1.2), (CIV_1550, z_system, 0.8)] if system == "civ"
             else [(SIIV_1403, z_system, 0.7)])
    flux, ivar, _ = _spectrum([], snr=30, seed=21, other_lines=pair + lines)
    if system == "siiv":
        ivar[np.abs(WAVE - CIV_1548 * (1 + z_system)) < 15] = 0.0
    return z_fake, flux, ivar


@pytest.mark.parametrize("system", ["civ", "siiv"])
def test_a_line_of_a_civ_or_siiv_system_under_a_candidate_vetoes_it(system):
    """The candidate's 2796 line is SiII 1526 of a CIV system (CIV doublet found there), or SiIV 1394 of a SiIV
    doublet (its 1403 partner found, its CIV masked): vetoed. Without the system the same pair is an absorber."""
    z_fake, flux, ivar = _veto_case(system)
    window = (1250 * 3.6, 2770 * 3.6)
    pair = _line_pair_at(SIII_1526 if system == "civ" else SIIV_1394, 2.3)[1]
    alone = find_absorbers(*_spectrum([], snr=30, seed=21, other_lines=pair)[:2], *window, CRITERIA)
    assert alone["Z_ABS"] == pytest.approx([z_fake], abs=5e-4)
    assert len(find_absorbers(flux, ivar, *window, CRITERIA)) == 0


def test_a_siiv_doublet_without_its_civ_vetoes_nothing():
    """SiIV 1394/1403 at z 2.3 with CIV missing where the spectrum has data is a chance pair: the MgII-like
    pair on its 1394 line is kept."""
    z_fake, flux, ivar = _veto_case("siiv_no_civ")
    assert find_absorbers(flux, ivar, 1250 * 3.6, 2770 * 3.6, CRITERIA)["Z_ABS"] == pytest.approx([z_fake], abs=5e-4)


@pytest.mark.parametrize("system", ["civ", "siiv"])
def test_a_system_behind_the_quasar_vetoes_nothing(system):
    """The same CIV or SiIV system at z 2.3 vetoes the pair on a quasar at z 2.35, not on one at z 2.2."""
    z_fake, flux, ivar = _veto_case(system)
    continuum = running_continuum(flux[None], ivar[None])
    for z_qso, expected in ((2.2, [z_fake]), (2.35, [])):
        found, _ = search_doublets(flux[None], ivar[None], [1250 * 3.6], [2770 * 3.6], continuum, CRITERIA,
                                   z_qso=[z_qso])
        assert found[0]["Z_ABS"] == pytest.approx(expected, abs=5e-4), z_qso


def test_a_real_doublet_beside_a_civ_system_is_kept():
    """A CIV system whose CIV is much weaker than the MgII line it would explain does not veto it."""
    z_abs, z_system = 1.3, (MGII_2796 * 2.3 / SIII_1526) - 1
    flux, ivar, _ = _spectrum([(z_abs, 1.5, 1.2)], snr=30, seed=22,
                              other_lines=[(CIV_1548, z_system, 0.15), (CIV_1550, z_system, 0.1)])
    assert find_absorbers(flux, ivar, 1250 * 3.6, 2770 * 3.6, CRITERIA)["Z_ABS"] == pytest.approx([z_abs], abs=3e-4)


@pytest.mark.parametrize("ion", ["civ", "mgii"])
def test_the_civ_doublet_fit_tells_civ_from_mgii(ion):
    """Over the MgII candidate's pixels, a CIV doublet fits a CIV doublet better, and an MgII doublet worse."""
    z = 1.75
    pixel = int(np.searchsorted(WAVE, (CIV_1548 if ion == "civ" else MGII_2796) * (1 + z)))
    lines = [(CIV_1548, z, 1.2), (CIV_1550, z, 0.8)] if ion == "civ" else [(MGII_2796, z, 1.2), (MGII_2803, z, 0.8)]
    flux, ivar, continuum = _spectrum([], snr=40, seed=23, other_lines=lines)
    flux, ivar, continuum = flux[None], ivar[None], continuum[None]
    first = np.array([pixel - FIT_HALF_WIDTH_PIX])
    mgii = fit_doublets(flux, ivar, continuum, [0], [WAVE[pixel] / MGII_2796 - 1], [1.0], CRITERIA.max_iterations,
                        first_pixel=first)
    civ = civ_fits(flux, ivar, continuum, np.array([0]), np.array([pixel]), first, mgii["EW_2796"],
                   CRITERIA.max_iterations)
    better = civ_fits_better(civ, mgii["CHI2"])
    assert better.tolist() == [ion == "civ"]


@pytest.mark.parametrize("fwhm_rest, rest, kept", [(5.5, 1450, False), (2.0, 1450, True), (5.5, 2000, True)])
def test_a_broad_doublet_between_lyman_alpha_and_civ_is_dropped(fwhm_rest, rest, kept):
    """Blue of the CIV gap a doublet of line sigma 250 km/s (rest FWHM 5.5 A) is no absorber; a narrow one
    there is, and so is the broad one red of the gap."""
    z = rest * 3.3 / MGII_2796 - 1
    flux, ivar, continuum = _spectrum([(z, 3.0, 2.5)], snr=30, seed=25, fwhm_rest=fwhm_rest)
    found, _ = search_doublets(flux[None], ivar[None], [1250 * 3.3], [2770 * 3.3], continuum[None], CRITERIA,
                               gap=([1522 * 3.3], [1565 * 3.3]))
    assert found[0]["Z_ABS"] == pytest.approx([z] if kept else [], abs=5e-4)


def test_the_path_leaves_out_the_gap_and_masked_pixels():
    flux, ivar, continuum = _spectrum([], snr=30, seed=24)
    window = [1250 * 3.3], [2770 * 3.3]
    _, whole = search_doublets(flux[None], ivar[None], *window, continuum[None], CRITERIA)
    _, gapped = search_doublets(flux[None], ivar[None], *window, continuum[None], CRITERIA,
                                gap=([1522 * 3.3], [1565 * 3.3]))
    expected_gap = (1565 - 1522 * MGII_2796 / MGII_2803) * 3.3 / MGII_2796
    assert whole["DZ"][0] - gapped["DZ"][0] == pytest.approx(expected_gap, rel=0.02)
    assert gapped["ZMIN"][0] == whole["ZMIN"][0] and gapped["ZMAX"][0] == whole["ZMAX"][0]
    assert whole["ZMIN"][0] == pytest.approx(1250 * 3.3 / MGII_2796 - 1, abs=1e-3)  # one pixel
    assert whole["ZMAX"][0] == pytest.approx(2770 * 3.3 / MGII_2803 - 1, abs=1e-3)
    ivar = ivar.copy()
    ivar[(WAVE > 6000) & (WAVE < 6300)] = 0
    _, masked = search_doublets(flux[None], ivar[None], *window, continuum[None], CRITERIA)
    assert whole["DZ"][0] - masked["DZ"][0] == pytest.approx(np.log(6300 / 6000) * 6150 / MGII_2796, rel=0.1)
