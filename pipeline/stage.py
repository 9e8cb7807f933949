"""The stage interface, and the one resume rule of `qsopipe run` and of every stage's command.

A stage turns per-plate products (named tables, see `layout.PRODUCT_FILES`)
into other per-plate products. It declares its `name`, the products it
`reads` and `writes`, its `version`, the `settings` that key its results
(model sha256, thresholds, finder settings) and a per-plate `run` on
in-memory tables. The raw input of a plate is the product "spectra": its
`discovery.PlateInput`, keyed by its files' contents (`digests`).

Every product records in its Parquet metadata the *recipe* that made it
(stage, version, settings and the keys of what the stage read) and its
*key*, the sha256 of that recipe. A stored product is reused only while its
recorded key equals the key its recipe gives now, so a changed threshold,
model, stage version or input content redoes exactly what depends on it,
and the log says why.
"""

import importlib
import json
import logging
import time

import click

from qsopipe.pipeline import layout
from qsopipe.pipeline.digests import content_key, file_records, sha256_of_file, sha256_of_text
from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.parquet_io import read_file_metadata, read_parquet, with_metadata, write_parquet

log = logging.getLogger(__name__)

#: The plate stages of `qsopipe run`, in order, as "module:attribute" of a Stage instance.
PLATE_STAGES = (
    "qsopipe.stages.preprocess:STAGE",
    "qsopipe.stages.quasarnet:STAGE",
    "qsopipe.stages.zfit:STAGE",
    "qsopipe.stages.bal:STAGE",
    "qsopipe.stages.mgii:STAGE",
)

#: Stage.counts keys -> what they count, for log lines.
COUNT_LABELS = {"nfiber": "fibers", "nqso": "quasars", "nzfit": "fitted redshifts", "nbal": "BAL quasars",
                "nsearched": "searched", "nabs": "MgII absorbers"}

#: PlateRun actions that are no change of settings or inputs: not worth a log line.
ROUTINE_ACTIONS = ("reused", "no result yet", "not stored", "needed by a later stage", "forced")

#: The raw input of a plate: its PlateInput, keyed by the content of its files.
SPECTRA = "spectra"


class Stage:
    """One per-plate step. Subclasses set the class attributes and implement `run`."""

    name = ""
    #: Bump when the stage's output changes for the same inputs and settings.
    version = 1
    reads = ()
    writes = ()

    def settings(self, config):
        """The JSON-able settings, taken from the run configuration, that key this stage's results."""
        return {}

    def load(self, config):
        """What `run` needs that is costly to make (a network), made once per process and settings."""
        return None

    def run(self, inputs, config, loaded):
        """{product: pyarrow.Table} for one plate from {product read: table} (SPECTRA: its PlateInput)."""
        raise NotImplementedError

    def counts(self, outputs):
        """Figures for the plate's log line and summary, e.g. {"nqso": 12}, from its {product: table}."""
        return {}


def log_changes(name, actions):
    """One log line per stage of plate `name` that was redone for a change ({stage: action}, PlateRun.actions)."""
    for stage, action in actions.items():
        if action not in ROUTINE_ACTIONS:
            log.info("plate %s: %s redone: %s", name, stage, action)


def plate_stages(specs=PLATE_STAGES):
    """The Stage instances named by `specs` ("module:attribute"), imported on first use."""
    stages = []
    for spec in specs:
        module, attribute = spec.split(":")
        stages.append(getattr(importlib.import_module(module), attribute))
    return stages


def recipe(stage, settings, input_keys):
    """What makes a stage's products: {"stage", "version", "settings", "inputs": {product: key}}.

    Returned as it reads back from JSON (tuples become lists), so that it
    compares equal to the recipe a stored product records.
    """
    made_by = {"stage": stage.name, "version": stage.version, "settings": settings, "inputs": input_keys}
    return json.loads(json.dumps(made_by))


def recipe_key(made_by):
    """The sha256 of a recipe (its canonical JSON)."""
    return sha256_of_text(json.dumps(made_by, sort_keys=True))


def why_redone(recorded, expected):
    """Why a product made by `recorded` (a recipe, or None) is not the one `expected` asks for."""
    if recorded is None:
        return "no result yet"
    if recorded.get("version") != expected["version"]:
        return f"{expected['stage']} version {recorded.get('version')} -> {expected['version']}"
    old, new = recorded.get("settings", {}), expected["settings"]
    changed = [f"{key} {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}"
               for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    if changed:
        return ", ".join(changed)
    inputs = [product for product, key in expected["inputs"].items() if recorded.get("inputs", {}).get(product) != key]
    return f"{', '.join(inputs) or 'input'} changed"


class PlateProducts:
    """Where one plate's products live: a root folder per product (`layout`), the rest in memory.

    roots : {product: folder}; a product without a root is kept in memory only.
    spectra : the plate's PlateInput, or None when no stage reads raw input.
    spectra_key : the content key of its files (`digests.content_key`).
    """

    def __init__(self, name, roots, spectra=None, spectra_key=None):
        self.name = name
        self.roots = dict(roots)
        self.spectra = spectra
        self.spectra_key = spectra_key
        self.tables = {}

    def stored(self, product):
        return product in self.roots

    def path(self, product):
        return layout.product_path(product, self.roots[product], self.name)

    def recorded(self, product):
        """(key, recipe) recorded in the stored product, or (None, None) when absent or unreadable."""
        metadata = read_file_metadata(self.path(product))
        return metadata.get("key"), metadata.get("recipe")

    def read(self, product):
        if product == SPECTRA:
            return self.spectra
        if product not in self.tables:
            self.tables[product] = read_parquet(self.path(product))
        return self.tables[product]

    def keep(self, product, table):
        """Hold `table` in memory and write it when the product has a root."""
        self.tables[product] = table
        if self.stored(product):
            write_parquet(table, self.path(product))


_LOADED = {}


def _loaded(stage, config, settings):
    """stage.load(config), once per process for each stage and settings."""
    key = (stage.name, json.dumps(settings, sort_keys=True))
    if key not in _LOADED:
        _LOADED[key] = stage.load(config)
    return _LOADED[key]


class PlateRun:
    """The stages of one plate under the resume rule.

    Each stage whose products are all stored is reused when every stored
    product records the key its recipe gives now, and run otherwise; a
    stage with a product kept in memory only (the shard of `qsopipe run`)
    runs when a later stage needs that product. `force` redoes every stage.
    """

    def __init__(self, stages, products, config, force=False):
        self.stages = list(stages)
        self.products = products
        self.config = config
        self.force = force
        self.producer = {product: stage for stage in self.stages for product in stage.writes}
        self.keys, self.recipes = self._expected_keys()
        self.actions = {}   #: stage name -> "reused" or the reason it ran
        self.seconds = {}   #: stage name -> seconds its run took

    def _expected_keys(self):
        keys, recipes = {}, {}
        for stage in self.stages:
            for product in stage.reads:
                if product not in keys:
                    keys[product] = self._external_key(product)
            made_by = recipe(stage, stage.settings(self.config), {product: keys[product] for product in stage.reads})
            for product in stage.writes:
                keys[product], recipes[product] = recipe_key(made_by), made_by
        return keys, recipes

    def _external_key(self, product):
        """The key of a product no stage here makes: the spectra's content key, or what the file records."""
        if product == SPECTRA:
            return self.products.spectra_key
        key, _ = self.products.recorded(product)
        if key is None:
            key = sha256_of_file(self.products.path(product))
        return key

    def stale(self, stage):
        """None when every product of `stage` is stored with the expected key, else why it must run."""
        if self.force:
            return "forced"
        for product in stage.writes:
            if not self.products.stored(product):
                return "not stored"
            key, made_by = self.products.recorded(product)
            if key is None and self.products.path(product).exists():
                return "no recipe recorded (made by an older qsopipe)"
            if key != self.keys[product]:
                return why_redone(made_by, self.recipes[product])
        return None

    def execute(self):
        """Bring every stored product up to date; returns the plate's counts from every stage."""
        for stage in self.stages:
            if not all(self.products.stored(product) for product in stage.writes):
                continue
            reason = self.stale(stage)
            if reason is None:
                self.actions[stage.name] = "reused"
            else:
                self._run(stage, reason)
        counts = {}
        for stage in self.stages:
            if stage.name in self.actions:
                counts.update(stage.counts({product: self.table(product) for product in stage.writes}))
        return counts

    def table(self, product):
        """The product's table: in memory, stored and up to date, or made now by its stage."""
        stage = self.producer.get(product)
        if stage is None or product in self.products.tables or stage.name in self.actions:
            return self.products.read(product)
        self._run(stage, "needed by a later stage")
        return self.products.read(product)

    def _run(self, stage, reason):
        inputs = {product: self.table(product) for product in stage.reads}
        settings = self.recipes[stage.writes[0]]["settings"]
        loaded = _loaded(stage, self.config, settings)
        start = time.perf_counter()
        outputs = stage.run(inputs, self.config, loaded)
        self.seconds[stage.name] = time.perf_counter() - start
        for product in stage.writes:
            stamped = with_metadata(outputs[product], {"key": self.keys[product], "recipe": self.recipes[product]})
            self.products.keep(product, stamped)
        self.actions[stage.name] = reason


def shard_plates(shards, results=None, products=()):
    """[(name, None)] of every shard under `shards` for `run_stage_on_plates`, after checking that each has
    its `products` under `results`; a click.ClickException naming what is missing."""
    found = layout.find_products("shard", shards)
    if not found:
        raise click.ClickException(f"{shards}: no PLATE=*/plate-*.parquet shards")
    for name, shard_path in found:
        for product in products:
            path = layout.product_path(product, results, name)
            if not path.is_file():
                raise click.ClickException(f"{path}: {product} results missing for shard {shard_path}")
    return [(name, None) for name, _ in found]


def run_stage_on_plates(stage, plates, roots, config, force=False):
    """One stage's command: run `stage` on each (name, PlateInput or None) under the resume rule.

    roots : {product: folder} of what the stage reads and writes.
    Logs one line per plate; a plate whose input cannot be used is logged
    and counted, the others go on. Returns the number of plates that failed
    or left out an unreadable file.
    """
    failed = 0
    for name, plate_input in plates:
        start = time.perf_counter()
        try:
            spectra_key = content_key(file_records(plate_input.files)) if plate_input else None
            plate = PlateRun([stage], PlateProducts(name, roots, plate_input, spectra_key), config, force)
            counts = plate.execute()
        except InputError as err:
            failed += 1
            log.error("plate %s failed: %s", name, err)
            continue
        log_changes(name, plate.actions)
        for path, reason in counts.get("skipped", {}).items():
            log.warning("plate %s: left out %s: %s", name, path, reason)
        failed += bool(counts.get("skipped"))
        if plate.actions[stage.name] == "reused":
            log.info("plate %s: %s is up to date, skipped", name, plate.products.path(stage.writes[0]))
            continue
        seconds = time.perf_counter() - start
        figures = ", ".join(f"{counts[key]} {label}" for key, label in COUNT_LABELS.items() if key in counts)
        log.info("plate %s: %s in %.2f s (%.0f spectra/s)", name, figures, seconds,
                 counts.get("nfiber", 0) / seconds if seconds > 0 else 0.0)
    return failed
