"""One simulated BOSS quasar-target plate: fiber mix, plug map and spectra.

Mix per plate: SKY_FRACTION sky fibers, STD_FRACTION standard stars,
DEAD_FRACTION dead fibers, and among the other fibers quasars (~57%, including
broad-line galaxies), stars (~35%, ~37% with the standards)
and galaxies (~4.5%), shuffled over the fibers. Randomness comes from one
generator per plate, seeded by (seed, plate), so plates are independent and
reproducible.
"""

from dataclasses import dataclass

import numpy as np

from qsopipe.stages.simulate.grid import plate_loglam
from qsopipe.stages.simulate.spectra import SimulatedSpectra, simulate_objects

SKY_FRACTION = 0.065
DEAD_FRACTION = 0.006
#: Spectrophotometric standard stars per plate, as a fraction of the fibers (20 of 1000 on BOSS).
STD_FRACTION = 0.02
#: Shares of the object fibers.
OBJECT_MIX = (("QSO", 0.565), ("STAR", 0.35), ("GALAXY", 0.055), ("BLGALAXY", 0.01))
#: BOSS_TARGET1 bits of quasar targets (QSO_CORE, QSO_BONUS, QSO_NN, QSO_LIKE, QSO_FIRST_BOSS, QSO_KDE).
QSO_TARGET_BITS = (10, 11, 14, 17, 18, 19)
GAL_CMASS_BIT, STD_FSTAR_BIT = 1, 20
#: Plate focal-plane radius, mm, and plate scale, mm per degree.
FOCAL_RADIUS_MM, MM_PER_DEG = 326.0, 217.7

PLUGMAP_DTYPE = [
    ("OBJTYPE", "S16"), ("RA", "f8"), ("DEC", "f8"), ("MAG", "f4", (5,)), ("XFOCAL", "f8"), ("YFOCAL", "f8"),
    ("SPECTROGRAPHID", "i4"), ("FIBERID", "i4"), ("THING_ID", "i8"), ("PRIMTARGET", "i4"), ("SECTARGET", "i4"),
    ("BOSS_TARGET1", "i8"), ("BOSS_TARGET2", "i8"), ("ANCILLARY_TARGET1", "i8"), ("ANCILLARY_TARGET2", "i8"),
]


@dataclass
class SimulatedPlate:
    """A plate's ids, plug map (nfiber,) PLUGMAP_DTYPE, spectra and truth (row i = FIBERID i+1)."""

    plate: int
    mjd: int
    plugmap: np.ndarray
    spectra: SimulatedSpectra


def plate_rng(seed, plate):
    """The random generator of one plate."""
    return np.random.default_rng([int(seed), int(plate)])


def draw_fiber_kinds(nfiber, rng):
    """Kinds (nfiber,) str: sky and dead fibers plus the object mix, shuffled."""
    n_sky = int(round(SKY_FRACTION * nfiber))
    n_std = int(round(STD_FRACTION * nfiber))
    n_dead = rng.binomial(nfiber - n_sky - n_std, DEAD_FRACTION)
    n_obj = nfiber - n_sky - n_std - n_dead
    names = [name for name, _ in OBJECT_MIX]
    shares = np.array([share for _, share in OBJECT_MIX])
    kinds = np.concatenate([np.full(n_sky, "SKY"), np.full(n_std, "STD"), np.full(n_dead, "DEAD"),
                            rng.choice(names, size=n_obj, p=shares / shares.sum())]).astype("U8")
    return rng.permutation(kinds)


def simulate_plate(plate, mjd, nfiber, seed, mgii_fraction=None, loglam=None):
    """Simulate one plate of nfiber fibers; returns SimulatedPlate.

    Dead fibers keep the kind they were targeted as in OBJTYPE (drawn from the mix).
    """
    rng = plate_rng(seed, plate)
    loglam = plate_loglam() if loglam is None else loglam
    kinds = draw_fiber_kinds(nfiber, rng)
    spectra = simulate_objects(loglam, kinds, rng, mgii_fraction=mgii_fraction)
    plugmap = _plugmap(plate, kinds, spectra, rng)
    return SimulatedPlate(plate=int(plate), mjd=int(mjd), plugmap=plugmap, spectra=spectra)


def _plugmap(plate, kinds, spectra, rng):
    n = kinds.size
    plugmap = np.zeros(n, PLUGMAP_DTYPE)
    fiberid = np.arange(1, n + 1)
    plugmap["FIBERID"] = fiberid
    plugmap["SPECTROGRAPHID"] = np.where(fiberid <= max(n // 2, 1), 1, 2)
    radius = FOCAL_RADIUS_MM * np.sqrt(rng.random(n))
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    plugmap["XFOCAL"], plugmap["YFOCAL"] = radius * np.cos(angle), radius * np.sin(angle)
    ra0, dec0 = rng.uniform(0.0, 360.0), np.degrees(np.arcsin(rng.uniform(-0.2, 0.85)))
    plugmap["DEC"] = dec0 + plugmap["YFOCAL"] / MM_PER_DEG
    plugmap["RA"] = (ra0 + plugmap["XFOCAL"] / MM_PER_DEG / np.cos(np.radians(dec0))) % 360.0
    objtype = _objtypes(kinds, rng)
    plugmap["OBJTYPE"] = objtype
    plugmap["THING_ID"] = np.where(objtype == "SKY", -1, plate * 10000 + fiberid)
    plugmap["MAG"] = np.where(objtype[:, None] == "SKY", 0.0, np.minimum(spectra.truth["MAG"], 30.0))
    qso_bits = rng.random((n, len(QSO_TARGET_BITS))) < 0.35
    qso_bits[:, 3] |= ~qso_bits.any(axis=1)
    qso_target = (qso_bits * (1 << np.array(QSO_TARGET_BITS, np.int64))).sum(axis=1)
    plugmap["BOSS_TARGET1"] = np.select(
        [objtype == "QSO", objtype == "GALAXY", objtype == "SPECTROPHOTO_STD"],
        [qso_target, 1 << GAL_CMASS_BIT, 1 << STD_FSTAR_BIT], 0)
    plugmap["ANCILLARY_TARGET1"] = np.where((objtype == "STAR") & (rng.random(n) < 0.5), 1 << 30, 0)
    return plugmap


def _objtypes(kinds, rng):
    """Plug-map OBJTYPE: what each fiber was targeted as (not what it is)."""
    u = rng.random(kinds.size)
    targeted = np.where(np.isin(kinds, ("SKY",)), "SKY", "QSO").astype("U16")
    targeted[kinds == "STD"] = "SPECTROPHOTO_STD"
    targeted[(kinds == "STAR") & (u < 0.1)] = "STAR"
    targeted[(kinds == "GALAXY") & (u < 0.7)] = "GALAXY"
    dead = kinds == "DEAD"
    targeted[dead] = np.where(u[dead] < 0.6, "QSO", "GALAXY")
    return targeted
