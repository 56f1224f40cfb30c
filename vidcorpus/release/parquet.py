"""Parquet, read and written: one table from rows and its schema, byte-identical for identical rows."""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from vidcorpus import storage

ROWS_PER_FILE = 100_000


def write_parquet(rows: Sequence[dict[str, Any]] | pa.Table, schema: pa.Schema, uri: str) -> None:
    """Rows (or an Arrow table) must already be in their final order; no wall-clock or host
    data is written. A table is cast to `schema` and written as one chunk, so the bytes are
    those of the same rows given as dicts."""
    if isinstance(rows, pa.Table):
        table = rows.cast(schema).combine_chunks()
    else:
        table = pa.Table.from_pylist(list(rows), schema=schema)
    with storage.open_write(uri) as f:
        pq.write_table(table, f, compression="zstd", write_statistics=True)


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (any storage scheme), optionally only `columns`."""
    with storage.open_read(uri) as f:
        return pq.read_table(pa.BufferReader(f.read()), columns=columns)


def read_parquet_schema(uri: str) -> pa.Schema:
    with storage.open_read(uri) as f:
        return pq.read_schema(f)


def part_name(index: int) -> str:
    """`part-00000.parquet`, ...: a table's files in row order (at least one, so empty tables load)."""
    return f"part-{index:05d}.parquet"
