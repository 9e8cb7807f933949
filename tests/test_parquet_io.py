"""Parquet helpers: schema metadata written and checked."""

import pyarrow as pa

from qsopipe.pipeline.parquet_io import with_metadata, write_parquet, written_with


def test_written_with_compares_the_given_settings_only(tmp_path):
    path = tmp_path / "results.parquet"
    settings = {"threshold": 0.5, "finder": {"ratio_range": (1.0, 2.0)}, "model_sha256": "ab" * 32}
    write_parquet(with_metadata(pa.table({"x": [1, 2]}), {**settings, "plate": 7001}), path)
    assert written_with(path, settings)
    assert written_with(path, {"plate": 7001})
    assert not written_with(path, {**settings, "threshold": 0.6})
    assert not written_with(path, {"finder": {"ratio_range": (1.0, 3.0)}})
    assert not written_with(path, {"absent": 1})
    assert not written_with(tmp_path / "missing.parquet", settings)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert not written_with(tmp_path / "broken.parquet", settings)
