"""The input-format registry: which format claims a file, by its name or by its content, and what it reads."""

import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from qsopipe.pipeline.discovery import UNRECOGNISED, discover
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.formats import FORMATS, claim_by_content, claim_by_name
from qsopipe.pipeline.sdss import read_spplate, spec, spplate
from qsopipe.stages.simulate.command import command as simulate

#: The format each SDSS file-name prefix stands for; other files belong to no format.
FORMAT_OF_PREFIX = {"spPlate": spplate.FORMAT, "spec": spec.FORMAT}


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    """One simulated plate of 5 fibers: spectra/7000/spPlate-7000-57000.fits and spectra/lite/7000/spec-*.fits."""
    out = tmp_path_factory.mktemp("sim")
    result = CliRunner().invoke(simulate, ["--out", str(out), "--plates", "1", "--fibers", "5", "--seed", "1",
                                           "--spec-lite"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "spectra"


def assert_claimed_by_its_format(path):
    expected = FORMAT_OF_PREFIX.get(path.name.split("-")[0])
    by_name, by_content = claim_by_name(path.name), claim_by_content(path)
    if expected is None:
        assert (by_name, by_content) == (None, None), path
    else:
        assert by_name.format is expected and by_content == by_name, path


def test_every_simulated_file_is_claimed_by_its_format(spectra):
    files = sorted(spectra.rglob("*.fits"))
    assert len(files) == 6
    for path in files:
        assert_claimed_by_its_format(path)


def test_every_real_file_is_claimed_by_its_format(sdss_dir):
    files = sorted(sdss_dir.rglob("*.fits*"))
    assert sum(path.name.startswith(("spPlate-", "spec-")) for path in files) == 90
    assert any(path.name.startswith("spAll-") for path in files)
    for path in files:
        assert_claimed_by_its_format(path)


def test_a_file_given_by_name_is_read_by_its_content(spectra, tmp_path):
    original = spectra / "7000" / "spPlate-7000-57000.fits"
    renamed = tmp_path / "plate-7000.fits"
    shutil.copy(original, renamed)
    (plate_input,), rejects = discover([renamed])
    assert rejects == [] and plate_input.format is spplate.FORMAT and plate_input.name == "7000-57000"
    plate, expected = plate_input.read(), read_spplate(original)
    assert plate.sources == [str(renamed)]
    np.testing.assert_array_equal(plate.flux, expected.flux)
    np.testing.assert_array_equal(plate.fibers, expected.fibers)


def test_a_spec_file_given_by_name_is_read_by_its_content(spectra, tmp_path):
    renamed = tmp_path / "fiber-3.fits"
    shutil.copy(spectra / "lite" / "7000" / "spec-7000-57000-0003.fits", renamed)
    (plate_input,), rejects = discover([renamed])
    assert rejects == [] and plate_input.format is spec.FORMAT
    assert list(plate_input.read().fibers["FIBERID"]) == [3]


def test_a_file_given_by_name_that_no_format_claims_is_rejected(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a spectrum\n")
    plates, rejects = discover([notes])
    assert plates == [] and [(r.path, r.reason) for r in rejects] == [(str(notes), UNRECOGNISED)]
    assert UNRECOGNISED == "file name is neither spPlate-PPPP-MMMMM.fits nor spec-PPPP-MMMMM-FFFF.fits"


@pytest.mark.parametrize("source, name, reason", [
    ("lite/7000/spec-7000-57000-0001.fits", "spPlate-7000-57000.fits",
     r"HDU0 is not the 2-d FLUX image of an spPlate \(NAXIS = 0\)"),
    ("7000/spPlate-7000-57000.fits", "spec-7000-57000-0001.fits", "no COADD binary table in HDU1"),
], ids=["spec-content-named-spPlate", "spPlate-content-named-spec"])
def test_an_sdss_name_on_other_content_raises_input_error_naming_the_file(spectra, tmp_path, source, name, reason):
    misnamed = tmp_path / name
    shutil.copy(spectra / source, misnamed)
    (plate_input,), _ = discover([misnamed])
    with pytest.raises(InputError, match=rf"^{re.escape(str(misnamed))}: {reason}"):
        plate_input.read()


def test_a_directory_walk_opens_no_file(tmp_path, monkeypatch):
    for i in range(5000):
        (tmp_path / f"junk-{i:04d}.fits").touch()
    (tmp_path / "spPlate-7000-57000.fits").touch()

    def opened(self, path):
        raise AssertionError(f"{path} was opened during a directory walk")

    for fmt in FORMATS:
        monkeypatch.setattr(type(fmt), "claim_content", opened)
    plates, rejects = discover([tmp_path])
    assert [p.files for p in plates] == [[str(tmp_path / "spPlate-7000-57000.fits")]] and rejects == []
