"""Tests of the survey simulator (`qsopipe simulate`, qsopipe.stages.simulate)."""

import glob
from pathlib import Path

import fitsio
import numpy as np
import pytest
from click.testing import CliRunner
from scipy.ndimage import median_filter
from scipy.stats import ks_2samp

from qsopipe.pipeline.constants import (CIV_1548, CIV_EMISSION, CLASS_PERSON, HBETA, HDELTA, MGII_2796, MGII_2803,
                                        SIIV_1394, SIIV_1403, SPEED_OF_LIGHT_KMS, Z_CONF_CONFIDENT)
from qsopipe.pipeline.grids import mgii_loglam
from qsopipe.pipeline.sdss import read_spec_plate, read_spplate
from qsopipe.pipeline.sdss.spec import read_spec
from qsopipe.stages.simulate import inject_mgii_doublet, simulate_objects, simulate_plate
from qsopipe.stages.mgii_regions import CIV_GAP_REST, PATH_REST, MgIIRegion, absorber_regions
from qsopipe.stages.simulate.absorbers import (SIIV_DOUBLET_RATIO, SIIV_TO_CIV, STRONG_EW, draw_confusers,
                                              draw_mgii_absorbers, mgii_path)
from qsopipe.stages.simulate.bal import balnicity_index
from qsopipe.stages.simulate.command import command
from qsopipe.stages.simulate.extinction import milky_way_k
from qsopipe.stages.simulate.grid import plate_loglam
from qsopipe.stages.simulate.photometry import magnitudes
from qsopipe.stages.simulate.quasar import draw_quasar_redshifts
from qsopipe.stages.simulate.resolution import gaussian_matrix, wavedisp
from qsopipe.stages.simulate.stars import (STAR_TYPE_NAMES, STAR_TYPES, draw_star_types, resolution_matrix,
                                           shift_to_grid, star_spectra)

NFIBERS = 300
PLUGMAP_COLUMNS = ("FIBERID", "RA", "DEC", "OBJTYPE", "MAG", "XFOCAL", "YFOCAL", "THING_ID",
                   "BOSS_TARGET1", "ANCILLARY_TARGET1")
HEADER_KEYS = ("PLATEID", "MJD", "COEFF0", "COEFF1", "NEXP", "BUNIT", "NWORDER", "WFITTYPE")


def _simulate(outdir, *args):
    result = CliRunner().invoke(command, ["--out", str(outdir), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return Path(outdir)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two plates of NFIBERS fibers with spec-lite files."""
    return _simulate(tmp_path_factory.mktemp("sim"), "--plates", "2", "--fibers", str(NFIBERS), "--seed", "3",
                     "--spec-lite")


def test_spplate_data_model(run):
    paths = sorted(glob.glob(str(run / "spectra" / "*" / "spPlate-*.fits")))
    assert [Path(p).name for p in paths] == ["spPlate-7000-57000.fits", "spPlate-7001-57001.fits"]
    with fitsio.FITS(paths[0]) as fits:
        assert len(fits) == 7
        assert [fits[i].get_exttype() for i in range(7)] == ["IMAGE_HDU"] * 5 + ["BINARY_TBL", "IMAGE_HDU"]
        assert [fits[i].get_extname() for i in range(1, 7)] == ["IVAR", "ANDMASK", "ORMASK", "WAVEDISP",
                                                                "PLUGMAP", "SKY"]
        header = fits[0].read_header()
        for key in HEADER_KEYS:
            assert key in header, key
        assert header["PLATEID"] == 7000 and header["MJD"] == 57000
        assert abs(header["COEFF0"] - 3.5528) < 5e-4 and header["COEFF1"] == pytest.approx(1e-4)
        npix = fits[0].get_dims()[1]
        assert 4550 <= npix <= 4700
        wave = 10 ** (header["COEFF0"] + header["COEFF1"] * np.array([0, npix - 1]))
        assert wave[0] < 3600 and wave[1] > 10300
        for i in range(5):
            assert tuple(fits[i].get_dims()) == (NFIBERS, npix)
        assert fits[0].read().dtype == np.float32 and fits[1].read().dtype == np.float32
        assert fits[2].read().dtype == np.int32 and fits[3].read().dtype == np.int32
        assert tuple(fits[6].get_dims()) == (NFIBERS, npix)
        plugmap = fits[5].read()
        for column in PLUGMAP_COLUMNS:
            assert column in plugmap.dtype.names, column
        assert plugmap["MAG"].shape == (NFIBERS, 5)
        assert set(np.char.strip(plugmap["OBJTYPE"].astype(str))) <= {"QSO", "STAR", "GALAXY", "SKY", "SPECTROPHOTO_STD"}


def test_readers_accept_simulated_files(run):
    plate = read_spplate(run / "spectra" / "7000" / "spPlate-7000-57000.fits")
    assert plate.nfiber == NFIBERS and plate.plate == 7000 and plate.mjd == 57000
    assert np.isfinite(plate.flux).all() and (plate.ivar >= 0).all()
    lite = read_spec_plate(sorted(glob.glob(str(run / "spectra" / "lite" / "7000" / "spec-7000-57000-*.fits"))))
    assert lite.nfiber == NFIBERS
    np.testing.assert_array_equal(lite.fibers["FIBERID"], plate.fibers["FIBERID"])
    np.testing.assert_array_equal(lite.fibers["OBJTYPE"], plate.fibers["OBJTYPE"])
    row = 17
    offset = int(round((lite.loglam[0] - plate.loglam[0]) / 1e-4))
    good = lite.ivar[row] > 0
    np.testing.assert_allclose(lite.flux[row][good], plate.flux[row, offset:offset + lite.loglam.size][good])
    with fitsio.FITS(run / "spectra" / "lite" / "7000" / "spec-7000-57000-0018.fits") as fits:
        assert fits[1].get_colnames() == ["FLUX", "LOGLAM", "IVAR", "AND_MASK", "OR_MASK", "WDISP", "SKY", "MODEL"]
        meta = fits[2].read()
        assert len(meta) == 1
        for column in ("PLATE", "MJD", "FIBERID", "PLUG_RA", "PLUG_DEC", "OBJTYPE", "THING_ID", "CLASS", "Z"):
            assert column in meta.dtype.names


def test_truth_covers_every_fiber(run):
    truth = fitsio.read(run / "truth.fits", "TRUTH")
    assert len(truth) == 2 * NFIBERS
    for plate in (7000, 7001):
        assert sorted(truth["FIBERID"][truth["PLATE"] == plate]) == list(range(1, NFIBERS + 1))
    for column in ("PLATE", "MJD", "FIBERID", "THING_ID", "CLASS_PERSON", "Z_VI", "Z_CONF_PERSON",
                   "BAL_FLAG_VI", "BI_CIV", "OBJTYPE"):
        assert column in truth.dtype.names
    assert set(truth["CLASS_PERSON"]) <= set(CLASS_PERSON.values())
    sky = np.char.strip(truth["OBJTYPE"].astype(str)) == "SKY"
    assert (truth["CLASS_PERSON"][sky] == CLASS_PERSON["UNKNOWN"]).all()
    assert (truth["Z_CONF_PERSON"][truth["CLASS_PERSON"] > 0] == Z_CONF_CONFIDENT).all()
    assert ((truth["CLASS_PERSON"] == CLASS_PERSON["QSO_BAL"]) == (truth["BAL_FLAG_VI"] == 1)).all()
    mgii = fitsio.read(run / "truth.fits", "MGII_ABSORBERS")
    assert set(mgii.dtype.names) >= {"PLATE", "MJD", "FIBERID", "Z_ABS", "EW_2796", "EW_2803"}
    assert len(mgii) > 0


def test_object_mix_is_a_boss_quasar_plate():
    sim = simulate_plate(7100, 57100, 1000, seed=11)
    kind = sim.spectra.truth["KIND"]
    objects = ~np.isin(kind, ("SKY", "DEAD"))
    share = {k: np.mean(kind[objects] == k) for k in ("QSO", "STAR", "STD", "GALAXY", "BLGALAXY")}
    assert 0.52 <= share["QSO"] + share["BLGALAXY"] <= 0.63
    assert 0.32 <= share["STAR"] + share["STD"] <= 0.42
    assert 0.02 <= share["GALAXY"] <= 0.09
    assert 0.05 <= np.mean(kind == "SKY") <= 0.08
    dead = kind == "DEAD"
    assert 0 < dead.sum() < 20 and (sim.spectra.ivar[dead] == 0).all()
    sky = kind == "SKY"
    pull = sim.spectra.flux[sky] * np.sqrt(sim.spectra.ivar[sky])
    assert abs(np.median(pull[sim.spectra.ivar[sky] > 0])) < 0.1
    z = sim.spectra.truth["Z_VI"][kind == "QSO"]
    assert 0 < z.min() and z.max() <= 5.5 and 2.0 < np.median(z) < 2.6
    bal_share = np.mean(sim.spectra.truth["SUBTYPE"][(kind == "QSO")][z > 1.6] == "BAL")
    assert 0.05 <= bal_share <= 0.18


def test_same_seed_same_output_and_disjoint_plates(tmp_path):
    first = _simulate(tmp_path / "a", "--plates", "1", "--fibers", "60", "--seed", "5")
    second = _simulate(tmp_path / "b", "--plates", "1", "--fibers", "60", "--seed", "5")
    assert (first / "truth.fits").read_bytes() == (second / "truth.fits").read_bytes()
    a = read_spplate(first / "spectra" / "7000" / "spPlate-7000-57000.fits")
    b = read_spplate(second / "spectra" / "7000" / "spPlate-7000-57000.fits")
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.and_mask, b.and_mask)
    other = _simulate(tmp_path / "c", "--plates", "1", "--fibers", "60", "--seed", "6", "--first-plate", "8000",
                      "--first-mjd", "58000")
    truth = fitsio.read(other / "truth.fits", "TRUTH")
    assert set(truth["PLATE"]) == {8000} and set(truth["MJD"]) == {58000}


def test_mgii_fraction_sets_strong_absorber_share():
    z = np.full(400, 2.0)
    sim = simulate_objects(mgii_loglam(), ["QSO"] * 400, np.random.default_rng(1), z=z, mag=np.full(400, 20.0),
                           mgii_fraction=0.5, with_noise=False)
    mgii = sim.mgii
    carrying = np.unique(mgii["ROW"][mgii["EW_2796"] >= STRONG_EW])
    assert 0.43 <= carrying.size / 400 <= 0.57
    z_min, z_max = mgii_path(z[mgii["ROW"]])
    assert (mgii["Z_ABS"] >= z_min).all() and (mgii["Z_ABS"] <= z_max).all() and (mgii["Z_ABS"] < 2.0).all()
    first = np.r_[True, np.diff(mgii["ROW"]) != 0]
    assert (mgii["EW_2796"][first] >= STRONG_EW).all()
    assert (absorber_regions(mgii["Z_ABS"][first], 2.0) & MgIIRegion.CNN_WINDOW).all()
    assert (absorber_regions(mgii["Z_ABS"][~first], 2.0) & MgIIRegion.LYA_CIV).any()
    ratio = mgii["EW_2796"] / mgii["EW_2803"]
    assert (ratio >= 1.0 - 1e-6).all() and (ratio <= 2.0 + 1e-6).all()
    assert (mgii["FWHM"] >= 0.5).all()
    none = simulate_objects(mgii_loglam(), ["QSO"] * 50, np.random.default_rng(2), z=np.full(50, 2.0),
                            mgii_fraction=0.0, with_noise=False)
    assert len(none.mgii) == 0


def test_mgii_absorbers_cover_the_whole_path():
    rng = np.random.default_rng(4)
    z_qso = draw_quasar_redshifts(6000, rng)
    mgii = draw_mgii_absorbers(z_qso, rng)
    z_min, z_max = mgii_path(z_qso[mgii["row"]])
    assert (mgii["z_abs"] >= z_min).all() and (mgii["z_abs"] <= z_max).all()
    assert (MGII_2803 * (1 + mgii["z_abs"]) <= 10300.0).all()
    regions = absorber_regions(mgii["z_abs"], z_qso[mgii["row"]])
    rest = MGII_2796 * (1 + mgii["z_abs"]) / (1 + z_qso[mgii["row"]])
    in_gap = (rest * MGII_2803 / MGII_2796 > CIV_GAP_REST[0]) & (rest < CIV_GAP_REST[1])
    assert (regions[~in_gap] != 0).all() and (regions[in_gap] == 0).all() and 0 < in_gap.mean() < 0.1
    for region in (MgIIRegion.CNN_WINDOW, MgIIRegion.LYA_CIV, MgIIRegion.PROXIMATE):
        assert ((regions & region) != 0).sum() >= 5, region
    sim = simulate_objects(mgii_loglam(), ["QSO"] * 300, rng, mag=np.full(300, 20.0), with_noise=False)
    rows = sim.mgii["ROW"]
    sim_regions = absorber_regions(sim.mgii["Z_ABS"], sim.truth["Z_VI"][rows])
    assert len(rows) > 100 and np.mean(sim_regions != 0) > 0.9


def test_mgii_redshifts_follow_the_dr12_catalogue():
    mgii = draw_mgii_absorbers(np.full(5000, 2.5), np.random.default_rng(5))
    z_min, z_max = mgii_path(2.5)
    assert mgii["row"].size == pytest.approx(5000 * 0.4 * (z_max - z_min), rel=0.05)
    with np.load(Path(__file__).parents[1] / "stages" / "simulate" / "data" / "mgii_dr12_distribution.npz") as data:
        catalogue = data["z"]
    on_path = catalogue[(catalogue >= z_min) & (catalogue <= z_max)]
    for quantile in (0.25, 0.5, 0.75):
        assert np.quantile(mgii["z_abs"], quantile) == pytest.approx(np.quantile(on_path, quantile), abs=0.05)


def test_civ_systems_carry_siiv_doublets():
    rng = np.random.default_rng(6)
    z_qso = rng.uniform(2.0, 3.5, 2000)
    metals = draw_confusers(z_qso, rng)
    ion, rest = metals["ion"], metals["rest_A"]
    assert set(ion) == {"CIV", "SIIV", "SIII", "ALII", "UNKNOWN"}
    civ = ion == "CIV"
    blue, red = civ & (rest == CIV_1548), civ & (rest != CIV_1548)
    assert blue.sum() == red.sum() > 500
    assert (metals["z_abs"][blue] <= z_qso[metals["row"][blue]]).all()
    assert (CIV_1548 * (1 + metals["z_abs"][blue]) >= PATH_REST[0] * (1 + z_qso[metals["row"][blue]]) - 1e-6).all()
    systems = {}
    for k in range(ion.size):
        systems.setdefault((metals["row"][k], metals["z_abs"][k]), {})[rest[k]] = metals["ew"][k]
    ratios = np.array([(lines[SIIV_1394] / lines[CIV_1548], lines[SIIV_1394] / lines[SIIV_1403])
                       for lines in systems.values() if CIV_1548 in lines])
    assert len(ratios) == blue.sum()
    assert SIIV_TO_CIV[0] <= ratios[:, 0].min() and ratios[:, 0].max() <= SIIV_TO_CIV[1]
    assert SIIV_DOUBLET_RATIO[0] <= ratios[:, 1].min() and ratios[:, 1].max() <= SIIV_DOUBLET_RATIO[1]
    siiv_only = [lines for lines in systems.values() if CIV_1548 not in lines and SIIV_1394 in lines]
    assert len(siiv_only) > 100 and all(set(lines) == {SIIV_1394, SIIV_1403} for lines in siiv_only)
    single = ion == "UNKNOWN"
    wave = metals["rest_A"][single] * (1 + metals["z_abs"][single])
    z_single = z_qso[metals["row"][single]]
    assert (wave >= PATH_REST[0] * (1 + z_single) - 1e-6).all()
    assert (wave <= PATH_REST[1] * (1 + z_single) + 1e-6).all()


def test_inject_mgii_doublet_conserves_equivalent_width():
    loglam = mgii_loglam()
    flux = np.ones((3, loglam.size), np.float32)
    z_abs = np.array([0.6, 1.1, 1.7])
    ew_2796, ew_2803 = np.array([0.4, 1.5, 3.0]), np.array([0.3, 1.0, 2.9])
    inject_mgii_doublet(loglam, flux, z_abs, ew_2796, ew_2803, np.array([1.7, 0.9, 2.5]))
    wave = 10 ** loglam
    dlam = np.gradient(wave)
    for row in range(3):
        for rest, ew in ((MGII_2796, ew_2796[row]), (MGII_2803, ew_2803[row])):
            centre = rest * (1 + z_abs[row])
            near = np.abs(wave - centre) < 3.5 * (1 + z_abs[row])
            measured = np.sum((1 - flux[row, near]) * dlam[near]) / (1 + z_abs[row])
            assert measured == pytest.approx(ew, rel=0.06)


def test_balnicity_index_of_a_box_trough():
    velocity = np.arange(0.0, 30001.0, 50.0)
    flux = np.ones((2, velocity.size))
    flux[0, (velocity >= 5000) & (velocity < 9000)] = 0.5
    flux[1, (velocity >= 5000) & (velocity < 6500)] = 0.5
    bi = balnicity_index(velocity, flux)
    assert bi[0] == pytest.approx((1 - 0.5 / 0.9) * 2000.0, rel=0.03)
    assert bi[1] == 0.0


def _smoothed_measures(loglam, flux, ivar, z):
    """level(lo, hi), peak(lo, hi): median and maximum of the 11-pixel median-smoothed flux over rest [lo, hi] A.

    Each is NaN where 5 or fewer good pixels fall in the range.
    """
    wave = 10 ** loglam / (1 + z)
    good = ivar > 0
    smooth = median_filter(np.where(good, flux, np.nan), 11, mode="nearest")

    def level(lo, hi):
        inside = (wave > lo) & (wave < hi) & good
        return np.nanmedian(smooth[inside]) if inside.sum() > 5 else np.nan

    def peak(lo, hi):
        inside = (wave > lo) & (wave < hi) & good
        return np.nanmax(smooth[inside]) if inside.sum() > 5 else np.nan

    return level, peak


def _line_ratios(loglam, flux, ivar, z):
    """Smoothed CIV and Lya peak over the local continuum, and the median per-pixel S/N."""
    good = ivar > 0
    level, peak = _smoothed_measures(loglam, flux, ivar, z)
    blue, red = level(1440, 1475), level(1680, 1710)
    civ_continuum = blue + (red - blue) * (CIV_EMISSION - 1457) / (1695 - 1457)
    return (peak(1530, 1570) / civ_continuum, peak(1205, 1230) / level(1275, 1295),
            np.median(flux[good] * np.sqrt(ivar[good])))


@pytest.mark.shared
def test_simulated_quasars_match_real_boss_quasars(sdss_dir):
    """Compare with the real DR16 quasars at hand (78 spec-lite files, 46 at 2.1 < z < 2.8).

    Bands (stated honestly, from the sizes of the samples and the known bias of
    the real sample, which is brighter than a full BOSS plate):
    - median per-quasar S/N per pixel of simulated BOSS-mix quasars within a factor
      2 of the real sample's (real ~5.2 here; full BOSS plates ~2.6; simulation ~3.5);
    - median CIV and Lya peak/continuum at matched redshift within 25% of the real
      medians, and a two-sample KS test not rejecting at p < 0.01.
    """
    real = []
    for path in sorted(glob.glob(str(sdss_dir / "dr16_spec_lite_picca" / "*" / "spec-*.fits"))):
        meta = fitsio.read(path, 2, columns=["CLASS", "Z"])[0]
        if meta["CLASS"].strip() == "QSO":
            coadd = fitsio.read(path, 1)
            real.append((float(meta["Z"]), *_line_ratios(coadd["LOGLAM"].astype(np.float64), coadd["FLUX"],
                                                           coadd["IVAR"], float(meta["Z"]))))
    real = np.array(real)
    assert len(real) >= 40
    loglam = plate_loglam()
    mixed = simulate_objects(loglam, ["QSO"] * 300, np.random.default_rng(2))
    sim_snr = [np.median(f[i > 0] * np.sqrt(i[i > 0])) for f, i in zip(mixed.flux, mixed.ivar)]
    assert 0.5 <= np.median(sim_snr) / np.median(real[:, 3]) <= 2.0
    matched = real[(real[:, 0] > 2.1) & (real[:, 0] < 2.8)]
    rng = np.random.default_rng(1)
    z = rng.choice(matched[:, 0], 300)
    sim = simulate_objects(loglam, ["QSO"] * 300, rng, z=z)
    simulated = np.array([_line_ratios(loglam, sim.flux[i], sim.ivar[i], z[i]) for i in range(300)])
    for column in (0, 1):
        sim_values = simulated[:, column][np.isfinite(simulated[:, column])]
        real_values = matched[:, column + 1][np.isfinite(matched[:, column + 1])]
        assert 0.75 <= np.median(sim_values) / np.median(real_values) <= 1.33
        assert ks_2samp(sim_values, real_values).pvalue > 0.01


def _low_z_line_ratios(loglam, flux, ivar, z):
    """Smoothed H-beta and MgII peaks over their local continua, and [OIII] 5007 over H-beta (peaks)."""
    level, peak = _smoothed_measures(loglam, flux, ivar, z)
    hbeta = peak(4830, 4890)
    return (hbeta / (0.5 * (level(4720, 4770) + level(5080, 5120))), peak(4990, 5020) / hbeta,
            peak(2770, 2830) / (0.5 * (level(2650, 2700) + level(2950, 3000))))


@pytest.mark.shared
def test_simulated_low_redshift_quasars_match_real_ones(sdss_dir):
    """The real quasars below z 1.5 in ../shared (30 with a confident pipeline redshift, 20 below z 0.8).

    H-beta and MgII peak over continuum and [OIII] 5007 over H-beta of
    simulated quasars at the real ones' redshifts (BOSS-mix magnitudes):
    medians within 25% of the real medians, two-sample KS not rejecting at
    p < 0.01 (real medians 1.76, 1.35, 1.92; simulated 1.70, 1.24, 1.90).
    """
    real = []
    for path in sorted(glob.glob(str(sdss_dir / "**" / "spec-*.fits"), recursive=True)):
        plate = read_spec(path)
        fiber = plate.fibers[0]
        z = float(fiber["Z_PIPE"])
        if str(fiber["CLASS_PIPE"]).strip() == "QSO" and fiber["ZWARNING_PIPE"] == 0 and z < 1.5:
            real.append((z, *_low_z_line_ratios(plate.loglam, plate.flux[0], plate.ivar[0], z)))
    real = np.array(real)
    assert len(real) >= 25
    loglam = plate_loglam()
    rng = np.random.default_rng(3)
    z = rng.choice(real[:, 0], 300)
    sim = simulate_objects(loglam, ["QSO"] * 300, rng, z=z)
    simulated = np.array([_low_z_line_ratios(loglam, sim.flux[i], sim.ivar[i], z[i]) for i in range(300)])
    for column in range(3):
        sim_values = simulated[:, column][np.isfinite(simulated[:, column])]
        real_values = real[:, column + 1][np.isfinite(real[:, column + 1])]
        assert 0.75 <= np.median(sim_values) / np.median(real_values) <= 1.33
        assert ks_2samp(sim_values, real_values).pvalue > 0.01


def test_gaussian_matrix_rows_have_the_asked_width():
    sigma = np.tile([0.0, 0.2, 0.36, 0.7, 1.0, 1.4], 40)
    matrix = gaussian_matrix(sigma).toarray().astype(np.float64)
    offset = np.arange(sigma.size)[None, :] - np.arange(sigma.size)[:, None]
    inner = slice(10, sigma.size - 10)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose((matrix * offset).sum(axis=1)[inner], 0.0, atol=1e-5)
    np.testing.assert_allclose(np.sqrt((matrix * offset**2).sum(axis=1))[inner], sigma[inner], atol=1e-3)


@pytest.mark.shared
def test_wavedisp_follows_real_boss_wdisp(sdss_dir):
    """The simulator's WAVEDISP is within 0.06 pixel of the median WDISP of the real DR16 spec-lite files."""
    loglam = plate_loglam()
    curves = []
    for path in sorted(glob.glob(str(sdss_dir / "dr16_spec_lite_picca" / "*" / "spec-*.fits"))):
        coadd = fitsio.read(path, 1, columns=["LOGLAM", "WDISP", "IVAR"])
        good = (coadd["IVAR"] > 0) & (coadd["WDISP"] > 0.3)
        curves.append(np.interp(loglam, coadd["LOGLAM"][good], coadd["WDISP"][good], left=np.nan, right=np.nan))
    curves = np.array(curves)
    covered = np.isfinite(curves).any(axis=0)
    assert len(curves) >= 40 and covered.mean() > 0.95
    real = np.nanmedian(curves[:, covered], axis=0)
    assert np.abs(wavedisp(loglam)[covered] - real).max() < 0.06
    observed = simulate_objects(loglam, ["QSO", "STAR"], np.random.default_rng(0))
    np.testing.assert_array_equal(observed.wavedisp[1], wavedisp(loglam))


def test_milky_way_law_is_normalised_to_e_b_minus_v():
    assert milky_way_k(1e4 / 1.82) == pytest.approx(3.1, abs=1e-6)
    assert milky_way_k(4400.0) - milky_way_k(5500.0) == pytest.approx(1.0, abs=0.05)
    wave = np.geomspace(3100.0, 30000.0, 500)
    assert (np.diff(milky_way_k(wave)) < 0).all()
    assert milky_way_k(1e4 / 1.1 - 1e-6) == pytest.approx(milky_way_k(1e4 / 1.1 + 1e-6), rel=0.01)
    with pytest.raises(ValueError):
        milky_way_k(2000.0)


def _band_mean(loglam, flux, lo, hi):
    """Mean of noiseless flux (n, npix) over lo-hi A, (n,)."""
    wave = 10 ** loglam
    return flux[:, (wave >= lo) & (wave < hi)].mean(axis=1)


def _type_spectra(name, n, seed, **kwargs):
    loglam = plate_loglam()
    kind = np.full(n, STAR_TYPE_NAMES.index(name))
    return loglam, star_spectra(loglam, kind, np.random.default_rng(seed), **kwargs)[0]


def test_star_subtypes_come_with_their_shares():
    kind = draw_star_types(40000, np.random.default_rng(8))
    for k, (name, share) in enumerate(STAR_TYPES):
        assert np.mean(kind == k) == pytest.approx(share, abs=4 * np.sqrt(share * (1 - share) / 40000)), name
    assert (draw_star_types(50, np.random.default_rng(8), standard=np.ones(50, bool))
            == STAR_TYPE_NAMES.index("F")).all()
    sim = simulate_objects(plate_loglam(), ["STAR"] * 1500 + ["STD"] * 20, np.random.default_rng(9), with_noise=False)
    subtype = sim.truth["SUBTYPE"]
    assert set(subtype[:1500]) == set(STAR_TYPE_NAMES) and set(subtype[1500:]) == {"F"}


def test_star_spectra_are_finite_and_positive():
    wave = 10 ** plate_loglam()
    for name in STAR_TYPE_NAMES:
        _, flux = _type_spectra(name, 200, 1)
        assert np.isfinite(flux).all() and (flux >= 0).all(), name
        assert (flux[:, wave > 4500] > 0).all(), name
        if name not in ("K", "M", "CARBON"):
            assert (flux > 0).all(), name


def test_star_features_by_type():
    """Noiseless line and band indices: TiO5 (Reid et al. 1995, vacuum), H-delta core depth,
    H-beta wings 40 A from the line, all over nearby continuum windows."""
    indices = {}
    for name in ("F", "G", "K", "A", "M", "WD", "CV"):
        loglam, flux = _type_spectra(name, 300, 2, velocity_kms=np.zeros(300))
        band = lambda lo, hi: _band_mean(loglam, flux, lo, hi)  # noqa: E731
        indices[name] = {
            "tio5": band(7128, 7137) / band(7044, 7048),
            "hdelta": band(HDELTA - 3, HDELTA + 3) / (0.5 * (band(4030, 4060) + band(4150, 4180))),
            "hbeta": band(HBETA - 3, HBETA + 3) / (0.5 * (band(4780, 4800) + band(4930, 4950))),
            "hbeta_wings": (0.5 * (band(HBETA - 44, HBETA - 36) + band(HBETA + 36, HBETA + 44))
                            / (0.5 * (band(4700, 4730) + band(5010, 5040))))}
    median = {name: {key: np.median(v) for key, v in values.items()} for name, values in indices.items()}
    assert median["M"]["tio5"] < 0.6 and np.mean(indices["M"]["tio5"] < 0.9) > 0.85
    assert min(median[name]["tio5"] for name in ("F", "G", "A", "WD")) > 0.93
    assert median["A"]["hdelta"] < 0.45 < median["F"]["hdelta"] < median["G"]["hdelta"] < median["K"]["hdelta"]
    assert np.mean(indices["WD"]["hbeta_wings"] < 0.9) > 0.5 and np.mean(indices["A"]["hbeta_wings"] < 0.9) < 0.05
    assert np.mean(indices["CV"]["hbeta"] > 1.3) > 0.9


def test_radial_velocity_shifts_lines():
    """The velocity that best maps the star at rest onto the moving one (Balmer lines, 3800-5000 A) is the one drawn."""
    velocity = np.array([0.0, 300.0, -450.0])
    loglam, flux = _type_spectra("A", 3, 4, velocity_kms=velocity, ebv=np.zeros(3))
    _, rest = _type_spectra("A", 3, 4, velocity_kms=np.zeros(3), ebv=np.zeros(3))
    wave = 10 ** loglam
    lines = (wave > 3800) & (wave < 5000)
    trial = np.arange(-600.0, 600.1, 2.0)
    for row, v in enumerate(velocity):
        moved = [np.interp(wave[lines], wave * (1 + t / SPEED_OF_LIGHT_KMS), rest[row]) for t in trial]
        misfit = np.sum((np.array(moved) - flux[row, lines]) ** 2, axis=1)
        assert trial[np.argmin(misfit)] == pytest.approx(v, abs=8.0)


def test_extinction_reddens_stars():
    loglam = plate_loglam()
    ebv = np.array([0.0, 0.1, 0.3])
    colours = []
    for value in ebv:
        _, flux = _type_spectra("F", 20, 6, ebv=np.full(20, value))
        mags = magnitudes(loglam, flux)
        colours.append(mags[:, 1] - mags[:, 2])
    reddening = np.array(colours) - colours[0]
    assert (reddening[1] > 0).all() and (reddening[2] > reddening[1]).all()
    np.testing.assert_allclose(reddening[2], 0.3 * (milky_way_k(4690.0) - milky_way_k(6160.0)), rtol=0.1)


def test_star_spectra_reach_the_instrument_resolution():
    """A line at the templates' shipped resolution, shifted and convolved, has the width WAVEDISP says."""
    templates = np.load(Path(__file__).parents[1] / "stages" / "templates" / "star_archetypes.npz")
    loglam = plate_loglam()
    grid = templates["kmin"] + np.arange(templates["A_basis"].shape[1])
    rng = np.random.default_rng(7)
    velocity = rng.uniform(-300, 300, 400)
    for centre in (500, 2500, 4300):
        template = np.exp(-0.5 * ((grid - centre) / float(templates["sigma_px"])) ** 2)[None, :].repeat(400, 0)
        shifted = shift_to_grid(template.astype(np.float32), loglam, velocity / SPEED_OF_LIGHT_KMS)
        line = (resolution_matrix(loglam) @ shifted.T).T
        pixels = np.arange(loglam.size)
        mean = (line * pixels).sum(axis=1) / line.sum(axis=1)
        variance = (line * (pixels[None, :] - mean[:, None]) ** 2).sum(axis=1) / line.sum(axis=1)
        assert np.sqrt(variance.mean()) == pytest.approx(wavedisp(loglam)[centre], rel=0.03)
        assert np.sqrt(variance).max() < 1.1 * wavedisp(loglam)[centre]


def test_same_seed_same_stars():
    kinds = ["STAR"] * 40 + ["STD"] * 3
    first = simulate_objects(plate_loglam(), kinds, np.random.default_rng(12))
    second = simulate_objects(plate_loglam(), kinds, np.random.default_rng(12))
    np.testing.assert_array_equal(first.flux, second.flux)
    np.testing.assert_array_equal(first.truth, second.truth)
