"""Parquet helpers: schema metadata written and read back."""

import pyarrow as pa
import pytest

from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.parquet_io import read_file_metadata, read_parquet, with_metadata, write_parquet


def test_metadata_reads_back_and_unreadable_files_give_none(tmp_path):
    path = tmp_path / "results.parquet"
    settings = {"threshold": 0.5, "finder": {"ratio_range": [1.0, 2.0]}, "model_sha256": "ab" * 32}
    write_parquet(with_metadata(pa.table({"x": [1, 2]}), settings), path)
    assert read_file_metadata(path) == settings
    assert read_file_metadata(tmp_path / "missing.parquet") == {}
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert read_file_metadata(tmp_path / "broken.parquet") == {}
    with pytest.raises(InputError, match="broken.parquet: not a readable Parquet file"):
        read_parquet(tmp_path / "broken.parquet")
