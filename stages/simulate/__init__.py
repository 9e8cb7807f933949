"""Survey simulator: BOSS-like spPlate files with a truth table.

Array-level API (science functions on arrays, no I/O):

- `simulate_objects(loglam, kinds, rng, z=None, mag=None, mgii_fraction=None, with_noise=True)`
  -> `SimulatedSpectra` (flux, ivar, and_mask, ... and truth for N objects on a grid).
- `simulate_plate(plate, mjd, nfiber, seed, mgii_fraction=None)` -> `SimulatedPlate`.
- `inject_mgii_doublet(loglam, flux, z_abs, ew_2796, ew_2803, fwhm, rows=None)`.
"""

from qsopipe.stages.simulate.absorbers import inject_mgii_doublet
from qsopipe.stages.simulate.plate_model import SimulatedPlate, simulate_plate
from qsopipe.stages.simulate.spectra import SimulatedSpectra, simulate_objects

__all__ = ["SimulatedPlate", "SimulatedSpectra", "inject_mgii_doublet", "simulate_objects", "simulate_plate"]
