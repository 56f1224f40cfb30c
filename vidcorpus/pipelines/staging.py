"""A video's staged state in the work directory: `videos/<video_id>/` holds its keyframe spool,
keyframe JPEGs, clip and probe MP4s, and `result.json`, written once and last, whose presence
(with the current config's fingerprint) marks the video done. A rerun skips such videos, the
progress line counts them, and the writers read their files from here."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, TypedDict

from vidcorpus import storage
from vidcorpus.config import BuildConfig, config_to_dict
from vidcorpus.schemas.records import failure_row

RESULT = "result.json"
RESULT_SECTIONS = ("input", "ids", "probe", "decode", "scenes", "keyframes", "clips", "audio", "clip",
                   "shards")
CLIP_EXECUTION_KEYS = ("device", "precision", "batch_size", "min_batch_size", "model_copies", "accelerator",
                       "cache_dir")
TRANSNET_EXECUTION_KEYS = ("device", "precision", "batch_windows", "model_copies", "accelerator")
TABLES_DIR = "tables"
"""A staged video's table rows too large for `result.json` (CLIP frame embeddings), as Arrow IPC."""
RESULT_FORMAT = 4
"""Bumped when a staged result gains or changes fields, so results of an older format are redone."""


class VideoResult(TypedDict, total=False):
    """What one input contributes to a release, from scan to write (see `video_result`)."""
    video: Dict[str, Any] | None
    clips: List[Dict[str, Any]]
    files: Dict[str, Any]
    failures: List[Dict[str, Any]]
    tables: Dict[str, List[Dict[str, Any]]]
    usage: Dict[str, Any]
    llm_run: Dict[str, Any]
    probes: Dict[str, str]
    staged_tables: Dict[str, Dict[str, Any]]
    """Tables whose rows are staged as Arrow IPC files (`stage_tables`): name -> rows, dims."""
    signature: Dict[str, Any] | None
    fingerprint: str
    retry: bool
    """Its failure may not recur (disk, permission, network, timeout): never staged as final."""


def video_result(video: dict[str, Any] | None = None, clips: list[dict[str, Any]] | None = None,
                 files: dict[str, Any] | None = None, failures: list[dict[str, Any]] | None = None,
                 tables: dict[str, list[dict[str, Any]]] | None = None) -> VideoResult:
    """A video's result: its video row, clip rows, staged files (per clip, and `probes` for task
    media), failures, and rows of the other tables (frames, annotations, sft, rl)."""
    return {"video": video, "clips": clips or [], "files": files or {}, "failures": failures or [],
            "tables": tables or {}}


def failed_result(uri: str, stage: str, exc: BaseException, video_id: str) -> VideoResult:
    """A video's result when `stage` raised `exc`: one failures row, marked for retry when the
    error may not recur. A full disk is not one video's failure: it is raised again, so the
    build stops and the same command resumes it once there is space."""
    if storage.is_disk_full(exc):
        raise exc
    result = video_result(failures=[failure_row(uri, stage, exc, video_id)])
    if storage.is_transient(exc):
        result["retry"] = True
    return result


def with_current_uri(result: VideoResult, uri: str) -> VideoResult:
    """A staged result under the URI its video has in this build (a file renamed since it was
    staged is recorded under its new name; its content, and so its id, are the same)."""
    video = result.get("video")
    failures = [{**f, "uri": uri} if f.get("uri") is not None else f for f in result.get("failures", [])]
    return {**result, "video": {**video, "uri": uri} if video else video, "failures": failures}


def staging_dir(work_dir: str, video_id: str) -> str:
    return storage.join(work_dir, "videos", video_id)


def staged_table_uri(work_dir: str, video_id: str, table: str) -> str:
    return storage.join(staging_dir(work_dir, video_id), TABLES_DIR, f"{table}.arrow")


def stage_tables(result: VideoResult, work_dir: str, video_id: str, names: tuple[str, ...]) -> VideoResult:
    """The result with the rows of tables `names` written beside it as Arrow IPC (in their
    table's schema) and replaced by `staged_tables[name]`: their count, size in memory and
    embedding widths."""
    from vidcorpus.release.ipc import write_ipc
    from vidcorpus.schemas import TABLES

    tables, staged = dict(result["tables"]), dict(result.get("staged_tables", {}))
    for name in names:
        rows = tables.pop(name, [])
        size = write_ipc(rows, TABLES[name], staged_table_uri(work_dir, video_id, name))
        staged[name] = {"rows": len(rows), "bytes": size, "dims": embedding_dims(rows)}
    return {**result, "tables": tables, "staged_tables": staged}


def embedding_dims(rows: list[dict[str, Any]]) -> list[int]:
    """The widths of the rows' CLIP embeddings (empty when they have none)."""
    return sorted({len(r["embedding"]) for r in rows if r.get("embedding")})


def result_fingerprint(cfg: BuildConfig) -> str:
    """Hash of the config a staged per-video result depends on (and of the result format): not
    where or how fast CLIP and TransNetV2 run, so a job resumed on other hardware (or on
    Dataflow) reuses what is done."""
    sections = {k: v for k, v in config_to_dict(cfg).items() if k in RESULT_SECTIONS}
    sections["clip"] = {k: v for k, v in sections["clip"].items() if k not in CLIP_EXECUTION_KEYS}
    transnet = sections["scenes"]["transnet"]
    sections["scenes"]["transnet"] = {k: v for k, v in transnet.items() if k not in TRANSNET_EXECUTION_KEYS}
    sections["format"] = RESULT_FORMAT
    return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]


def load_staged_result(work_dir: str, video_id: str, fingerprint: str) -> VideoResult | None:
    """The video's staged result when it was made under this fingerprint, else None."""
    uri = storage.join(staging_dir(work_dir, video_id), RESULT)
    if not storage.exists(uri):
        return None
    try:
        result = json.loads(storage.read_bytes(uri))
    except ValueError:
        return None
    return result if result.get("fingerprint") == fingerprint else None


def stage_result(result: VideoResult, fingerprint: str, work_dir: str, video_id: str) -> VideoResult:
    """The result with its config fingerprint, staged as `result.json` (the done marker); a
    result marked `retry` is returned unstaged, so the next run processes the video again."""
    stamped: VideoResult = {**result, "fingerprint": fingerprint}
    if result.get("retry"):
        return stamped
    storage.write_bytes(storage.join(staging_dir(work_dir, video_id), RESULT),
                        json.dumps(stamped, sort_keys=True).encode())
    return stamped
