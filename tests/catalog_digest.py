"""A catalog's content as a comparable record: header cards and one sha256 per column.

What a rerun may change is left out: the write date, the checksums, the
software and dependency versions, and the directory the inputs were given
under (INPUTS PATH is made relative to `root`, and its string width is not
recorded). Columns are digested one by one, so a catalog that gains columns
still matches the record of the columns it had.

    python tests/catalog_digest.py CATALOG.fits --root INPUT_ROOT  # prints the record as JSON
"""

import argparse
import hashlib
import json
import re

import fitsio
import numpy as np

VOLATILE_CARDS = re.compile(r"^(DATE|CHECKSUM|DATASUM|QSOPIPE|DEPNAM\d+|DEPVER\d+|NAXIS1|TFIELDS|"
                            r"TTYPE\d+|TFORM\d+|TUNIT\d+|TCOMM\d+|TDIM\d+)$")


def _column_digest(values):
    """sha256 of a column's dtype kind, shape and bytes (strings stripped of padding)."""
    values = np.asarray(values)
    if values.dtype.kind in "SU":
        payload = json.dumps([str(v).rstrip() for v in values.ravel()]).encode()
    else:
        payload = np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<"))).tobytes()
    return hashlib.sha256(f"{values.dtype.kind}{values.dtype.itemsize}{values.shape}".encode() + payload).hexdigest()


def catalog_record(path, root=""):
    """{extname: {"header": {card: value}, "columns": {name: sha256}}} of the catalog at `path`."""
    record = {}
    with fitsio.FITS(str(path)) as fits:
        for index, hdu in enumerate(fits):
            header = hdu.read_header()
            name = header.get("EXTNAME", f"HDU{index}").strip()
            cards = {key: header[key] for key in header.keys() if not VOLATILE_CARDS.match(key)}
            entry = {"header": cards, "columns": {}}
            if hdu.get_exttype() == "BINARY_TBL" and hdu.get_nrows():
                data = hdu.read()
                for column in data.dtype.names:
                    values = data[column]
                    if name == "INPUTS" and column == "PATH":
                        values = np.array([str(v).rstrip().removeprefix(root) for v in values])
                    unit = header.get(f"TUNIT{data.dtype.names.index(column) + 1}", "")
                    entry["columns"][column] = f"{unit}:{_column_digest(values)}"
            record[name] = entry
    return record


def differences(expected, actual):
    """What of `expected` (a `catalog_record`) `actual` lacks or holds otherwise, one line each."""
    lines = []
    for name, entry in expected.items():
        if name not in actual:
            lines.append(f"{name}: HDU missing")
            continue
        for key, value in entry["header"].items():
            if actual[name]["header"].get(key) != value:
                lines.append(f"{name}: card {key} = {actual[name]['header'].get(key)!r}, recorded {value!r}")
        for column, digest in entry["columns"].items():
            if actual[name]["columns"].get(column) != digest:
                lines.append(f"{name}: column {column} differs")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog")
    parser.add_argument("--root", default="", help="prefix stripped from INPUTS PATH")
    args = parser.parse_args()
    print(json.dumps(catalog_record(args.catalog, args.root), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
