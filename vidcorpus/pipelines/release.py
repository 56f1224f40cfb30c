"""Turn staged per-video results into a release: tables, shards, manifest.

Planning sorts everything by id and assigns clips to shards, so the layout depends only on
the inputs and config, never on the order in which workers finished. Each shard and table is
then one independent write job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from vidcorpus import storage
from vidcorpus.pipelines.analyze import staging_dir
from vidcorpus.schemas import TABLES
from vidcorpus.sinks.manifest import file_entry
from vidcorpus.sinks.parquet import ROWS_PER_FILE, part_names, write_parquet
from vidcorpus.sinks.webdataset import shard_name, write_shard

RELEASE_DIRS = ("data", "shards", "failures")


@dataclass(frozen=True)
class ShardJob:
    name: str
    members: tuple[tuple[dict[str, Any], dict[str, Any]], ...]   # (clip row, staged files)


@dataclass(frozen=True)
class TableJob:
    table: str
    relpath: str
    rows: tuple[dict[str, Any], ...]


@dataclass
class ReleasePlan:
    tables: dict[str, list[dict[str, Any]]]
    shards: list[ShardJob] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, Any]:
        failures = self.tables["failures"]
        return {
            "videos": len(self.tables["videos"]),
            "clips": len(self.tables["clips"]),
            "failures": len(failures),
            "inputs_failed": len({f["uri"] for f in failures if f["item_id"] is None}),
            "shards": len(self.shards),
            "video_hours": round(sum(v["duration_s"] for v in self.tables["videos"]) / 3600, 6),
        }


def plan_release(results: Iterable[dict[str, Any]], max_samples: int, max_bytes: int) -> ReleasePlan:
    results = list(results)
    videos = sorted((r["video"] for r in results if r["video"]), key=lambda v: v["video_id"])
    clips = sorted((c for r in results for c in r["clips"]), key=lambda c: c["clip_id"])
    files = {cid: f for r in results for cid, f in r["files"].items()}
    failures = sorted((f for r in results for f in r["failures"]),
                      key=lambda f: (f["uri"], f["stage"], f["item_id"] or ""))
    plan = ReleasePlan({"videos": videos, "clips": clips, "failures": failures})
    plan.shards = _assign_shards(clips, files, max_samples, max_bytes)
    return plan


def _assign_shards(clips: list[dict[str, Any]], files: dict[str, Any], max_samples: int,
                   max_bytes: int) -> list[ShardJob]:
    """Fill shards per split in clip_id order, closing one at max_samples or max_bytes."""
    jobs: list[ShardJob] = []
    for split in sorted({c["split"] for c in clips}):
        members: list = []
        size = 0
        index = 0
        for clip in (c for c in clips if c["split"] == split):
            clip_files = files.get(clip["clip_id"], {})
            clip_bytes = clip_files.get("bytes", 0)
            if members and (len(members) >= max_samples or size + clip_bytes > max_bytes):
                jobs.append(ShardJob(shard_name(split, index), tuple(members)))
                members, size, index = [], 0, index + 1
            clip["shard"] = shard_name(split, index)
            members.append((clip, clip_files))
            size += clip_bytes
        if members:
            jobs.append(ShardJob(shard_name(split, index), tuple(members)))
    return jobs


def table_jobs(plan: ReleasePlan) -> list[TableJob]:
    jobs = []
    for table, rows in plan.tables.items():
        folder = "failures" if table == "failures" else f"data/{table}"
        for i, name in enumerate(part_names(len(rows))):
            chunk = rows[i * ROWS_PER_FILE:(i + 1) * ROWS_PER_FILE]
            jobs.append(TableJob(table, f"{folder}/{name}", tuple(chunk)))
    return jobs


def write_table_job(job: TableJob, root: str) -> dict[str, Any]:
    write_parquet(job.rows, TABLES[job.table], storage.join(root, job.relpath))
    return file_entry(root, job.relpath)


def write_shard_job(job: ShardJob, root: str, work_dir: str) -> dict[str, Any]:
    relpath = f"shards/{job.name}"
    write_shard((_sample(clip, files, work_dir) for clip, files in job.members), storage.join(root, relpath))
    return file_entry(root, relpath)


def _sample(clip: dict[str, Any], files: dict[str, Any], work_dir: str) -> dict[str, Any]:
    """One WebDataset sample: metadata JSON, keyframe JPEGs (`<i>.jpg`) and the clip MP4."""
    staged = staging_dir(work_dir, clip["video_id"])
    sample: dict[str, Any] = {"__key__": clip["clip_id"],
                              "json": json.dumps(clip, sort_keys=True).encode()}
    for i, name in enumerate(files.get("jpg", [])):
        sample[f"{i}.jpg"] = storage.read_bytes(storage.join(staged, name))
    if files.get("mp4"):
        sample["mp4"] = storage.read_bytes(storage.join(staged, files["mp4"]))
    return sample


def clear_release(root: str) -> None:
    """Remove a previous build's outputs (never the work directory) before writing anew."""
    for folder in RELEASE_DIRS:
        storage.delete_tree(storage.join(root, folder))
