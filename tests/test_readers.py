"""The SDSS readers against every real file in ../shared/data/sdss, and bad files."""

import re

import fitsio
import numpy as np
import pytest

from qsopipe.pipeline.discovery import discover
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.sdss import read_dr12q, read_spall, read_spec, read_spplate


def _spec_files(sdss_dir):
    return sorted(sdss_dir.rglob("spec-*.fits"))


def test_every_real_spec_file_reads_as_the_file_says(sdss_dir):
    files = _spec_files(sdss_dir)
    assert len(files) == 89
    for path in files:
        spec = read_spec(path)
        plate, mjd, fiber = (int(g) for g in re.match(r"spec-(\d+)-(\d+)-(\d+)", path.name).groups())
        assert (spec.plate, spec.mjd, int(spec.fibers["FIBERID"][0])) == (plate, mjd, fiber)
        coadd = fitsio.read(path, ext=1)
        names = {n.upper(): n for n in coadd.dtype.names}
        assert spec.flux.shape == (1, len(coadd))
        np.testing.assert_allclose(spec.loglam, coadd[names["LOGLAM"]], atol=1e-6)
        np.testing.assert_array_equal(spec.ivar[0], coadd[names["IVAR"]])
        assert 3500 < 10 ** spec.loglam[0] < 3900 and 9000 < 10 ** spec.loglam[-1] < 10500
        assert np.isfinite(spec.fibers["RA"][0])
        row = fitsio.read(path, ext=2)[0]
        assert spec.fibers["Z_PIPE"][0] == row["Z"] and spec.fibers["ZERR_PIPE"][0] == row["Z_ERR"]
        assert spec.fibers["ZWARNING_PIPE"][0] == row["ZWARNING"]
        assert spec.fibers["CLASS_PIPE"][0] == row["CLASS"].strip()


def test_lite_files_carry_thing_id_and_objtype(sdss_dir):
    spec = read_spec(sdss_dir / "dr16_spec_lite_picca/3655/spec-3655-55240-0002.fits")
    assert spec.fibers["THING_ID"][0] == fitsio.read(
        sdss_dir / "dr16_spec_lite_picca/3655/spec-3655-55240-0002.fits", ext=2)["THING_ID"][0]
    assert spec.fibers["OBJTYPE"][0] == "QSO"


def test_discovery_groups_spec_files_by_plate_mjd(sdss_dir):
    plates, rejects = discover([sdss_dir / "dr16_spec_lite_picca", sdss_dir / "spec_full_pyqsofit"])
    assert sum(len(p.files) for p in plates) == 89
    assert not rejects
    by_name = {p.name: p for p in plates}
    assert len(by_name["3655-55240"].files) == 68
    plate = by_name["3655-55240"].read()
    assert plate.flux.shape[0] == 68 and plate.loglam.ndim == 1
    assert np.all(np.diff(plate.fibers["FIBERID"]) > 0)
    single = read_spec(by_name["3655-55240"].files[0])
    row = int(np.flatnonzero(plate.fibers["FIBERID"] == single.fibers["FIBERID"][0])[0])
    offset = int(round((single.loglam[0] - plate.loglam[0]) / 1e-4))
    np.testing.assert_array_equal(plate.flux[row, offset:offset + single.flux.shape[1]], single.flux[0])


def test_truncated_spplate_is_refused_by_name(sdss_dir):
    path = sdss_dir / "spplate_truncated/spPlate-4055-55359-0020.fits"
    with pytest.raises(InputError, match=r"spPlate-4055-55359-0020\.fits: .*missing HDU1 IVAR"):
        read_spplate(path)


def test_spall_and_dr12q_readers(sdss_dir):
    spall = read_spall(sdss_dir / "dr16_spec_lite_picca/catalogs/spAll-plate3655.fits")
    assert len(spall["PLATE"]) == 93 and set(spall["CLASS"]) == {"QSO", "STAR"}
    truth = read_dr12q(sdss_dir / "dr16_spec_lite_picca/catalogs/cat_for_clustering_plate3655.fits.gz")
    assert len(truth["Z_VI"]) == 79 and np.all(truth["CLASS_PERSON"] == -1)
    assert np.all(truth["THING_ID"] > 0)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"this is not a FITS file" * 200, "not a FITS file"),
])
def test_bad_files_raise_input_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "spPlate-1234-56789.fits"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"spPlate-1234-56789\.fits: .*{reason}"):
        read_spplate(path)


def test_half_a_file_is_refused(tmp_path, sdss_dir):
    source = (sdss_dir / "dr16_spec_lite_picca/3655/spec-3655-55240-0002.fits").read_bytes()
    path = tmp_path / "spec-3655-55240-0002.fits"
    path.write_bytes(source[: len(source) // 2])
    with pytest.raises(InputError, match="spec-3655-55240-0002.fits"):
        read_spec(path)


def test_missing_coadd_column_is_named(tmp_path):
    path = tmp_path / "spec-0001-50000-0001.fits"
    with fitsio.FITS(path, "rw", clobber=True) as fits:
        fits.write(None)
        fits.write({"loglam": np.arange(10, dtype="f4"), "flux": np.ones(10, "f4")})
    with pytest.raises(InputError, match="lacks column.*IVAR, AND_MASK"):
        read_spec(path)
