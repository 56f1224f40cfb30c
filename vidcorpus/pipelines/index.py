"""The small release index: each finished video's rows stay in the work directory (Arrow IPC,
one file per table, sorted by the table's key) and what crosses the global layout step is one
index entry per input, tens of bytes plus a few per clip: its unit folder, order, split, row
counts, each clip's bytes (and bucket), embedding widths and failure counts. Every table is
handled alike, so a new table in `schemas.TABLES` needs no change here."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any, Sequence

import pyarrow as pa

from vidcorpus import storage
from vidcorpus.pipelines.staging import VideoResult, embedding_dims, staged_table_uri, staging_dir
from vidcorpus.release.ipc import read_ipc, write_ipc
from vidcorpus.schemas import TABLES

RELEASE_DIR = "release"
"""Per unit, this build's final rows (after grouping, annotation and tasks), rewritten every build."""
FILES = "files.json"
SORT_KEYS = {"videos": ("video_id",), "clips": ("clip_id",), "frames": ("clip_id", "timestamp_s"),
             "transcripts": ("video_id", "start_s", "end_s", "source", "language", "text"),
             "annotations": ("ann_id",), "sft": ("sample_id",), "rl": ("sample_id",),
             "failures": ("uri", "stage", "item_id")}
"""Row order inside a table. Every id starts with its video's id, so the global order is the
units' order (by video id; by uri for failures) and then this order inside each unit."""
INPUT_STAGES = ("discover", "probe", "decode", "scenes", "keyframes", "clips", "validate")
"""Stages whose failure (with no item id) means the input produced no video at all."""
UNIT_ORDERED_BY_URI = ("failures",)


def sort_key(table: str, row: dict[str, Any]) -> tuple:
    keys = SORT_KEYS.get(table) or tuple(TABLES[table].names)
    return tuple("" if row.get(k) is None else row[k] for k in keys)


def unit_of(result: VideoResult) -> tuple[str, str]:
    """(unit folder relative to the work directory, uri) of a result: a video's staging folder,
    or, for an input that produced no video, a folder named by its uri's hash."""
    video = result.get("video")
    if video:
        return f"videos/{video['video_id']}", video["uri"]
    uri = result["failures"][0]["uri"]
    return f"inputs/{hashlib.sha256(uri.encode()).hexdigest()[:16]}", uri


def table_uri(work_dir: str, unit: str, table: str) -> str:
    return storage.join(work_dir, unit, RELEASE_DIR, f"{table}.arrow")


def stage_release_rows(result: VideoResult, work_dir: str, tables: Sequence[str],
                       bucket_of=None) -> dict[str, Any]:
    """Write the result's rows of `tables` into its unit folder; return its index entry.
    `bucket_of(video, clip)` names each clip's training bucket (`shards.bucket_by`)."""
    unit, uri = unit_of(result)
    video = result.get("video")
    in_result = {"videos": [video] if video else [], "clips": result.get("clips", []),
                 "failures": result.get("failures", []), **result.get("tables", {})}
    staged = result.get("staged_tables", {})
    entry: dict[str, Any] = {"unit": unit, "order": video["video_id"] if video else "", "rows": {}, "bytes": {}}
    dims: dict[str, list[int]] = {}
    for table in tables:
        if table in staged:
            count, size, table_dims = staged[table]["rows"], staged[table]["bytes"], staged[table]["dims"]
        else:
            rows = sorted(in_result.get(table) or [], key=lambda r: sort_key(table, r))
            count, size, table_dims = len(rows), 0, embedding_dims(rows)
            if rows:
                size = write_ipc(rows, TABLES[table], table_uri(work_dir, unit, table))
            in_result[table] = rows
        if count:
            entry["rows"][table] = count
            entry["bytes"][table] = size
        if table_dims:
            dims[table] = table_dims
    if dims:
        entry["dims"] = dims
    if staged:
        entry["staged"] = sorted(t for t in staged if t in tables)
    if video:
        entry.update(split=video["split"], duration_s=video["duration_s"])
    clips = in_result["clips"]
    if clips:
        files = result.get("files", {})
        entry["clip_bytes"] = [files.get(c["clip_id"], {}).get("bytes", 0) for c in clips]
        storage.write_bytes(storage.join(work_dir, unit, RELEASE_DIR, FILES),
                            json.dumps([_shipped(files.get(c["clip_id"], {})) for c in clips]).encode())
        if bucket_of is not None:
            entry["buckets"] = [bucket_of(video, c) for c in clips]
    failures = result.get("failures", [])
    if failures:
        entry["uri"] = uri
        entry["failures_by_stage"] = dict(Counter(f["stage"] for f in failures))
        entry["input_failed"] = any(f["item_id"] is None and f["stage"] in INPUT_STAGES for f in failures)
    return entry


def _shipped(files: dict[str, Any]) -> dict[str, Any]:
    """What a clip shard takes of a clip's staged files: keyframe JPEGs and the MP4."""
    return {k: files[k] for k in ("jpg", "mp4") if files.get(k)}


def unit_table(work_dir: str, unit: str, table: str, staged: bool) -> pa.Table:
    """A unit's rows of `table` (in the table's order): staged at segmenting, or at release."""
    if staged:
        return read_ipc(staged_table_uri(work_dir, unit.split("/", 1)[1], table))
    return read_ipc(table_uri(work_dir, unit, table))


def unit_files(work_dir: str, unit: str) -> list[dict[str, Any]]:
    """Per clip of the unit, in clip order: its shipped file names (`jpg`, `mp4`)."""
    return json.loads(storage.read_bytes(storage.join(work_dir, unit, RELEASE_DIR, FILES)))


def unit_dir(work_dir: str, unit: str) -> str:
    return staging_dir(work_dir, unit.split("/", 1)[1]) if unit.startswith("videos/") else storage.join(work_dir, unit)
