"""The catalog's columns: name, type, unit and description, in file order.

The single source for the FITS TFORMn/TUNITn/TCOMMn cards written by
`qsopipe.stages.catalog` and for the column tables of docs/catalog.md
(`python -m qsopipe.stages.catalog_columns` prints them, with the flag-bit
tables generated from the stage modules' flag enums).
"""

import importlib
import inspect
import sys
from dataclasses import dataclass

from qsopipe.pipeline.constants import QN_LINES
from qsopipe.pipeline.plate import TARGET_COLUMNS

#: Longest description that fits as the comment of a TTYPEn card.
MAX_DESCRIPTION = 47

#: numpy dtype -> FITS binary-table TFORM letter.
_TFORM = {"i2": "I", "i4": "J", "i8": "K", "f4": "E", "f8": "D"}

#: MGII_FLAG bit set by the catalog stage when a plate has no MgII results;
#: high enough to stay clear of the MgII stage's own MgIIFlag bits.
MGII_FLAG_NO_RESULTS = 1 << 30
#: ZWARNING bit set by the catalog stage when a plate has no redshift-fit results (clear of ZWarning's bits).
ZWARNING_NO_RESULTS = 1 << 30


@dataclass(frozen=True)
class Column:
    """One table column.

    name : FITS TTYPE.
    dtype : numpy dtype string: 'i2', 'i4', 'i8', 'f4', 'f8', 'U<n>' for a
        fixed-width string or 'U' for a string as wide as its longest value.
    unit : FITS-standard unit string ('deg', 'Angstrom'); '' = dimensionless.
    description : short text, written as TTYPEn comment and TCOMMn card.
    """

    name: str
    dtype: str
    unit: str
    description: str

    def tform(self, width=None):
        """FITS TFORM; `width` (characters) is needed for a 'U' column."""
        if self.dtype.startswith("U"):
            return f"{max(int(self.dtype[1:] or width or 1), 1)}A"
        return _TFORM[self.dtype]


LINE_NAMES = tuple(name for name, _ in QN_LINES)
_LINE_LABEL = {"LYA": "Lya", "CIV": "CIV", "CIII": "CIII]", "MGII": "MgII", "HBETA": "Hbeta", "HALPHA": "Halpha"}

CONFIDENCE_COLUMNS = tuple(f"C_{name}" for name in LINE_NAMES)
LINE_REDSHIFT_COLUMNS = tuple(f"Z_{name}" for name in LINE_NAMES)

CATALOG_COLUMNS = (
    Column("PLATE", "i4", "", "Plate number"),
    Column("MJD", "i4", "", "Modified Julian date of the plate observation"),
    Column("FIBERID", "i4", "", "Fiber number"),
    Column("THING_ID", "i8", "", "SDSS photometric object id; -1 if none"),
    Column("TARGETID", "i8", "", "PLATE*10^9 + MJD*10^4 + FIBERID"),
    Column("RA", "f8", "deg", "Right ascension (J2000)"),
    Column("DEC", "f8", "deg", "Declination (J2000)"),
    Column("SDSS_NAME", "U19", "", "SDSS designation Jhhmmss.ss+ddmmss.s"),
    Column("OBJTYPE", "U16", "", "Object type from the plug map"),
    Column("IS_QSO_QN", "i2", "", "1: >= N_TH lines C > C_TH, one alone C > C_TH1"),
    Column("NLINES_QN", "i2", "", "Lines with C > C_TH (of 6); 0 if unclassified"),
    Column("Z", "f8", "", "Best redshift: fit if ZWARNING = 0, else Z_QN"),
    Column("ZERR", "f8", "", "Uncertainty of Z; -1 where Z is Z_QN"),
    Column("ZWARNING", "i4", "", "Redshift-fit bits (ZWarning); 0 = Z is the fit"),
    Column("SOURCE_Z", "U4", "", "Where Z comes from: 'ZFIT' or 'QN'"),
    Column("DELTACHI2", "f4", "", "chi2 of next minimum minus best; 0 if none"),
    Column("Z_PIPE", "f8", "", "Survey pipeline redshift (HDU2); -1 if none"),
    Column("ZERR_PIPE", "f8", "", "Uncertainty of Z_PIPE; -1 if none"),
    Column("ZWARNING_PIPE", "i4", "", "Survey pipeline ZWARNING; -1 if none"),
    Column("CLASS_PIPE", "U6", "", "Survey pipeline class; '' if none"),
    Column("Z_QN", "f8", "", "Redshift of the most confident line; -1 if none"),
    *(Column(f"C_{name}", "f4", "", f"QuasarNET {_LINE_LABEL[name]} confidence; 0 if none")
      for name in LINE_NAMES),
    *(Column(f"Z_{name}", "f4", "", f"Redshift from the {_LINE_LABEL[name]} line; -1 if none")
      for name in LINE_NAMES),
    Column("C_BAL_CIV", "f4", "", "QuasarNET BAL (CIV) finder confidence"),
    Column("Z_BAL_CIV", "f4", "", "Redshift from the BAL (CIV) finder; -1 if none"),
    Column("BAL_FLAG_QN", "i2", "", "1 if quasar and C_BAL_CIV > BAL_TH, else 0"),
    Column("BAL_PROB", "f4", "", "BAL CNN P(BI_CIV > 0); -1 if not run"),
    Column("BAL_FLAG", "i2", "", "1 if BAL_PROB > BALP_TH (or BAL_FLAG_QN if -1)"),
    Column("MGII_PROB", "f4", "", "MgII CNN absorber probability; -1 if not run"),
    Column("IS_MGII_ABS", "i2", "", "1: an MgII doublet found; -1: unsearched"),
    Column("N_MGII_ABS", "i2", "", "MgII absorbers found; -1 if not searched"),
    Column("MGII_ABS_REGION", "i2", "", "OR of its absorbers' REGION bits; -1 unsearched"),
    Column("MGII_ZMIN", "f8", "", "Lowest absorber z of MgII path; -1 unsearched"),
    Column("MGII_ZMAX", "f8", "", "Highest absorber z of MgII path; -1 unsearched"),
    Column("MGII_DZ", "f8", "", "Usable MgII redshift path; -1 unsearched"),
    Column("MGII_EW_LIMIT", "f4", "Angstrom", "Median 5-sigma EW_2796 limit; -1 unsearched"),
    Column("QN_FLAG", "i4", "", "QNFlag bits: 1, 2 unclassified; 4 single line"),
    Column("PREP_FLAG", "i4", "", "Preprocessing bits (PrepFlag); 0 = clean"),
    Column("MGII_FLAG", "i4", "", "Why MgII not searched (MgIIFlag); 0 = done"),
    *(Column(name, "i8", "", f"{name} target-selection bitmask") for name in TARGET_COLUMNS),
)

ABSORBER_COLUMNS = (
    Column("PLATE", "i4", "", "Plate number"),
    Column("MJD", "i4", "", "Modified Julian date of the plate observation"),
    Column("FIBERID", "i4", "", "Fiber number"),
    Column("TARGETID", "i8", "", "PLATE*10^9 + MJD*10^4 + FIBERID"),
    Column("RA", "f8", "deg", "Right ascension of the quasar (J2000)"),
    Column("DEC", "f8", "deg", "Declination of the quasar (J2000)"),
    Column("Z_QSO", "f8", "", "Quasar redshift of the search (Z)"),
    Column("Z_ABS", "f8", "", "Absorber redshift"),
    Column("Z_ABS_ERR", "f8", "", "Uncertainty of Z_ABS"),
    Column("EW_2796", "f4", "Angstrom", "Rest-frame equivalent width of MgII 2796"),
    Column("EW_2796_ERR", "f4", "Angstrom", "Uncertainty of EW_2796"),
    Column("EW_2803", "f4", "Angstrom", "Rest-frame equivalent width of MgII 2803"),
    Column("EW_2803_ERR", "f4", "Angstrom", "Uncertainty of EW_2803"),
    Column("SNR_2796", "f4", "", "Signal-to-noise ratio of the 2796 line"),
    Column("SNR_2803", "f4", "", "Signal-to-noise ratio of the 2803 line"),
    Column("REGION", "i2", "", "Where the absorber lies (MgIIRegion bits)"),
    Column("MGII_PROB", "f4", "", "MgII CNN probability of the sightline"),
)

INPUT_COLUMNS = (
    Column("PATH", "U", "", "Input file"),
    Column("PLATE", "i4", "", "Plate number; -1 if unknown"),
    Column("MJD", "i4", "", "Modified Julian date; -1 if unknown"),
    Column("STATUS", "U", "", "Processing status; '' if unknown"),
    Column("REASON", "U", "", "Why it failed or was rejected; '' if fine"),
)

#: Flag columns -> (module, enum class) defining their bits.
FLAG_ENUMS = {
    "PREP_FLAG": ("qsopipe.stages.preprocess", "PrepFlag"),
    "QN_FLAG": ("qsopipe.stages.quasarnet", "QNFlag"),
    "ZWARNING": ("qsopipe.stages.redshift_fit", "ZWarning"),
    "MGII_FLAG": ("qsopipe.stages.mgii", "MgIIFlag"),
    "REGION": ("qsopipe.stages.mgii_regions", "MgIIRegion"),
}

#: Flag columns -> (their NO_RESULTS bit, the stage whose results are missing).
NO_RESULTS_BITS = {"ZWARNING": (ZWARNING_NO_RESULTS, "redshift-fit"), "MGII_FLAG": (MGII_FLAG_NO_RESULTS, "MgII")}


def markdown_table(columns):
    """A Markdown table (name, type, unit, description) of `columns`, as a string."""
    lines = ["| column | type | unit | description |", "|---|---|---|---|"]
    for column in columns:
        dtype = "string" if column.dtype.startswith("U") else column.dtype
        lines.append(f"| {column.name} | {dtype} | {column.unit} | {column.description} |")
    return "\n".join(lines)


def flag_markdown(flag_enum):
    """A Markdown table (bit, value, name, meaning) of an enum.IntFlag's members.

    The meaning is the member's `#:` comment when the enum's module carries
    one, else empty.
    """
    comments = _member_comments(flag_enum)
    lines = ["| bit | value | name | meaning |", "|---|---|---|---|"]
    for member in flag_enum:
        value = int(member)
        lines.append(f"| {value.bit_length() - 1} | {value} | {member.name} | {comments.get(member.name, '')} |")
    return "\n".join(lines)


def _member_comments(flag_enum):
    """{member name: text of its trailing `#:` comment} from the enum's source."""
    try:
        source = inspect.getsource(flag_enum)
    except (OSError, TypeError):
        return {}
    comments = {}
    for line in source.splitlines():
        code, _, comment = line.partition("#:")
        name = code.split("=")[0].strip()
        if comment and name.isidentifier():
            comments[name] = comment.strip()
    return comments


def flag_sections():
    """Markdown sections for each flag column, from the enums that can be imported now."""
    sections = []
    for column, (module_name, enum_name) in FLAG_ENUMS.items():
        try:
            flag_enum = getattr(importlib.import_module(module_name), enum_name)
        except (ImportError, AttributeError):
            table = f"(`{module_name}.{enum_name}` is not available yet.)"
        else:
            table = flag_markdown(flag_enum)
            if column in NO_RESULTS_BITS:
                bit, stage = NO_RESULTS_BITS[column]
                table += (f"\n| {bit.bit_length() - 1} | {bit} | NO_RESULTS "
                          f"| set by the catalog stage: the plate has no {stage} results |")
        sections.append(f"### {column} (`{module_name}.{enum_name}`)\n\n{table}")
    return "\n\n".join(sections)


def main():
    """Print the column and flag tables for docs/catalog.md."""
    for title, columns in (("CATALOG", CATALOG_COLUMNS), ("MGII_ABSORBERS", ABSORBER_COLUMNS),
                           ("INPUTS", INPUT_COLUMNS)):
        sys.stdout.write(f"### {title}\n\n{markdown_table(columns)}\n\n")
    sys.stdout.write(flag_sections() + "\n")


if __name__ == "__main__":
    main()
