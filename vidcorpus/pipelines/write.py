"""Turn per-video results into a release: tables, shards, task media, manifest.

Planning sorts everything by id and assigns samples to shards, so the layout depends only on
the inputs and config, never on the order in which workers finished. Each shard, table and
file is then one independent write job.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa

from vidcorpus import storage
from vidcorpus.pipelines.staging import staging_dir
from vidcorpus.release.layout import SAMPLE_TABLES
from vidcorpus.release.manifest import file_entry
from vidcorpus.release.parquet import ROWS_PER_FILE, part_names, write_parquet
from vidcorpus.release.webdataset import FileMember, shard_name, write_shard
from vidcorpus.schemas import TABLES
from vidcorpus.schemas.tables import EMBEDDING_TABLES, with_embedding_dim

SORT_KEYS = {"videos": ("video_id",), "clips": ("clip_id",),
             "transcripts": ("video_id", "start_s", "end_s", "source", "language", "text"), "frames": ("clip_id", "timestamp_s"),
             "annotations": ("ann_id",), "sft": ("sample_id",), "rl": ("sample_id",),
             "failures": ("uri", "stage", "item_id")}
INPUT_STAGES = ("discover", "probe", "decode", "scenes", "keyframes", "clips", "validate")
"""Stages whose failure (with no item id) means the input produced no video at all."""


@dataclass(frozen=True)
class ShardJob:
    name: str
    samples: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...]   # (key, json row, staged files)


@dataclass(frozen=True)
class TableJob:
    table: str
    relpath: str
    rows: tuple[dict[str, Any], ...]
    schema: pa.Schema


@dataclass(frozen=True)
class FileJob:
    relpath: str
    video_id: str
    staged_name: str


@dataclass
class ReleasePlan:
    tables: dict[str, list[dict[str, Any]]]
    shards: list[ShardJob] = field(default_factory=list)
    files: list[FileJob] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    """LLM usage of this version's annotations: the same however many runs made them."""
    llm_run: dict[str, Any] = field(default_factory=dict)
    """What this run sent to the LLM endpoint (requests, retries, tokens, cost)."""

    @property
    def counts(self) -> dict[str, Any]:
        failures = self.tables["failures"]
        counts = {name: len(rows) for name, rows in self.tables.items()}
        counts.update({
            "inputs_failed": len({f["uri"] for f in failures if f["item_id"] is None and f["stage"] in INPUT_STAGES}),
            "failures_by_stage": dict(sorted(Counter(f["stage"] for f in failures).items())),
            "shards": len(self.shards),
            "video_hours": round(sum(v["duration_s"] for v in self.tables["videos"]) / 3600, 6),
        })
        return counts



def plan_release(results: Iterable[dict[str, Any]], max_samples: int, max_bytes: int,
                 tables: tuple[str, ...] = ("videos", "clips", "failures")) -> ReleasePlan:
    results = list(results)
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in tables}
    files: dict[str, Any] = {}
    plan = ReleasePlan(rows)
    for r in results:
        if r["video"]:
            rows["videos"].append(r["video"])
        rows["clips"] += r["clips"]
        rows["failures"] += r["failures"]
        for table, table_rows in r.get("tables", {}).items():
            if table in rows:
                rows[table] += table_rows
        files.update(r["files"])
        for name in sorted(r.get("probes", {})):
            plan.files.append(FileJob(f"probes/{name}", r["video"]["video_id"], name))
        _add_counts(plan.usage, r.get("usage", {}))
        _add_counts(plan.llm_run, r.get("llm_run", {}))
    for table, table_rows in rows.items():
        table_rows.sort(key=lambda row: tuple("" if row.get(k) is None else row[k] for k in SORT_KEYS[table]))
    plan.files.sort(key=lambda f: f.relpath)
    plan.usage, plan.llm_run = _sorted_counts(plan.usage), _sorted_counts(plan.llm_run)
    plan.shards = _clip_shards(rows["clips"], files, max_samples, max_bytes)
    for table in SAMPLE_TABLES:
        if table in rows:
            plan.shards += _sample_shards(table, rows[table], max_samples)
    return plan


def _add_counts(total: dict[str, Any], counts: dict[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, dict):
            _add_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value


def _sorted_counts(counts: dict[str, Any]) -> dict[str, Any]:
    """Sorted by key; sums of money rounded to the micro-dollar, so their order of addition
    (which follows the runner) cannot change the manifest's bytes."""
    def tidy(value: Any) -> Any:
        if isinstance(value, dict):
            return _sorted_counts(value)
        return round(value, 6) if isinstance(value, float) else value

    return {k: tidy(v) for k, v in sorted(counts.items())}


def _clip_shards(clips: list[dict[str, Any]], files: dict[str, Any], max_samples: int,
                 max_bytes: int) -> list[ShardJob]:
    """Fill shards per split in clip_id order, closing one at max_samples or max_bytes."""
    jobs: list[ShardJob] = []
    for split in sorted({c["split"] for c in clips}):
        members: list = []
        size = index = 0
        for clip in (c for c in clips if c["split"] == split):
            clip_files = files.get(clip["clip_id"], {})
            if members and (len(members) >= max_samples or size + clip_files.get("bytes", 0) > max_bytes):
                jobs.append(ShardJob(shard_name(split, index), tuple(members)))
                members, size, index = [], 0, index + 1
            clip["shard"] = shard_name(split, index)
            members.append((clip["clip_id"], clip, clip_files))
            size += clip_files.get("bytes", 0)
        if members:
            jobs.append(ShardJob(shard_name(split, index), tuple(members)))
    return jobs


def _sample_shards(table: str, rows: list[dict[str, Any]], max_samples: int) -> list[ShardJob]:
    """`<table>-<split>-NNNNNN.tar` shards holding each sample's JSON row."""
    jobs = []
    for split in sorted({r["split"] for r in rows}):
        in_split = [r for r in rows if r["split"] == split]
        for index, start in enumerate(range(0, len(in_split), max_samples)):
            chunk = in_split[start:start + max_samples]
            jobs.append(ShardJob(shard_name(f"{table}-{split}", index), tuple((r["sample_id"], r, {}) for r in chunk)))
    return jobs


def table_jobs(plan: ReleasePlan) -> list[TableJob]:
    jobs = []
    for table, rows in plan.tables.items():
        folder = "failures" if table == "failures" else f"data/{table}"
        schema = _written_schema(table, rows)
        for i, name in enumerate(part_names(len(rows))):
            chunk = rows[i * ROWS_PER_FILE:(i + 1) * ROWS_PER_FILE]
            jobs.append(TableJob(table, f"{folder}/{name}", tuple(chunk), schema))
    return jobs


def _written_schema(table: str, rows: list[dict[str, Any]]) -> pa.Schema:
    schema = TABLES[table]
    if table in EMBEDDING_TABLES:
        dims = {len(r["embedding"]) for r in rows if r.get("embedding")}
        if len(dims) == 1:
            schema = with_embedding_dim(schema, dims.pop())
    return schema


def write_table_job(job: TableJob, root: str) -> dict[str, Any]:
    write_parquet(job.rows, job.schema, storage.join(root, job.relpath))
    return file_entry(root, job.relpath)


def write_file_job(job: FileJob, root: str, work_dir: str) -> dict[str, Any]:
    storage.copy(storage.join(staging_dir(work_dir, job.video_id), job.staged_name), storage.join(root, job.relpath))
    return file_entry(root, job.relpath)


def write_shard_job(job: ShardJob, root: str, work_dir: str) -> dict[str, Any]:
    relpath = f"shards/{job.name}"
    write_shard((_sample(key, row, files, work_dir) for key, row, files in job.samples), storage.join(root, relpath))
    return file_entry(root, relpath)


def _sample(key: str, row: dict[str, Any], files: dict[str, Any], work_dir: str) -> dict[str, Any]:
    """One WebDataset sample: the row as JSON, plus for clips keyframe JPEGs (`<i>.jpg`) and the
    MP4, streamed from their staged files."""
    sample: dict[str, Any] = {"__key__": key, "json": json.dumps(row, sort_keys=True).encode()}
    if files:
        staged = staging_dir(work_dir, row["video_id"])
        for i, name in enumerate(files.get("jpg", [])):
            sample[f"{i}.jpg"] = FileMember(storage.join(staged, name))
        if files.get("mp4"):
            sample["mp4"] = FileMember(storage.join(staged, files["mp4"]))
    return sample

