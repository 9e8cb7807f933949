"""Provenance for output headers: software versions, file hashes, date, run parameters.

Header cards are (keyword, value, comment) tuples with keywords of at most
8 characters, ready for astropy or fitsio headers. Versions come from
importlib.metadata, so nothing heavy (TensorFlow) is imported.
"""

import importlib.metadata
import os
import platform
from datetime import datetime, timezone

from qsopipe.pipeline import __version__, grids
from qsopipe.pipeline.constants import QN_FINDERS

#: Distributions whose versions go into the header when installed, in order.
DEPENDENCIES = (
    "numpy", "scipy", "bottleneck", "fitsio", "astropy", "pyarrow", "dask", "distributed",
    "tensorflow", "tensorflow-cpu", "keras", "h5py", "matplotlib", "click",
)

#: Input grids as written to the header: prefix -> (log10 lambda_0, dlog10 lambda, npix).
HEADER_GRIDS = {
    "QN": (grids.QN_LOGLAM_MIN, grids.QN_DLOGLAM, grids.QN_NBINS),
    "MG": (grids.MGII_LOGLAM_MIN, grids.MGII_DLOGLAM, grids.MGII_NPIX),
}


def dependency_versions(names=DEPENDENCIES):
    """{distribution name: version} for those of `names` that are installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def utc_date():
    """The current UTC time as FITS DATE, 'YYYY-MM-DDThh:mm:ss'."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def software_cards(date=None):
    """Cards QSOPIPE, DATE, DEPNAMnn/DEPVERnn (python first, then DEPENDENCIES)."""
    cards = [
        ("QSOPIPE", __version__, "qsopipe version"),
        ("DATE", date or utc_date(), "UTC date this file was written"),
    ]
    versions = {"python": platform.python_version(), **dependency_versions()}
    for number, (name, version) in enumerate(versions.items()):
        cards.append((f"DEPNAM{number:02d}", name, "software dependency"))
        cards.append((f"DEPVER{number:02d}", version, f"{name} version"))
    return cards


def model_cards(models):
    """Cards <P>MODEL (file name) and <P>SHA256 for each (prefix, path, sha256) in `models`.

    Prefixes are 2 characters ('QN', 'BA', 'MG') so keywords stay within 8. The
    64-character digest leaves no room for a comment. An empty sha256 is left out.
    """
    cards = []
    for prefix, path, sha256 in models:
        cards.append((f"{prefix}MODEL", os.path.basename(str(path)), f"{prefix} model file"))
        if sha256:
            cards.append((f"{prefix}SHA256", sha256, ""))
    return cards


def threshold_cards(c_th=None, n_th=None, bal_th=None, mgii_threshold=None, bal_prob_th=None, c_th_single=None):
    """Cards C_TH, N_TH, C_TH1, BAL_TH, BALP_TH and MGII_TH; thresholds that are None are left out."""
    cards = [
        ("C_TH", c_th, "QuasarNET line confidence threshold"),
        ("N_TH", n_th, "IS_QSO_QN: lines needed with C > C_TH"),
        ("C_TH1", c_th_single, "IS_QSO_QN on one line: its C > C_TH1"),
        ("BAL_TH", bal_th, "BAL_FLAG_QN: quasar with C_BAL_CIV > BAL_TH"),
        ("BALP_TH", bal_prob_th, "BAL_FLAG: quasar with BAL_PROB > BALP_TH"),
        ("MGII_TH", mgii_threshold, "Window doublets need MGII_PROB >= MGII_TH"),
    ]
    return [card for card in cards if card[1] is not None]


def line_cards(lines=QN_FINDERS):
    """Cards LINEn (name) and LINEWAVn (rest wavelength, Angstrom), n from 1."""
    cards = []
    for number, (name, wavelength) in enumerate(lines, start=1):
        cards.append((f"LINE{number}", name, "QuasarNET line finder"))
        cards.append((f"LINEWAV{number}", float(wavelength), f"{name} rest wavelength [Angstrom]"))
    return cards


def grid_cards(grid_specs=None):
    """Cards <P>LOGL0, <P>DLOGL, <P>NPIX per grid: log10(lambda/Angstrom) = LOGL0 + DLOGL*i."""
    cards = []
    for prefix, (loglam_min, dloglam, npix) in (grid_specs or HEADER_GRIDS).items():
        cards.append((f"{prefix}LOGL0", float(loglam_min), f"{prefix} grid log10(lambda/A) of pixel 0"))
        cards.append((f"{prefix}DLOGL", float(dloglam), f"{prefix} grid log10 pixel width"))
        cards.append((f"{prefix}NPIX", int(npix), f"{prefix} grid number of pixels"))
    return cards


def header_cards(*, c_th=None, n_th=None, bal_th=None, mgii_threshold=None, bal_prob_th=None, c_th_single=None,
                 models=(), ninputs=None, lines=QN_FINDERS, grid_specs=None, date=None):
    """Every provenance card of a catalog header, in a stable order.

    Parameters
    ----------
    c_th, n_th, bal_th, mgii_threshold, bal_prob_th, c_th_single : float, int, float, float, float, float or None
        Classification thresholds (None: not known, card left out).
    models : iterable of (prefix, path, sha256)
        Model files, e.g. ('QN', 'qn.keras', '<hex>'), ('MG', ...).
    ninputs : int or None
        Number of input spectra files (card NINPUTS).
    lines : sequence of (name, rest wavelength in Angstrom)
    grid_specs : {prefix: (log10 lambda_0, dlog10 lambda, npix)} or None for HEADER_GRIDS
    date : str or None
        FITS DATE; now (UTC) when None.
    """
    cards = software_cards(date)
    cards += model_cards(models)
    cards += threshold_cards(c_th, n_th, bal_th, mgii_threshold, bal_prob_th, c_th_single)
    cards += grid_cards(grid_specs)
    cards += line_cards(lines)
    if ninputs is not None:
        cards.append(("NINPUTS", int(ninputs), "number of input files"))
    return cards


def zfit_cards(templates, sha256, settings):
    """Cards ZFTEMPL (templates file name), ZFSHA256, ZFWINDOW and ZFDCHI2 of the redshift fit (`settings`:
    FitSettings as a dict); none when `templates` is None (no fit results)."""
    if templates is None:
        return []
    return [("ZFTEMPL", templates, "redshift-fit templates file"), ("ZFSHA256", sha256, ""),
            ("ZFWINDOW", float(settings["window_kms"]), "fit window half-width around Z_QN [km/s]"),
            ("ZFDCHI2", float(settings["min_deltachi2"]), "ZWARNING SMALL_DELTA_CHI2 below this")]


#: Run-configuration keys that no other card carries: key -> (keyword, comment).
RUN_CONFIG_KEYWORDS = {
    "batch_size": ("BATCHSZ", "fixed batch of the compiled forward passes"),
    "workers": ("NWORKERS", "Dask workers requested (0: one per core)"),
    "tf_threads": ("TFTHREAD", "TensorFlow intra-op threads per worker"),
    "memory_limit": ("MEMLIMIT", "memory limit per Dask worker"),
}


def run_config_cards(config):
    """Header cards for the run configuration (`qsopipe.pipeline.config`) beyond thresholds and models."""
    cards = []
    for key, (keyword, comment) in RUN_CONFIG_KEYWORDS.items():
        if key in config:
            value = config[key]
            cards.append((keyword, 0 if value is None else value, comment))
    return cards
