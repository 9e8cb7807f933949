"""Every file name and folder the pipeline writes or looks for, in one place.

A plate unit is named NAME = 'pppp-mmmmm' (`discovery.PlateInput.name`);
its first field, the plate, names the shard's Hive partition. Each
per-plate *product* lives under a root folder of its own:

    SHARDS/PLATE=pppp/plate-NAME.parquet          shard        (qsopipe preprocess)
    RESULTS/quasarnet/qn-NAME.parquet             quasarnet    (qsopipe quasarnet)
    RESULTS/zfit/zfit-NAME.parquet                zfit         (qsopipe zfit)
    RESULTS/bal/bal-NAME.parquet                  bal          (qsopipe bal)
    RESULTS/mgii/mgii-NAME.parquet                mgii         (qsopipe mgii)
    RESULTS/mgii/absorbers-NAME.parquet           mgii_absorbers

and `qsopipe run` lays out its OUTDIR as

    OUTDIR/catalog.fits, OUTDIR/run_report.json
    OUTDIR/done/NAME.json                         one completion marker per plate
    OUTDIR/shards/                                SHARDS (with keep_shards)
    OUTDIR/results/                               RESULTS
"""

from pathlib import Path

#: product -> (folder under the product's root, file name); both formatted with the unit's name and plate.
PRODUCT_FILES = {
    "shard": ("PLATE={plate}", "plate-{name}.parquet"),
    "quasarnet": ("quasarnet", "qn-{name}.parquet"),
    "zfit": ("zfit", "zfit-{name}.parquet"),
    "bal": ("bal", "bal-{name}.parquet"),
    "mgii": ("mgii", "mgii-{name}.parquet"),
    "mgii_absorbers": ("mgii", "absorbers-{name}.parquet"),
}


def product_path(product, root, name):
    """The file of `product` for plate unit `name` under `root`, e.g. RESULTS/quasarnet/qn-NAME.parquet."""
    folder, filename = PRODUCT_FILES[product]
    fields = {"name": name, "plate": name.partition("-")[0]}
    return Path(root) / folder.format(**fields) / filename.format(**fields)


def find_products(product, root):
    """[(name, path)] of every file of `product` under `root`, sorted by name."""
    folder, filename = PRODUCT_FILES[product]
    prefix, suffix = filename.split("{name}")
    pattern = f"{folder.format(name='*', plate='*')}/{prefix}*{suffix}"
    found = {path.name[len(prefix):len(path.name) - len(suffix)]: path for path in Path(root).glob(pattern)
             if path.is_file()}
    return sorted(found.items())


class RunLayout:
    """The output tree of `qsopipe run` under one OUTDIR (paths as attributes)."""

    def __init__(self, outdir):
        self.outdir = Path(outdir)
        self.shards = self.outdir / "shards"
        self.results = self.outdir / "results"
        self.done = self.outdir / "done"
        self.catalog = self.outdir / "catalog.fits"
        self.report = self.outdir / "run_report.json"

    def marker(self, name):
        """OUTDIR/done/NAME.json: the completion marker of one plate."""
        return self.done / f"{name}.json"
