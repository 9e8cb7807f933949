"""Parquet conventions shared by shards and stage results."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qsopipe.pipeline.atomic import atomic_path
from qsopipe.pipeline.errors import InputError

METADATA_PREFIX = "qsopipe."


def fixed_size_list(values):
    """A pyarrow FixedSizeListArray from a 2-d numpy array of shape (nrow, width)."""
    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def list_column(table, name, dtype=np.float32):
    """A fixed-size-list column of `table` as a 2-d numpy array (nrow, width)."""
    column = table.column(name).combine_chunks()
    width = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, width)


def structured_to_arrays(records):
    """Columns of a numpy structured array as a dict of pyarrow arrays."""
    return {name: pa.array(records[name]) for name in records.dtype.names}


def with_metadata(table, metadata):
    """`table` with schema metadata {qsopipe.<key>: JSON-encoded value} added."""
    encoded = {f"{METADATA_PREFIX}{key}".encode(): json.dumps(value).encode() for key, value in metadata.items()}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **encoded})


def read_metadata(schema):
    """The qsopipe.* schema metadata of a table or schema, JSON-decoded, keys without prefix."""
    raw = schema.metadata or {}
    out = {}
    for key, value in raw.items():
        key = key.decode()
        if key.startswith(METADATA_PREFIX):
            out[key[len(METADATA_PREFIX):]] = json.loads(value)
    return out


def read_file_metadata(path):
    """The qsopipe.* metadata of the Parquet file at `path` (`read_metadata`); {} when absent or unreadable."""
    try:
        return read_metadata(pq.read_schema(path))
    except (OSError, pa.ArrowInvalid, ValueError):
        return {}


def read_parquet(path):
    """The table of the Parquet file at `path`; InputError naming it when it cannot be read."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise InputError(path, f"not a readable Parquet file ({err})") from None


def write_parquet(table, path, compression_level=1):
    """Write `table` atomically: zstd, byte-stream-split floats, dictionaries for strings only."""
    strings = [field.name for field in table.schema if pa.types.is_string(field.type)]
    with atomic_path(path) as tmp:
        pq.write_table(
            table, tmp, compression="zstd", compression_level=compression_level,
            use_dictionary=strings, use_byte_stream_split=True,
        )
