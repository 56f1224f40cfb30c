"""Arrow IPC, read and written: a video's staged table rows in the work directory (binary, so
CLIP embeddings stay float32 arrays, never JSON lists), read back by the release writers."""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa

from vidcorpus import storage


def write_ipc(rows: Sequence[dict[str, Any]] | pa.Table, schema: pa.Schema, uri: str) -> int:
    """Rows (or a table) in `schema`, as one Arrow IPC file; returns their size in memory."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    storage.write_bytes(uri, sink.getvalue().to_pybytes())
    return table.nbytes


def read_ipc(uri: str) -> pa.Table:
    with storage.open_read(uri) as f:
        return pa.ipc.open_file(pa.BufferReader(f.read())).read_all()
