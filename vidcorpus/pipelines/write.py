"""Write one release file from its slices (see `pipelines.layout`): a clip or task shard, or a
Parquet part, reading only the staged rows and files of the units its slices name. Each file is
written under a temporary name and renamed (`storage.open_write`), and returns its manifest entry.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import pyarrow as pa

from vidcorpus import storage
from vidcorpus.pipelines.index import unit_dir, unit_files, unit_table
from vidcorpus.pipelines.layout import FileKey, Slice
from vidcorpus.pipelines.staging import VideoResult, staging_dir
from vidcorpus.pipelines.tasks import PROBES
from vidcorpus.release.manifest import file_entry
from vidcorpus.release.parquet import write_parquet
from vidcorpus.release.webdataset import FileMember, write_shard
from vidcorpus.schemas import TABLES
from vidcorpus.schemas.tables import with_embedding_dim


def write_file(keyed: tuple[FileKey, Iterable[Slice]], root: str, work_dir: str) -> dict[str, Any]:
    """Beam step after the GroupByKey: one shard or part from all of its slices."""
    (kind, table, relpath, dim), slices = keyed
    slices = sorted((s for s in slices if s[1] is not None), key=lambda s: s[0])
    uri = storage.join(root, relpath)
    if kind == "shard":
        name = relpath.rsplit("/", 1)[-1]
        write_shard(_clip_samples(slices, name, work_dir) if table == "clips" else _task_samples(slices, table, work_dir),
                    uri)
    else:
        write_parquet(_part(table, slices, work_dir), _written_schema(table, dim), uri)
    return file_entry(root, relpath)


def _written_schema(table: str, dim: int | None) -> pa.Schema:
    return with_embedding_dim(TABLES[table], dim) if dim else TABLES[table]


PIECES_PER_BLOCK = 256
"""Unit pieces copied into one block as a part is read: a piece read from its Arrow IPC file
pins that whole file's buffer, so a part of 100,000 one-row pieces (videos) would hold 100,000
files; blocks hold only the rows."""


def _part(table: str, slices: list[Slice], work_dir: str) -> pa.Table:
    blocks, pieces = [], []
    for _, unit, start, stop, staged, runs in slices:
        piece = unit_table(work_dir, unit, table, staged).slice(start, stop - start)
        if runs:
            piece = piece.set_column(piece.schema.get_field_index("shard"), "shard",
                                     pa.array([name for name, count in runs for _ in range(count)], pa.string()))
        pieces.append(piece)
        if len(pieces) == PIECES_PER_BLOCK:
            blocks.append(_copied(pieces))
            pieces = []
    if pieces:
        blocks.append(_copied(pieces))
    return pa.concat_tables(blocks) if blocks else TABLES[table].empty_table()


def _copied(pieces: list[pa.Table]) -> pa.Table:
    """The pieces' rows in new buffers of their own (letting go of the files they came from)."""
    return pa.concat_tables(pieces).combine_chunks()


def _clip_samples(slices: list[Slice], shard: str, work_dir: str) -> Iterator[dict[str, Any]]:
    """Clip samples: the clip row as JSON (with its shard), keyframe JPEGs (`<i>.jpg`) and the
    MP4, streamed from their staged files."""
    for _, unit, start, stop, _, _ in slices:
        rows = unit_table(work_dir, unit, "clips", False).slice(start, stop - start).to_pylist()
        folder = unit_dir(work_dir, unit)
        for row, files in zip(rows, unit_files(work_dir, unit)[start:stop]):
            row["shard"] = shard
            sample: dict[str, Any] = {"__key__": row["clip_id"], "json": _json(row)}
            for i, name in enumerate(files.get("jpg", [])):
                sample[f"{i}.jpg"] = FileMember(storage.join(folder, name))
            if files.get("mp4"):
                sample["mp4"] = FileMember(storage.join(folder, files["mp4"]))
            yield sample


def _task_samples(slices: list[Slice], table: str, work_dir: str) -> Iterator[dict[str, Any]]:
    for _, unit, start, stop, staged, _ in slices:
        for row in unit_table(work_dir, unit, table, staged).slice(start, stop - start).to_pylist():
            yield {"__key__": row["sample_id"], "json": _json(row)}


def _json(row: dict[str, Any]) -> bytes:
    return json.dumps(row, sort_keys=True).encode()


def copy_probes(result: VideoResult, root: str, work_dir: str) -> Iterator[dict[str, Any]]:
    """Beam step per video: its task probe MP4s copied into `probes/`, as manifest entries."""
    video = result.get("video")
    for name in sorted(result.get("probes", {})):
        relpath = f"{PROBES}/{name}"
        storage.copy(storage.join(staging_dir(work_dir, video["video_id"]), name), storage.join(root, relpath))
        yield file_entry(root, relpath)
