"""Survey-format adapters for SDSS/BOSS/eBOSS files, one module per format.

Science code never sees a FITS file: these readers turn each format into a
`qsopipe.pipeline.plate.Plate` or a plain column table. The input formats
(spplate, spec) each define FORMAT, listed in `qsopipe.pipeline.formats`.
"""

from qsopipe.pipeline.sdss.catalogs import read_dr12q, read_spall
from qsopipe.pipeline.sdss.spec import read_spec, read_spec_plate
from qsopipe.pipeline.sdss.spplate import read_spplate

__all__ = ["read_spplate", "read_spec", "read_spec_plate", "read_spall", "read_dr12q"]
