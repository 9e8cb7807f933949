"""The stage interface's resume rule on two toy stages (no network, no files but Parquet)."""

import pyarrow as pa

from qsopipe.pipeline.layout import find_products, product_path
from qsopipe.pipeline.stage import SPECTRA, PlateProducts, PlateRun, Stage, why_redone


class Double(Stage):
    name = "quasarnet"
    reads = ("shard",)
    writes = ("quasarnet",)

    def settings(self, config):
        return {"factor": config["factor"]}

    def run(self, inputs, config, loaded):
        return {"quasarnet": pa.table({"x": pa.array(inputs["shard"].column("x").to_numpy() * config["factor"])})}

    def counts(self, outputs):
        return {"nfiber": outputs["quasarnet"].num_rows}


class Read(Stage):
    name = "preprocess"
    reads = (SPECTRA,)
    writes = ("shard",)

    def run(self, inputs, config, loaded):
        return {"shard": pa.table({"x": pa.array(inputs[SPECTRA])})}


def plate(tmp_path, factor, spectra=(1, 2, 3), key="content-1", keep_shard=False):
    roots = {"quasarnet": tmp_path / "results", **({"shard": tmp_path / "shards"} if keep_shard else {})}
    products = PlateProducts("7000-57000", roots, list(spectra), key)
    return PlateRun([Read(), Double()], products, {"factor": factor})


def test_results_are_reused_only_while_settings_and_input_content_match(tmp_path):
    first = plate(tmp_path, 2)
    assert first.execute() == {"nfiber": 3}
    assert first.actions == {"preprocess": "needed by a later stage", "quasarnet": "no result yet"}
    again = plate(tmp_path, 2)
    again.execute()
    assert again.actions == {"quasarnet": "reused"}, "a shard kept in memory is not made when nothing needs it"
    changed = plate(tmp_path, 3)
    changed.execute()
    assert changed.actions["quasarnet"] == "factor 2 -> 3"
    assert changed.products.read("quasarnet").column("x").to_pylist() == [3, 6, 9]
    edited = plate(tmp_path, 3, spectra=(1, 2, 4), key="content-2")
    edited.execute()
    assert edited.actions["quasarnet"] == "shard changed"
    product_path("quasarnet", tmp_path / "results", "7000-57000").unlink()
    removed = plate(tmp_path, 3, key="content-2")
    removed.execute()
    assert removed.actions["quasarnet"] == "no result yet"


def test_stored_shards_are_reused_and_found(tmp_path):
    plate(tmp_path, 2, keep_shard=True).execute()
    again = plate(tmp_path, 2, keep_shard=True)
    again.execute()
    assert again.actions == {"preprocess": "reused", "quasarnet": "reused"}
    assert [name for name, _ in find_products("shard", tmp_path / "shards")] == ["7000-57000"]
    assert product_path("shard", "S", "7000-57000").as_posix() == "S/PLATE=7000/plate-7000-57000.parquet"


def test_why_redone_names_the_change():
    expected = {"stage": "mgii", "version": 2, "settings": {"a": 1}, "inputs": {"shard": "k1"}}
    assert why_redone(None, expected) == "no result yet"
    assert why_redone({**expected, "version": 1}, expected) == "mgii version 1 -> 2"
    assert why_redone({**expected, "settings": {"a": 0}}, expected) == "a 0 -> 1"
    assert why_redone({**expected, "inputs": {"shard": "k0"}}, expected) == "shard changed"
