"""What the template build scripts share: the redrock-templates source folder, its command line, provenance.

`build_zfit_templates.py` and `build_star_templates.py` both read files of
redrock-templates (BSD-3, `../shared/data/templates`) and record, per file,
where it came from.
"""

import argparse
import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "templates"


def source_arguments(description, output):
    """Parsed --source (folder of the redrock-templates files) and --out (default `output`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="folder with the redrock-templates files")
    parser.add_argument("--out", default=str(output))
    return parser.parse_args()


def file_provenance(path, header, basis):
    """Provenance of one template file: name, SHA-256, header versions, wavelength grid, basis shape."""
    path = Path(path)
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "VERSION": header.get("VERSION"), "RRVER": header.get("RRVER"), "INSPEC": header.get("INSPEC"),
            "CRVAL1": header["CRVAL1"], "CDELT1": header["CDELT1"], "shape": list(basis.shape)}
