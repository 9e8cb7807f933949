"""`qsopipe simulate`: the thin click command around the plate simulator."""

import logging

import click

from qsopipe.stages.simulate.plate_model import simulate_plate
from qsopipe.stages.simulate.plate_writer import write_spplate
from qsopipe.stages.simulate.spec_writer import write_spec_lite
from qsopipe.stages.simulate.truth import plate_truth, write_truth

log = logging.getLogger(__name__)


def plate_ids(first_plate, first_mjd, nplates):
    """(plate, mjd) of each simulated plate: consecutive numbers from the first ones."""
    return [(first_plate + i, first_mjd + i) for i in range(nplates)]


@click.command(name="simulate")
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--plates", "nplates", default=1, show_default=True, type=click.IntRange(min=1), help="Number of plates.")
@click.option("--fibers", "nfibers", default=1000, show_default=True, type=click.IntRange(min=1), help="Fibers per plate.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed.")
@click.option("--first-plate", default=7000, show_default=True, type=click.IntRange(min=1), help="Number of the first plate.")
@click.option("--first-mjd", default=57000, show_default=True, type=click.IntRange(min=10000, max=99999), help="MJD of the first plate.")
@click.option("--spec-lite", is_flag=True, help="Also write one spec-lite file per fiber.")
@click.option("--mgii-fraction", type=click.FloatRange(0.0, 1.0), default=None,
              help="Fraction of eligible quasar sightlines given a strong MgII absorber (default: natural incidence).")
def command(outdir, nplates, nfibers, seed, first_plate, first_mjd, spec_lite, mgii_fraction):
    """Simulate BOSS quasar-target plates (spPlate files) with a truth table."""
    truths, mgii, metals = [], [], []
    for plate, mjd in plate_ids(first_plate, first_mjd, nplates):
        sim = simulate_plate(plate, mjd, nfibers, seed, mgii_fraction=mgii_fraction)
        path = write_spplate(sim, outdir)
        if spec_lite:
            write_spec_lite(sim, outdir)
        plate_rows, mgii_rows, metal_rows = plate_truth(sim)
        truths.append(plate_rows)
        mgii.append(mgii_rows)
        metals.append(metal_rows)
        log.info("wrote %s (%d fibers, %d MgII absorbers)", path, nfibers, len(mgii_rows))
    truth_path = write_truth(f"{outdir}/truth.fits", truths, mgii, metals, seed)
    log.info("wrote %s", truth_path)
