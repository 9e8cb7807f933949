"""Issue 10: a tree of damaged and odd inputs through one `qsopipe run`.

One input tree holds three good simulated plates (7000 with damaged fibers
injected, 7001 duplicated by its spec-lite files, 7002 as spec-lite files
only, one of them broken), one plate whose grid starts at 9800 A (partly
outside 3600-10400 A: processed, every fiber flagged), and one bad file per
case of the matrix. The run
happens once per module; each test asserts one case against its log, its
run_report.json and its catalog.

The unreadable-file case must be real for root too (CI runs as root, and
root reads a chmod-000 file): when the tests run as root, the run's process
drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its capability bounding
set before exec, so root obeys file permissions like any user. Where that
drop is not allowed, the unreadable file is left out and its case skipped.
"""

import base64
import ctypes
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import h5py
import numpy as np
import pytest
from astropy.io import fits

from qsopipe.stages.preprocess import PrepFlag
from qsopipe.stages.quasarnet import QNFlag, is_classified

REPO = Path(__file__).resolve().parents[1]
QSOPIPE = str(Path(sys.executable).with_name("qsopipe"))
TRUNCATED_SPPLATE = "sdss/spplate_truncated/spPlate-4055-55359-0020.fits"
LEGACY_WEIGHTS = "weights/quasarnet_legacy_keras2_4layer.h5"

#: Linux capability numbers and the prctl that drops one from the bounding set.
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _PR_CAPBSET_DROP = 1, 2, 24

#: Fibers of the injected plate 7000 and what was done to each.
INJECTED = {1: "nan_inf_pixels", 2: "all_nan_flux", 3: "zero_ivar", 4: "negative_ivar_pixels", 5: "all_negative_ivar"}

#: Bad files of the matrix: case -> (file name under the tree, words its reason must contain).
BAD_FILES = {
    "empty": ("bad/spPlate-8001-58001.fits", "empty"),
    "not_fits": ("bad/spPlate-8002-58002.fits", "not a FITS file"),
    "truncated_half": ("bad/spPlate-8003-58003.fits", "truncated"),
    "plugmap_rows": ("bad/spPlate-8005-58005.fits", "PLUGMAP has 19 rows but the image has 20 fibers"),
    "wavelength_outside": ("bad/spPlate-8006-58006.fits", "lies outside 3600-10400 A"),
    "unreadable": ("bad/spPlate-8008-58008.fits", "not readable"),
    "spec_missing_column": ("lite/7002/spec-7002-57002-0021.fits", "lacks column(s) IVAR"),
    "header_disagrees_with_name": ("bad/spPlate-8011-58011.fits", "disagrees with the file name"),
    "directory_named_like_input": ("bad/spPlate-8012-58012.fits", "not a regular file"),
}


def run_qsopipe(args, drop_dac=False, env=None, timeout=600):
    """`qsopipe ARGS` in its own session (so teardown can kill all of it); returns CompletedProcess."""
    process = subprocess.Popen([QSOPIPE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env=env, preexec_fn=_drop_dac_capabilities if drop_dac else None)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def _drop_dac_capabilities():
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def permissions_enforced(directory):
    """True if a process started like the run (see run_qsopipe's drop_dac) cannot read a chmod-000 file."""
    probe = directory / "unreadable-probe"
    probe.touch(mode=0)
    try:
        result = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}).close()"], capture_output=True,
                                preexec_fn=_drop_dac_capabilities if os.geteuid() == 0 else None)
    except subprocess.SubprocessError:
        return False
    finally:
        probe.unlink()
    return result.returncode != 0


def build_small_models(directory):
    """Tiny untrained QuasarNET and MgII models saved under `directory`: (qn path, mgii path)."""
    from qsopipe.models.mgii import build_model
    from qsopipe.models.quasarnet import build_quasarnet

    qn, mgii = directory / "qn.keras", directory / "mgii.keras"
    build_quasarnet(filters=8, dense_units=16).save(qn)
    build_model().save(mgii)
    return qn, mgii


def simulate(out, plates, fibers, spec_lite=False):
    """`qsopipe simulate` into `out`; returns out/spectra."""
    args = ["simulate", "--out", str(out), "--plates", str(plates), "--fibers", str(fibers), "--seed", "1"]
    result = run_qsopipe(args + (["--spec-lite"] if spec_lite else []))
    assert result.returncode == 0, result.stdout
    return Path(out) / "spectra"


def read_hdus(path):
    """Every HDU of a FITS file as [(header, data)]."""
    with fitsio.FITS(str(path)) as handle:
        return [(hdu.read_header(), hdu.read()) for hdu in handle]


def write_hdus(path, hdus):
    """Write [(header, data)] as a FITS file (images and binary tables)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with fitsio.FITS(str(path), "rw", clobber=True) as handle:
        for header, data in hdus:
            names = [card["name"] for card in header.records()
                     if card["name"] in ("EXTNAME", "PLATEID", "MJD", "COEFF0", "COEFF1")]
            handle.write(data, header={name: header[name] for name in names})


def copy_spplate(source, target, plate, mjd, edit=None):
    """Copy an spPlate as plate-MJD (header and name); `edit(hdus)` may change the HDUs first."""
    hdus = read_hdus(source)
    hdus[0][0]["PLATEID"], hdus[0][0]["MJD"] = plate, mjd
    if edit:
        edit(hdus)
    write_hdus(target, hdus)


def inject_bad_fibers(hdus):
    """Damage fibers of INJECTED in place (HDU0 flux, HDU1 ivar); rows are fibers 1..n."""
    flux, ivar = hdus[0][1], hdus[1][1]
    flux[0, 100:110], flux[0, 200:205], ivar[0, 300:305] = np.nan, np.inf, np.inf
    flux[1, :] = np.nan
    ivar[2, :] = 0
    ivar[3, 400:450] = -1
    ivar[4, :] = -np.abs(ivar[4, :]) - 1


def build_tree(root, spectra, truncated, unreadable):
    """The input tree: good plates 7000 (damaged fibers), 7001 (+ its spec files), 7002 (spec files only),
    7003 (grid from 9800 A).

    Every case of BAD_FILES is added, the unreadable file only when `unreadable` (permissions hold).
    """
    tree = root / "tree"
    good = spectra / "7000" / "spPlate-7000-57000.fits"
    copy_spplate(good, tree / "7000" / good.name, 7000, 57000, inject_bad_fibers)
    shutil.copytree(spectra / "7001", tree / "7001")
    shutil.copytree(spectra / "lite" / "7001", tree / "lite" / "7001")
    shutil.copytree(spectra / "lite" / "7002", tree / "lite" / "7002")

    def shift_grid(coeff0):
        def edit(hdus):
            hdus[0][0]["COEFF0"] = coeff0
        return edit

    copy_spplate(good, tree / "7003" / "spPlate-7003-57003.fits", 7003, 57003, shift_grid(np.log10(9800.0)))
    bad = {case: tree / name for case, (name, _) in BAD_FILES.items()}
    bad["empty"].parent.mkdir(parents=True)
    bad["empty"].touch()
    bad["not_fits"].write_text("SDSS plate 8002: this is a text file with a .fits name\n")
    copy_spplate(good, bad["truncated_half"], 8003, 58003)
    with open(bad["truncated_half"], "r+b") as handle:
        handle.truncate(os.path.getsize(bad["truncated_half"]) // 2)

    def drop_plugmap_row(hdus):
        hdus[5] = (hdus[5][0], hdus[5][1][:-1])

    copy_spplate(good, bad["plugmap_rows"], 8005, 58005, drop_plugmap_row)
    copy_spplate(good, bad["wavelength_outside"], 8006, 58006, shift_grid(np.log10(12000.0)))
    if unreadable:
        copy_spplate(good, bad["unreadable"], 8008, 58008)
        bad["unreadable"].chmod(0)
    spec = read_hdus(spectra / "lite" / "7002" / "spec-7002-57002-0001.fits")
    coadd = spec[1][1]
    spec[1] = (spec[1][0], coadd[[name for name in coadd.dtype.names if name != "IVAR"]])
    write_hdus(bad["spec_missing_column"], spec)
    copy_spplate(good, bad["header_disagrees_with_name"], 7000, 57000)
    bad["directory_named_like_input"].mkdir()
    inputs = [str(tree)]
    if truncated is not None:
        inputs.append(str(truncated))
    return inputs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_small_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory, models, shared_data_or_none):
    """One `qsopipe run` over the bad-input tree: a dict of root, tree, out, result (CompletedProcess),
    report (run_report.json), permissions_enforced and truncated (the real file's path or None)."""
    root = tmp_path_factory.mktemp("matrix")
    spectra = simulate(root / "sim", plates=3, fibers=20, spec_lite=True)
    truncated = shared_data_or_none / TRUNCATED_SPPLATE if shared_data_or_none else None
    enforced = permissions_enforced(root)
    inputs = build_tree(root, spectra, truncated, unreadable=enforced)
    outdir = root / "out"
    result = run_qsopipe(["run", *inputs, "--out", str(outdir), "--workers", "2", "--qn-model", str(models[0]),
                          "--mgii-model", str(models[1])], drop_dac=enforced and os.geteuid() == 0)
    report = json.loads((outdir / "run_report.json").read_text())
    return {"root": root, "tree": root / "tree", "out": outdir, "result": result, "report": report,
            "permissions_enforced": enforced, "truncated": truncated}


@pytest.fixture(scope="module")
def shared_data_or_none(request):
    """../shared/data, or None when absent (the matrix then runs without the real truncated spPlate)."""
    try:
        return request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return None


def report_entries(report):
    """Every input path of a run report -> (status, reason)."""
    entries = {}
    for summary in report["plates"]:
        for path in summary["files"]:
            entries[path] = (summary["status"], summary["reason"])
        for path, reason in summary["skipped"].items():
            entries[path] = ("failed", reason)
    for reject in report["rejected"]:
        entries[reject["path"]] = (reject["status"], reject["reason"])
    return entries


def catalog_tables(path):
    """The CATALOG and INPUTS HDUs of a catalog file (FITS_rec: string columns read as str)."""
    return fits.getdata(path, "CATALOG"), fits.getdata(path, "INPUTS")


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_named_with_its_reason(matrix_run, case):
    name, words = BAD_FILES[case]
    if case == "unreadable" and not matrix_run["permissions_enforced"]:
        pytest.skip("this process cannot make a file unreadable to itself (root without CAP_SETPCAP)")
    path = str(matrix_run["tree"] / name)
    status, reason = report_entries(matrix_run["report"])[path]
    assert status in ("failed", "rejected")
    assert words in reason
    log = matrix_run["result"].stdout
    assert any(words in line and (path in line or Path(path).name in line) for line in log.splitlines()), log
    _, inputs = catalog_tables(matrix_run["out"] / "catalog.fits")
    row = inputs[inputs["PATH"] == path]
    assert len(row) == 1 and row["STATUS"][0] == status and words in row["REASON"][0]


def test_truncated_real_spplate_is_named_with_its_reason(matrix_run):
    if matrix_run["truncated"] is None:
        pytest.skip("../shared/data not present")
    status, reason = report_entries(matrix_run["report"])[str(matrix_run["truncated"])]
    assert status == "failed"
    assert reason.startswith(str(matrix_run["truncated"])) and "missing HDU1 IVAR" in reason
    assert "spPlate-4055-55359-0020.fits" in matrix_run["result"].stdout


def test_duplicate_spec_files_are_each_named(matrix_run):
    entries = report_entries(matrix_run["report"])
    specs = sorted((matrix_run["tree"] / "lite" / "7001").glob("spec-*.fits"))
    assert len(specs) == 20
    for spec in specs:
        status, reason = entries[str(spec)]
        assert status == "superseded" and "spPlate-7001-57001.fits" in reason


def test_exit_code_is_nonzero_when_any_input_failed(matrix_run):
    assert matrix_run["result"].returncode == 1, matrix_run["result"].stdout


@pytest.mark.parametrize("plate", [7000, 7001, 7002, 7003])
def test_good_plates_are_fully_in_the_catalog(matrix_run, plate):
    catalog, _ = catalog_tables(matrix_run["out"] / "catalog.fits")
    rows = catalog[catalog["PLATE"] == plate]
    assert sorted(rows["FIBERID"]) == list(range(1, 21))
    summary = next(s for s in matrix_run["report"]["plates"] if s["plate"] == plate)
    assert summary["status"] == "done" and summary["nfiber"] == 20


def test_only_good_plates_are_in_the_catalog(matrix_run):
    catalog, _ = catalog_tables(matrix_run["out"] / "catalog.fits")
    assert set(catalog["PLATE"]) == {7000, 7001, 7002, 7003}
    targetid = catalog["TARGETID"]
    assert len(np.unique(targetid)) == len(targetid)


@pytest.mark.parametrize("fiber,prep_bits,unusable", [
    (1, PrepFlag.NONFINITE_INPUT, False),
    (2, PrepFlag.NONFINITE_INPUT | PrepFlag.NO_VALID_PIXEL, True),
    (3, PrepFlag.NO_VALID_PIXEL, True),
    (4, PrepFlag.NEGATIVE_IVAR, False),
    (5, PrepFlag.NEGATIVE_IVAR | PrepFlag.NO_VALID_PIXEL, True),
])
def test_damaged_fibers_are_present_and_flagged(matrix_run, fiber, prep_bits, unusable):
    catalog, _ = catalog_tables(matrix_run["out"] / "catalog.fits")
    row = catalog[(catalog["PLATE"] == 7000) & (catalog["FIBERID"] == fiber)]
    assert len(row) == 1, INJECTED[fiber]
    assert row["PREP_FLAG"][0] & int(prep_bits) == int(prep_bits)
    assert bool(row["QN_FLAG"][0] & QNFlag.UNUSABLE_INPUT) == unusable
    if unusable:
        assert row["IS_QSO_QN"][0] == 0 and row["Z_QN"][0] == -1 and row["MGII_PROB"][0] == -1


def test_grid_partly_outside_the_spectrograph_is_processed_and_flagged(matrix_run):
    catalog, _ = catalog_tables(matrix_run["out"] / "catalog.fits")
    rows = catalog[catalog["PLATE"] == 7003]
    assert len(rows) == 20
    assert np.all(rows["PREP_FLAG"] & (PrepFlag.FEW_QN_BINS | PrepFlag.NO_MGII_PIXEL))
    assert np.all(rows["QN_FLAG"] == QNFlag.UNUSABLE_INPUT)
    assert np.all(rows["Z_QN"] == -1) and np.all(rows["MGII_PROB"] == -1)


def test_classified_rows_have_no_nan(matrix_run):
    catalog, _ = catalog_tables(matrix_run["out"] / "catalog.fits")
    classified = catalog[is_classified(catalog["QN_FLAG"])]
    assert len(classified) > 0
    for name in catalog.dtype.names:
        if catalog.dtype[name].kind == "f":
            assert np.all(np.isfinite(classified[name])), name


def test_every_input_has_a_status_in_report_and_catalog(matrix_run):
    entries = report_entries(matrix_run["report"])
    _, inputs = catalog_tables(matrix_run["out"] / "catalog.fits")
    assert sorted(inputs["PATH"]) == sorted(entries)
    for row in inputs:
        assert (row["STATUS"], row["REASON"]) == entries[row["PATH"]]
        assert row["STATUS"] in ("done", "failed", "rejected", "superseded")
        assert (row["STATUS"] == "done") == (row["REASON"] == "")
        if row["STATUS"] == "failed":
            assert row["REASON"].startswith(row["PATH"])


def test_all_good_inputs_exit_zero(tmp_path, models):
    spectra = simulate(tmp_path / "sim", plates=1, fibers=20)
    result = run_qsopipe(["run", str(spectra), "--out", str(tmp_path / "out"), "--workers", "1",
                          "--qn-model", str(models[0]), "--mgii-model", str(models[1])])
    assert result.returncode == 0, result.stdout


def booby_trapped_legacy_h5(shared_data, path, sentinel):
    """A copy of the real legacy QuasarNET .h5 whose Lambda holds bytecode that would create `sentinel`.

    The function is stored as Keras 2 did: base64 of marshalled bytecode.
    """
    source = f"lambda x: (open({str(sentinel)!r}, 'w').close(), x)[1]"
    payload = next(const for const in compile(source, "payload", "eval").co_consts if hasattr(const, "co_code"))
    shutil.copy(shared_data / LEGACY_WEIGHTS, path)
    path.chmod(0o644)
    code = base64.encodebytes(marshal.dumps(payload)).decode("ascii")
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Lambda":
                layer["config"]["function"] = [code, None, None]
        handle.attrs["model_config"] = json.dumps(config)
    return path


def test_legacy_h5_is_read_as_data_only(tmp_path, shared_data):
    sentinel = tmp_path / "bytecode-ran"
    legacy = booby_trapped_legacy_h5(shared_data, tmp_path / "legacy.h5", sentinel)
    result = run_qsopipe(["import-weights", str(legacy), "--out", str(tmp_path / "imported.keras")])
    assert result.returncode == 0, result.stdout
    assert (tmp_path / "imported.keras").is_file()
    assert not sentinel.exists()
    from qsopipe.models.store import load_model

    with pytest.raises(ValueError, match="(?i)lambda|unsafe|deserializ"):
        load_model(str(legacy))
    assert not sentinel.exists()


def test_unexpected_failure_names_the_plate_file(matrix_run, tmp_path):
    from qsopipe.pipeline.config import load_config
    from qsopipe.pipeline.discovery import discover
    from qsopipe.pipeline.plate_task import process_plate

    not_a_model = tmp_path / "qn.keras"
    not_a_model.write_text("not a model")
    (plate_input,), _ = discover([matrix_run["root"] / "sim" / "spectra" / "7000"])
    config = load_config(options={"qn_model": str(not_a_model), "mgii_model": str(not_a_model)}, environ={})
    summary = process_plate(plate_input, str(tmp_path / "out"), config)
    assert summary["status"] == "failed"
    assert summary["reason"].startswith(f"{plate_input.files[0]}: unexpected ")


def test_unlistable_directory_is_rejected_by_name(tmp_path):
    if not permissions_enforced(tmp_path):
        pytest.skip("this process cannot make a directory unreadable to itself (root without CAP_SETPCAP)")
    hidden = tmp_path / "tree" / "7000"
    hidden.mkdir(parents=True)
    (hidden / "spPlate-7000-57000.fits").touch()
    hidden.chmod(0)
    script = ("import json, sys; from qsopipe.pipeline.discovery import discover; "
              "plates, rejects = discover(sys.argv[1:]); print(json.dumps([[r.path, r.reason] for r in rejects]))")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tree")], capture_output=True, text=True,
                            preexec_fn=_drop_dac_capabilities if os.geteuid() == 0 else None)
    hidden.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[str(hidden), "directory cannot be listed (Permission denied)"]]


def test_a_spec_plate_with_no_readable_file_fails_naming_it(matrix_run):
    from qsopipe.pipeline.errors import InputError
    from qsopipe.pipeline.sdss.spec import read_spec_plate

    bad = str(matrix_run["tree"] / BAD_FILES["spec_missing_column"][0])
    skipped = {}
    with pytest.raises(InputError, match="lacks column.*none of the plate's 1 spec file") as raised:
        read_spec_plate([bad], skipped)
    assert raised.value.path == bad and list(skipped) == [bad]


# Issue 24: runs that can never finish, stale resumes, silently dropped inputs.


@pytest.fixture(scope="module")
def small_spectra(tmp_path_factory):
    """Two simulated plates (7000, 7001) of 20 fibers, as spPlates and as spec-lite files."""
    return simulate(tmp_path_factory.mktemp("small"), plates=2, fibers=20, spec_lite=True)


def run_pipeline(inputs, out, models, *options, **popen):
    """`qsopipe run INPUTS --out OUT` with the tiny models and one worker; returns CompletedProcess."""
    return run_qsopipe(["run", *map(str, inputs), "--out", str(out), "--workers", "1",
                        "--qn-model", str(models[0]), "--mgii-model", str(models[1]), *options], **popen)


def plate_statuses(out):
    """{plate name: status} from OUTDIR/run_report.json."""
    report = json.loads((out / "run_report.json").read_text())
    return {summary["name"]: summary["status"] for summary in report["plates"]}


def catalog_paths(out):
    """INPUTS PATH of OUTDIR/catalog.fits, decoded (`qsopipe.stages.catalog.text_from_fits`)."""
    from qsopipe.stages.catalog import text_from_fits

    return text_from_fits(fitsio.read(str(out / "catalog.fits"), ext="INPUTS")["PATH"]).tolist()


def test_a_non_ascii_path_is_kept_in_inputs(small_spectra, models, tmp_path):
    tree = tmp_path / "in" / "données"
    shutil.copytree(small_spectra / "7000", tree / "7000")
    result = run_pipeline([tmp_path / "in"], tmp_path / "out", models)
    assert result.returncode == 0, result.stdout
    path = str(tree / "7000" / "spPlate-7000-57000.fits")
    assert catalog_paths(tmp_path / "out") == [path]
    assert plate_statuses(tmp_path / "out") == {"7000-57000": "done"}


def test_text_columns_round_trip_any_string():
    from qsopipe.stages.catalog import fits_text, text_from_fits

    strings = ["in/données/spPlate-7120-57120.fits", "100% of it", "/raw/not-utf8-\udce9", "plain ascii"]
    stored = fits_text(strings)
    assert all(text.isascii() and text.isprintable() for text in stored)
    assert stored[-1] == "plain ascii"
    assert text_from_fits(stored).tolist() == strings


def test_a_nan_threshold_is_refused_before_any_work(small_spectra, models, tmp_path):
    result = run_pipeline([small_spectra / "7000"], tmp_path / "out", models, "--c-th", "nan")
    assert result.returncode == 2, result.stdout
    assert "c_th = nan" in result.stdout
    assert not (tmp_path / "out").exists()


def test_plates_made_with_other_settings_are_redone_and_the_catalog_written(small_spectra, models, tmp_path):
    out = tmp_path / "out"
    plates = [small_spectra / "7000", small_spectra / "7001"]
    assert run_pipeline(plates, out, models, "--c-th", "0.4").returncode == 0
    one_plate = run_pipeline([small_spectra / "7001" / "spPlate-7001-57001.fits"], out, models, "--c-th", "0.9")
    assert one_plate.returncode == 0, one_plate.stdout

    rerun = run_pipeline(plates, out, models)
    assert rerun.returncode == 0, rerun.stdout
    assert "plate 7001-57001: quasarnet redone: c_th 0.9 -> 0.4" in rerun.stdout
    assert plate_statuses(out) == {"7000-57000": "resumed", "7001-57001": "done"}
    assert fitsio.read_header(str(out / "catalog.fits"), ext="CATALOG")["C_TH"] == 0.4


def test_a_resumed_plate_whose_input_moved_names_the_new_path(small_spectra, models, tmp_path):
    shutil.copytree(small_spectra / "7000", tmp_path / "before" / "7000")
    assert run_pipeline([tmp_path / "before"], tmp_path / "out", models).returncode == 0
    (tmp_path / "before").rename(tmp_path / "after")
    rerun = run_pipeline([tmp_path / "after"], tmp_path / "out", models)
    assert rerun.returncode == 0, rerun.stdout
    assert plate_statuses(tmp_path / "out") == {"7000-57000": "resumed"}
    assert catalog_paths(tmp_path / "out") == [str(tmp_path / "after" / "7000" / "spPlate-7000-57000.fits")]


def test_a_spec_file_edited_under_an_older_mtime_is_redone(small_spectra, models, tmp_path):
    lite = tmp_path / "lite"
    shutil.copytree(small_spectra / "lite" / "7000", lite)
    assert run_pipeline([lite], tmp_path / "out", models).returncode == 0
    edited = lite / "spec-7000-57000-0001.fits"
    times = os.stat(edited)
    with fitsio.FITS(str(edited), "rw") as handle:
        flux = handle[1].read_column("FLUX")
        handle[1].write_column("FLUX", flux[::-1].copy())
    os.utime(edited, ns=(times.st_atime_ns, times.st_mtime_ns - 10**9))  # as cp -p or rsync -t might leave it
    rerun = run_pipeline([lite], tmp_path / "out", models)
    assert rerun.returncode == 0, rerun.stdout
    assert plate_statuses(tmp_path / "out") == {"7000-57000": "done"}
    assert "plate 7000-57000: quasarnet redone: shard changed" in rerun.stdout


def discovered(*inputs):
    """discover(inputs) as ({plate name: [file, ...]}, {rejected path: reason})."""
    from qsopipe.pipeline.discovery import discover

    plates, rejects = discover(list(inputs))
    return {plate.name: plate.files for plate in plates}, {reject.path: reject.reason for reject in rejects}


def test_a_symlinked_plate_directory_is_searched(small_spectra, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(small_spectra / "7000", tree / "7000")
    (tree / "7001").symlink_to(small_spectra / "7001", target_is_directory=True)
    plates, rejects = discovered(tree)
    assert plates == {"7000-57000": [str(tree / "7000" / "spPlate-7000-57000.fits")],
                      "7001-57001": [str(tree / "7001" / "spPlate-7001-57001.fits")]}
    assert rejects == {}


def test_a_symlink_loop_is_rejected_with_its_reason(small_spectra, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(small_spectra / "7000", tree / "7000")
    (tree / "7000" / "loop").symlink_to(tree, target_is_directory=True)
    (tree / "spPlate-7999-57999.fits").symlink_to("spPlate-7999-57999.fits")  # a link to itself
    plates, rejects = discovered(tree)
    assert plates == {"7000-57000": [str(tree / "7000" / "spPlate-7000-57000.fits")]}
    assert rejects == {str(tree / "7000" / "loop"): f"link to a directory already searched ({tree}): "
                                                     f"not searched again",
                       str(tree / "spPlate-7999-57999.fits"): "named like an input but not a regular file"}


def test_a_file_given_twice_is_one_input_and_a_copy_stays_a_duplicate(small_spectra, tmp_path):
    spplate = small_spectra / "7000" / "spPlate-7000-57000.fits"
    assert discovered(spplate, spplate, small_spectra / "7000") == ({"7000-57000": [str(spplate)]}, {})
    copy = tmp_path / spplate.name
    shutil.copy(spplate, copy)
    assert discovered(spplate, copy) == ({"7000-57000": [str(spplate)]},
                                         {str(copy): f"duplicate of {spplate} (same plate-MJD)"})


def test_a_run_given_the_same_file_twice_exits_zero(small_spectra, models, tmp_path):
    spplate = small_spectra / "7000" / "spPlate-7000-57000.fits"
    result = run_pipeline([spplate, spplate], tmp_path / "out", models)
    assert result.returncode == 0, result.stdout
    assert catalog_paths(tmp_path / "out") == [str(spplate)]


def edited_copy(source, target, edit):
    """Copy the FITS file `source` to `target` after `edit(hdus)` (an astropy HDUList) changed it."""
    with fits.open(source) as hdus:
        edit(hdus)
        hdus.writeto(target)
    return target


def set_card(index, key, value):
    """An edit: card KEY = value in HDU `index`'s header."""
    def edit(hdus):
        hdus[index].header[key] = value
    return edit


def as_integers(index, dtype):
    """An edit: HDU `index`'s image stored as integers of `dtype` (BITPIX 16, 32 or 64)."""
    def edit(hdus):
        hdus[index].data = hdus[index].data.astype(dtype)
    return edit


def without_fibers(hdus):
    """An edit of an spPlate: every image and table cut to 0 fibers."""
    for hdu in hdus:
        hdu.data = hdu.data[:0]


def first_fiber_numbered(fiberid):
    """An edit of an spPlate: the first PLUGMAP row's FIBERID."""
    def edit(hdus):
        hdus[5].data["FIBERID"][0] = fiberid
    return edit


@pytest.mark.parametrize("edit,reason", [
    (as_integers(0, np.int16), "HDU0 FLUX has BITPIX = 16, integers; the spPlate data model stores it as float32"),
    (as_integers(1, np.int64), "HDU1 IVAR has BITPIX = 64, integers"),
    (without_fibers, r"HDU0 FLUX holds no fibers \(0 rows\)"),
    (set_card(0, "COEFF1", 1.0), r"COEFF1 = 1.0 is not a log-lambda step per pixel in \(0, 0.001\]"),
    (set_card(0, "COEFF0", "abc"), "HDU0 header COEFF0 = 'abc' is not a number"),
    (set_card(0, "MJD", "abc"), "HDU0 header MJD = 'abc' is not a number"),
    (first_fiber_numbered(10000), r"FIBERID 10000 outside 1..9999: TARGETID = PLATE\*10\^9 \+ MJD\*10\^4"),
], ids=["bitpix16-flux", "bitpix64-ivar", "no-fibers", "coeff1", "coeff0-text", "mjd-text", "fiberid-10000"])
def test_an_spplate_the_data_model_does_not_allow_is_refused_naming_the_file(small_spectra, tmp_path, edit, reason):
    from qsopipe.pipeline.errors import InputError
    from qsopipe.pipeline.sdss.spplate import read_spplate

    bad = edited_copy(small_spectra / "7000" / "spPlate-7000-57000.fits", tmp_path / "spPlate-7000-57000.fits", edit)
    with pytest.raises(InputError, match=rf"^{re.escape(str(bad))}: {reason}"):
        read_spplate(bad)


def spec_fiber_numbered(fiberid):
    """An edit of a spec file: FIBERID in the HDU0 header and the HDU2 row."""
    def edit(hdus):
        hdus[0].header["FIBERID"] = fiberid
        hdus[2].data["FIBERID"] = fiberid
    return edit


@pytest.mark.parametrize("edit,reason", [
    (set_card(0, "COEFF0", "abc"), "HDU0 header COEFF0 = 'abc' is not a number"),
    (spec_fiber_numbered(10000), "FIBERID 10000 outside 1..9999"),
], ids=["coeff0-text", "fiberid-10000"])
def test_a_spec_file_the_data_model_does_not_allow_is_refused_naming_the_file(small_spectra, tmp_path, edit, reason):
    from qsopipe.pipeline.errors import InputError
    from qsopipe.pipeline.sdss.spec import read_spec

    bad = edited_copy(small_spectra / "lite" / "7000" / "spec-7000-57000-0001.fits", tmp_path / "fiber.fits", edit)
    with pytest.raises(InputError, match=rf"^{re.escape(str(bad))}: {reason}"):
        read_spec(bad)


def test_a_read_only_outdir_is_refused_before_any_work(small_spectra, models, tmp_path):
    if not permissions_enforced(tmp_path):
        pytest.skip("this process cannot make a directory read-only to itself (root without CAP_SETPCAP)")
    out = tmp_path / "out"
    out.mkdir(mode=0o555)
    result = run_pipeline([small_spectra / "7000"], out, models, drop_dac=os.geteuid() == 0)
    out.chmod(0o755)
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines()[-1] == f"Error: {out}: output directory cannot be written (Permission denied)"
    assert "plate" not in result.stdout and list(out.iterdir()) == []
