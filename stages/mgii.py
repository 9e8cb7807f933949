"""MgII stage: doublet search over each quasar's whole path, and the absorber CNN of Zhao et al. (2019).

Science functions take arrays: `search_window` (the CNN's window),
`search_path` (the doublet finder's), `prepare_input`, `selection_flags`,
`path_flags`, `measure_absorbers` (and `measure_candidates`, for training
the candidate vetter). `process_plate` turns one shard, its QuasarNET and
its redshift-fit results into the two result tables; `doublet_finder`
reads the finder's criteria and vetter from the run configuration;
`command` is the thin `qsopipe mgii` CLI. TensorFlow is imported only when
a model is loaded. `qsopipe.stages.mgii_regions` defines the window, the
path and the REGION bits.

Per fiber (mgii-pppp-mmmmm.parquet): MGII_FLAG says why a fiber was not
searched (0 = searched); IS_MGII_ABS, N_MGII_ABS and MGII_ABS_REGION are -1
on those fibers, so "not searched" never reads as "no absorber". On
searched fibers MGII_ZMIN, MGII_ZMAX and MGII_DZ give the absorber-redshift
path searched (masked and unusable pixels left out of MGII_DZ) and
MGII_EW_LIMIT the median 5-sigma rest EW_2796 limit over it; -1 elsewhere.
MGII_PROB is the CNN's probability, -1 where the CNN did not run (fiber not
searched, or its CNN window off the grid or without continuum).

IS_MGII_ABS is 1 where at least one doublet passes the fit's criteria and
the candidate vetter (`qsopipe.stages.mgii_vetter`; so
every IS_MGII_ABS = 1 sightline has its rows in the absorbers table), 0
elsewhere on searched fibers; MGII_ABS_REGION is the OR of its absorbers'
REGION bits. Doublets in the CNN window count only on sightlines with
MGII_PROB >= threshold where the CNN ran. The default threshold 0 keeps
them all, so that IS_MGII_ABS is the doublet fit's decision
(models/weights/mgii.md says why); IS_MGII_ABS = 1 with MGII_PROB > 0.5
selects the CNN-confirmed subset.
"""

import dataclasses
import enum
import logging
from pathlib import Path

import click
import numpy as np
import pyarrow as pa

from qsopipe.models.store import file_sha256
from qsopipe.pipeline.config import config_options, load_config
from qsopipe.pipeline.grids import MGII_DLOGLAM, MGII_LOGLAM_MIN, MGII_NPIX
from qsopipe.pipeline.ids import target_id
from qsopipe.pipeline.parquet_io import list_column, with_metadata
from qsopipe.pipeline.stage import Stage, run_stage_on_plates, shard_plates
from qsopipe.stages.mgii_fit import (ABSORBER_DTYPE, PATH_DTYPE, DoubletCriteria, bridge_masked_pixels,
                                     find_candidates, running_continuum, search_doublets)
from qsopipe.stages.mgii_regions import CIV_GAP_REST, CNN_WINDOW_REST, PATH_REST, MgIIRegion, absorber_regions
from qsopipe.stages.mgii_vetter import load_vetter
from qsopipe.stages.quasarnet import is_classified

log = logging.getLogger(__name__)

#: Fewest grid pixels the CNN window, or the doublet finder's path, must keep on the grid to be searched.
MIN_WINDOW_PIX = 50

#: Continuum windows, quasar rest frame: (z_max of the bin, window min A, window max A), by z.
CONTINUUM_WINDOWS = (
    (1.0, 4150.0, 4250.0),
    (1.8, 3020.0, 3100.0),
    (2.8, 2150.0, 2250.0),
    (4.8, 1420.0, 1500.0),
)
#: Highest redshift the CNN takes (the last continuum window's).
Z_MAX = CONTINUUM_WINDOWS[-1][0]


class MgIIFlag(enum.IntFlag):
    """MGII_FLAG bits: why a fiber was not searched (0 = searched)."""

    NOT_QSO = 1           #: IS_QSO_QN != 1, or QN_FLAG has UNUSABLE_INPUT or NONFINITE_OUTPUT
    PATH_OFF_GRID = 2     #: fewer than MIN_WINDOW_PIX pixels of the doublet finder's path on the 3841-pixel grid
    Z_OUT_OF_RANGE = 4    #: Z (the fit, else Z_QN) not finite or <= 0
    BAD_PREP = 8          #: PREP_FLAG != 0
    BAL = 16              #: BAL_FLAG_QN = 1: BAL troughs imitate doublets (the DR7/DR12 MgII catalogues omit BALs)


def grid_wavelength():
    """Observed wavelength of the MgII grid pixels, Angstrom, shape (3841,)."""
    return 10.0 ** (MGII_LOGLAM_MIN + MGII_DLOGLAM * np.arange(MGII_NPIX))


def _pixel_of(wave):
    """Fractional grid pixel of observed wavelength(s), Angstrom."""
    return (np.log10(wave) - MGII_LOGLAM_MIN) / MGII_DLOGLAM


def search_window(z_qso):
    """Observed-frame CNN window of each quasar and whether it lies on the grid.

    The window runs over CNN_WINDOW_REST (3000 km/s red of CIV emission to
    3000 km/s blue of MgII emission) times (1 + z_qso).

    Parameters
    ----------
    z_qso : array-like (n,), emission redshift

    Returns
    -------
    wave_min, wave_max : float64 (n,), observed Angstrom (unclipped)
    on_grid : bool (n,), at least MIN_WINDOW_PIX grid pixels (3800-9200 A) inside
    """
    return _observed_span(CNN_WINDOW_REST, z_qso)


def search_path(z_qso):
    """Observed-frame path of the doublet finder (PATH_REST times 1 + z_qso: Lyman-alpha to MgII emission).

    Returns wave_min, wave_max float64 (n,) in observed Angstrom and
    on_grid bool (n,), as `search_window`.
    """
    return _observed_span(PATH_REST, z_qso)


def _observed_span(rest_span, z_qso):
    """(wave_min, wave_max, on_grid) of a rest-frame span (A) on quasars at z_qso (n,)."""
    z_qso = np.asarray(z_qso, np.float64)
    wave_min = rest_span[0] * (1 + z_qso)
    wave_max = rest_span[1] * (1 + z_qso)
    first, last = _window_pixels(wave_min, wave_max)
    return wave_min, wave_max, (last - first + 1) >= MIN_WINDOW_PIX


def _window_pixels(wave_min, wave_max):
    """First and last grid pixel inside [wave_min, wave_max], clipped to the grid (may give last < first)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        first = np.ceil(_pixel_of(np.clip(wave_min, 1.0, None)))
        last = np.floor(_pixel_of(np.clip(wave_max, 1.0, None)))
    first = np.clip(np.nan_to_num(first, nan=MGII_NPIX), 0, MGII_NPIX).astype(np.int64)
    last = np.clip(np.nan_to_num(last, nan=-1), -1, MGII_NPIX - 1).astype(np.int64)
    return first, last


def continuum_level(flux, ivar, z_qso):
    """Median flux over pixels with ivar > 0 in each quasar's rest-frame continuum window.

    The window is chosen by z_qso from CONTINUUM_WINDOWS; NaN where z_qso is
    outside (0, 4.8] or the window has no good pixel on the grid.

    Parameters
    ----------
    flux, ivar : ndarray (n, 3841)
    z_qso : ndarray (n,)

    Returns
    -------
    level : float64 (n,), flux units
    """
    z_qso = np.asarray(z_qso, np.float64)
    level = np.full(z_qso.shape, np.nan)
    z_low = 0.0
    for z_high, rest_min, rest_max in CONTINUUM_WINDOWS:
        rows = np.flatnonzero((z_qso > z_low) & (z_qso <= z_high))
        z_low = z_high
        if rows.size == 0:
            continue
        first, last = _window_pixels(rest_min * (1 + z_qso[rows]), rest_max * (1 + z_qso[rows]))
        width = int(np.ceil(np.log10(rest_max / rest_min) / MGII_DLOGLAM)) + 1
        columns = first[:, None] + np.arange(width)
        valid = columns <= last[:, None]
        columns = np.clip(columns, 0, MGII_NPIX - 1)
        values = flux[rows[:, None], columns].astype(np.float64)
        good = valid & (ivar[rows[:, None], columns] > 0)
        values[~good] = np.nan
        has_pixels = good.any(axis=1)
        level[rows[has_pixels]] = np.nanmedian(values[has_pixels], axis=1)
    return level


def prepare_input(flux, ivar, z_qso):
    """The MgII CNN input: flux over its continuum-window median, minus 1, zero outside the CNN window.

    Subtracting 1 puts the continuum and everything outside the window at 0,
    so that only absorption (negative) and emission stand out and the
    window's edges do not look like saturated absorption (models/weights/mgii.md).

    Parameters
    ----------
    flux, ivar : ndarray (n, 3841), on the MgII grid
    z_qso : ndarray (n,), emission redshift

    Returns
    -------
    x : float32 (n, 3841); flux / continuum_level - 1 inside the CNN window
        (pixels with ivar = 0 bridged by `bridge_masked_pixels`), 0 outside
        it and on rows the CNN cannot take
    cnn_ready : bool (n,); z_qso in (0, 4.8], at least MIN_WINDOW_PIX window
        pixels on the grid and a continuum-window median > 0
    """
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    z_qso = np.asarray(z_qso, np.float64)
    in_range = np.isfinite(z_qso) & (z_qso > 0) & (z_qso <= Z_MAX)
    safe_z = np.where(in_range, z_qso, 1.0)
    wave_min, wave_max, on_grid = search_window(safe_z)
    level = continuum_level(flux, ivar, np.where(in_range, z_qso, np.nan))
    ready = in_range & on_grid & np.isfinite(level) & (level > 0)
    first, last = _window_pixels(wave_min, wave_max)
    pixels = np.arange(MGII_NPIX)
    window = (pixels >= first[:, None]) & (pixels <= last[:, None]) & ready[:, None]
    scale = np.where(ready, level, 1.0)
    x = np.where(window, bridge_masked_pixels(flux, ivar) / scale[:, None] - 1.0, 0.0).astype(np.float32)
    return x, ready


def selection_flags(is_qso, qn_flag, prep_flag, bal_flag):
    """NOT_QSO, BAD_PREP and BAL bits from QuasarNET's decision, the shard's PREP_FLAG and BAL_FLAG_QN; int32 (n,).

    is_qso, qn_flag, prep_flag, bal_flag : int (n,), IS_QSO_QN, QN_FLAG, PREP_FLAG, BAL_FLAG_QN. A quasar
    with QN_FLAG SINGLE_LINE is searched like any other.
    """
    not_qso = (np.asarray(is_qso) != 1) | ~is_classified(qn_flag)
    flags = np.where(not_qso, MgIIFlag.NOT_QSO, 0)
    flags |= np.where(np.asarray(prep_flag) != 0, MgIIFlag.BAD_PREP, 0)
    flags |= np.where(~not_qso & (np.asarray(bal_flag) == 1), MgIIFlag.BAL, 0)
    return flags.astype(np.int32)


def path_flags(z_qso):
    """Z_OUT_OF_RANGE (z_qso not finite or <= 0) and PATH_OFF_GRID bits of quasars at z_qso (n,); int32 (n,)."""
    z_qso = np.asarray(z_qso, np.float64)
    valid = np.isfinite(z_qso) & (z_qso > 0)
    _, _, on_grid = search_path(np.where(valid, z_qso, 1.0))
    flags = np.where(valid, 0, MgIIFlag.Z_OUT_OF_RANGE) | np.where(valid & ~on_grid, MgIIFlag.PATH_OFF_GRID, 0)
    return flags.astype(np.int32)


def measure_absorbers(flux, ivar, z_qso, criteria, vetter=None):
    """Find and fit MgII doublets along each spectrum's whole path (`search_path`), less its CIV gap.

    Between Lyman-alpha and CIV emission (REGION LYA_CIV) the finder asks
    more of a doublet (DoubletCriteria's lya_civ_min_snr and lya_civ_max_sigma_kms). A vetter
    (`qsopipe.stages.mgii_vetter`) judges the candidates the criteria pass.

    Parameters
    ----------
    flux, ivar : ndarray (n, 3841), on the MgII grid
    z_qso : ndarray (n,)
    criteria : qsopipe.stages.mgii_fit.DoubletCriteria, the finder's thresholds
    vetter : qsopipe.stages.mgii_vetter.Vetter or None

    Returns
    -------
    absorbers : list of n structured arrays (qsopipe.stages.mgii_fit.ABSORBER_DTYPE)
    path : structured array (n,) qsopipe.stages.mgii_fit.PATH_DTYPE, the path searched
    """
    if len(z_qso) == 0:
        return [], np.zeros(0, PATH_DTYPE)
    return search_doublets(flux, ivar, criteria=criteria, vetter=vetter, **_search_geometry(flux, ivar, z_qso))


def measure_candidates(flux, ivar, z_qso, criteria):
    """The finder's candidates on each spectrum's path with their vetter features, for training a vetter
    (`qsopipe.stages.mgii_fit.find_candidates` with the geometry of `measure_absorbers`); n > 0."""
    return find_candidates(flux, ivar, criteria=criteria, with_features=True, **_search_geometry(flux, ivar, z_qso))


def _search_geometry(flux, ivar, z_qso):
    """The path, continuum, CIV gap and redshifts of a whole-path search, as keyword arguments of
    `search_doublets` and `find_candidates`."""
    wave_min, wave_max, _ = search_path(z_qso)
    return {"wave_min": wave_min, "wave_max": wave_max, "continuum": running_continuum(flux, ivar),
            "gap": _observed_span(CIV_GAP_REST, z_qso)[:2], "z_qso": z_qso}


def _flatten(per_row):
    """One structured array of all rows of `per_row` (a list of them) and each row's list index (int64)."""
    counts = np.array([len(rows) for rows in per_row], np.int64)
    flat = np.concatenate(per_row) if len(per_row) else np.zeros(0, ABSORBER_DTYPE)
    return flat, np.repeat(np.arange(len(per_row)), counts)


def process_plate(shard_table, qn_table, zfit_table, model, threshold, criteria=None, vetter=None):
    """The MgII results of one plate.

    Parameters
    ----------
    shard_table : pyarrow.Table, a preprocess shard (PLATE, MJD, FIBERID, RA,
        DEC, PREP_FLAG, MGII_FLUX, MGII_IVAR)
    qn_table : pyarrow.Table, the plate's QuasarNET results, same row order
        (FIBERID, IS_QSO_QN, QN_FLAG, BAL_FLAG_QN)
    zfit_table : pyarrow.Table, the plate's redshift-fit results, same row order (FIBERID, Z:
        the fitted redshift where ZWARNING = 0, else Z_QN); Z places the path, the window and the rescaling
    model : a Keras MgII CNN or a qsopipe.models.mgii.MgIIPredictor
    threshold : float; doublets in the CNN window count on sightlines with MGII_PROB >= threshold
        (where the CNN ran)
    criteria : DoubletCriteria of the doublet finder (None: its defaults)
    vetter : qsopipe.stages.mgii_vetter.Vetter judging the candidates the criteria pass, or None

    Returns
    -------
    mgii_table : pyarrow.Table, one row per shard row (PLATE, MJD, FIBERID,
        MGII_PROB, IS_MGII_ABS, N_MGII_ABS, MGII_ABS_REGION, MGII_ZMIN,
        MGII_ZMAX, MGII_DZ, MGII_EW_LIMIT, MGII_FLAG)
    absorbers_table : pyarrow.Table, one row per absorber (Z_QSO: Z; REGION: MgIIRegion bits)
    """
    fiberid = shard_table.column("FIBERID").to_numpy()
    for name, table in (("QuasarNET", qn_table), ("redshift-fit", zfit_table)):
        if not np.array_equal(fiberid, table.column("FIBERID").to_numpy()):
            raise ValueError(f"shard and {name} results do not list the same fibers in the same order")
    z_qso = zfit_table.column("Z").to_numpy().astype(np.float64)
    flags = selection_flags(qn_table.column("IS_QSO_QN").to_numpy(), qn_table.column("QN_FLAG").to_numpy(),
                            shard_table.column("PREP_FLAG").to_numpy(), qn_table.column("BAL_FLAG_QN").to_numpy())
    candidates = np.flatnonzero(flags == 0)
    flags[candidates] |= path_flags(z_qso[candidates])
    searched = np.flatnonzero(flags == 0)
    flux = list_column(shard_table, "MGII_FLUX")[searched]
    ivar = list_column(shard_table, "MGII_IVAR")[searched]
    x, cnn_ready = prepare_input(flux, ivar, z_qso[searched])

    n = len(fiberid)
    probability = np.full(n, -1.0, np.float32)
    if cnn_ready.any():
        from qsopipe.models.mgii import predictor_for

        probability[searched[cnn_ready]] = predictor_for(model)(x[cnn_ready])
    found, path = measure_absorbers(flux, ivar, z_qso[searched], criteria or DoubletCriteria(), vetter)
    absorbers, owner = _flatten(found)
    owner = searched[owner]
    regions = absorber_regions(absorbers["Z_ABS"], z_qso[owner])
    counted = counted_absorbers(regions, probability[owner], threshold)
    absorbers, owner, regions = absorbers[counted], owner[counted], regions[counted]

    count = np.where(flags == 0, 0, -1).astype(np.int16)
    count[searched] = np.bincount(owner, minlength=n)[searched]
    region = np.where(flags == 0, 0, -1).astype(np.int16)
    np.bitwise_or.at(region, owner, regions)
    path_columns = {name: np.full(n, -1.0) for name in ("ZMIN", "ZMAX", "DZ", "EW_LIMIT")}
    for name, values in path_columns.items():
        values[searched] = path[name]

    plate = shard_table.column("PLATE").to_numpy().astype(np.int32)
    mjd = shard_table.column("MJD").to_numpy().astype(np.int32)
    mgii_table = pa.table({
        "PLATE": pa.array(plate, pa.int32()), "MJD": pa.array(mjd, pa.int32()),
        "FIBERID": pa.array(fiberid.astype(np.int32), pa.int32()),
        "MGII_PROB": pa.array(probability, pa.float32()),
        "IS_MGII_ABS": pa.array(np.where(count < 0, -1, count > 0).astype(np.int16), pa.int16()),
        "N_MGII_ABS": pa.array(count, pa.int16()),
        "MGII_ABS_REGION": pa.array(region, pa.int16()),
        "MGII_ZMIN": pa.array(path_columns["ZMIN"], pa.float64()),
        "MGII_ZMAX": pa.array(path_columns["ZMAX"], pa.float64()),
        "MGII_DZ": pa.array(path_columns["DZ"], pa.float64()),
        "MGII_EW_LIMIT": pa.array(path_columns["EW_LIMIT"].astype(np.float32), pa.float32()),
        "MGII_FLAG": pa.array(flags, pa.int32()),
    })
    sky = {name: shard_table.column(name).to_numpy().astype(np.float64) for name in ("RA", "DEC")}
    return mgii_table, absorbers_table(plate, mjd, fiberid, sky, z_qso, probability, owner, absorbers, regions)


def counted_absorbers(regions, probability, threshold):
    """Which absorbers count (bool, as regions): those in the CNN window only where their sightline's CNN
    ran (probability >= 0) and said probability >= threshold. regions: REGION bits; probability: their
    sightline's MGII_PROB."""
    in_window = (np.asarray(regions) & MgIIRegion.CNN_WINDOW) != 0
    probability = np.asarray(probability)
    return ~in_window | (probability < 0) | (probability >= threshold)


def absorbers_table(plate, mjd, fiberid, sky, z_qso, probability, owner, found, region):
    """The absorbers table: one row per absorber found[k] (ABSORBER_DTYPE, REGION bits region[k]) on fiber
    row owner[k].

    sky: {"RA", "DEC"} (n,) degrees of the fibers.
    """
    targetid = target_id(plate[owner], mjd[owner], fiberid[owner])
    columns = {
        "PLATE": pa.array(plate[owner], pa.int32()), "MJD": pa.array(mjd[owner], pa.int32()),
        "FIBERID": pa.array(fiberid[owner].astype(np.int32), pa.int32()),
        "TARGETID": pa.array(targetid, pa.int64()),
        "RA": pa.array(sky["RA"][owner], pa.float64()), "DEC": pa.array(sky["DEC"][owner], pa.float64()),
        "Z_QSO": pa.array(z_qso[owner], pa.float64()),
        "Z_ABS": pa.array(found["Z_ABS"], pa.float64()),
        "Z_ABS_ERR": pa.array(found["Z_ABS_ERR"], pa.float64()),
    }
    for name in ("EW_2796", "EW_2796_ERR", "EW_2803", "EW_2803_ERR", "SNR_2796", "SNR_2803"):
        columns[name] = pa.array(found[name].astype(np.float32), pa.float32())
    columns["REGION"] = pa.array(region.astype(np.int16), pa.int16())
    columns["MGII_PROB"] = pa.array(np.asarray(probability)[owner], pa.float32())
    return pa.table(columns)


def results_metadata(model_path, threshold, criteria, vetter_file):
    """Schema metadata of both MgII result tables: model path, its sha256, the threshold, the doublet
    finder's thresholds (DoubletCriteria as a dict) and its vetter file ('none') and sha256."""
    return {
        "mgii_model": str(model_path),
        "mgii_model_sha256": file_sha256(str(model_path)),
        "mgii_threshold": float(threshold),
        "mgii_finder": dataclasses.asdict(criteria),
        "mgii_vetter_model": str(vetter_file or "none"),
        "mgii_vetter_model_sha256": file_sha256(str(vetter_file)) if vetter_file else "",
    }


def model_path(config):
    """The MgII CNN file of a run configuration: its mgii_model, or the shipped weights."""
    from qsopipe.models.store import default_weights

    return Path(config.get("mgii_model") or default_weights("mgii"))


def vetter_path(config):
    """The candidate vetter file of a run configuration: its mgii_vetter, the shipped one where that is
    null, None where it is 'none' (the finder's rules alone)."""
    from qsopipe.models.store import WEIGHTS_DIR

    value = config.get("mgii_vetter")
    if value is None:
        return WEIGHTS_DIR / "mgii_vetter.json"
    return None if value.strip().lower() == "none" else Path(value)


def doublet_finder(config):
    """(DoubletCriteria, Vetter or None) of a run configuration: the finder's criteria, and the vetter that
    judges the candidates they pass (None: the criteria alone)."""
    path = vetter_path(config)
    return DoubletCriteria(), None if path is None else load_vetter(str(path))


class MgIIStage(Stage):
    """shard + quasarnet + zfit -> mgii (one row per fiber) and mgii_absorbers (one row per absorber)."""

    name = "mgii"
    version = 2  # 2: the candidate vetter
    reads = ("shard", "quasarnet", "zfit")
    writes = ("mgii", "mgii_absorbers")

    def settings(self, config):
        criteria, _ = doublet_finder(config)
        vetter_file = vetter_path(config)
        return {"mgii_model_sha256": file_sha256(str(model_path(config))),
                "mgii_threshold": float(config["mgii_threshold"]),
                "mgii_finder": dataclasses.asdict(criteria),
                "mgii_vetter_sha256": file_sha256(str(vetter_file)) if vetter_file else "none"}

    def load(self, config):
        from qsopipe.models.store import load_model

        return load_model(str(model_path(config))), *doublet_finder(config)

    def run(self, inputs, config, loaded):
        model, criteria, vetter = loaded
        mgii_table, absorbers = process_plate(inputs["shard"], inputs["quasarnet"], inputs["zfit"], model,
                                              config["mgii_threshold"], criteria, vetter)
        metadata = results_metadata(model_path(config), config["mgii_threshold"], criteria, vetter_path(config))
        return {"mgii": with_metadata(mgii_table, metadata), "mgii_absorbers": with_metadata(absorbers, metadata)}

    def counts(self, outputs):
        flags = outputs["mgii"].column("MGII_FLAG").to_numpy()
        return {"nfiber": len(flags), "nsearched": int(np.sum(flags == 0)), "nabs": outputs["mgii_absorbers"].num_rows}


STAGE = MgIIStage()


@click.command(name="mgii")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.option("--qn", "qn_results", required=True, type=click.Path(exists=True, file_okay=False),
              help="RESULTS directory holding quasarnet/qn-pppp-mmmmm.parquet and zfit/zfit-pppp-mmmmm.parquet.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="RESULTS directory; writes mgii/mgii-*.parquet and mgii/absorbers-*.parquet.")
@config_options("mgii_model", "mgii_threshold", "mgii_vetter",
                aliases={"mgii_model": "--model", "mgii_threshold": "--threshold", "mgii_vetter": "--vetter"})
@click.option("--force", is_flag=True, help="Redo plates whose results are up to date.")
def command(shards, qn_results, out, force, **options):
    """Run the MgII absorber CNN on the quasars of every shard in SHARDS and fit their absorbers."""
    config = load_config(options.pop("config_file"), options)
    plates = shard_plates(shards, qn_results, ("quasarnet", "zfit"))
    roots = {"shard": shards, "quasarnet": qn_results, "zfit": qn_results, "mgii": out, "mgii_absorbers": out}
    if run_stage_on_plates(STAGE, plates, roots, config, force):
        raise SystemExit(1)
